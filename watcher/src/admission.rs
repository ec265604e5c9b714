//! The validating admission webhook: `kubectl apply` of a metallb.io object that would make the
//! configuration invalid is refused by the API server, with the message the ConfigurationState
//! would show. The object is put in place of its current version among the configuration
//! objects the watcher's stores hold (or taken out, for a delete), the result read as the
//! reconciler reads it, and the allocator asked what it would make of it (`CheckConfig`, a dry
//! run). A configuration that would wait for Services to let go of their IPs is admitted with a
//! warning: it is valid, and takes effect by itself.
//!
//! When the webhook cannot decide (the allocator unreachable), it admits with a warning, as the
//! `failurePolicy: Ignore` of `deploy/` does when the webhook itself is down: the configuration
//! is still checked when it is applied, and a rejection shows in the ConfigurationState.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::post,
};
use kube::{
    ResourceExt,
    api::DynamicObject,
    core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation},
};
use metallb_process::{AllocatorConnector, tls_listener::TlsListener};
use metallb_proto::pb;
use tokio::net::TcpListener;
use tokio_rustls::{TlsAcceptor, rustls::ServerConfig};

use crate::{sources::Sources, translate, webhook_tls::CurrentCertificate};

/// How long the webhook waits for the allocator: well under the API server's timeout for the
/// webhook (`timeoutSeconds: 5` in `deploy/`).
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);
/// Largest review body accepted.
const MAX_REVIEW_BYTES: usize = 1024 * 1024;

/// What a review needs: the stores and the allocator.
pub struct Reviewer {
    sources: Sources,
    namespace: String,
    allocator: AllocatorConnector,
}

impl Reviewer {
    /// Reviews objects of `namespace` against `sources`, asking `allocator`.
    pub fn new(sources: Sources, namespace: String, allocator: AllocatorConnector) -> Self {
        Self { sources, namespace, allocator }
    }

    /// The response to one review.
    pub async fn review(
        &self,
        review: AdmissionReview<DynamicObject>,
    ) -> AdmissionReview<DynamicObject> {
        let request: AdmissionRequest<DynamicObject> = match review.try_into() {
            Ok(request) => request,
            Err(_) => return AdmissionResponse::invalid("no request in the review").into_review(),
        };
        let mut response = AdmissionResponse::from(&request);
        match self.verdict(&request).await {
            Verdict::Admit => {}
            Verdict::Warn(warning) => response.warnings = Some(vec![warning]),
            Verdict::Deny(reasons) => response = response.deny(reasons),
        }
        response.into_review()
    }

    async fn verdict(&self, request: &AdmissionRequest<DynamicObject>) -> Verdict {
        let namespace = request.namespace.as_deref().unwrap_or_default();
        if namespace != self.namespace || request.kind.group != "metallb.io" {
            // Only the configuration namespace's objects make the configuration.
            return Verdict::Admit;
        }
        let config = match self.configuration_with(request) {
            Ok(config) => config,
            Err(reasons) => return Verdict::Deny(reasons),
        };
        let check = pb::ApplyConfigRequest {
            config: Some(config),
            source: format!("admission of {}/{}", request.kind.kind, request.name),
            trace: None,
        };
        let asked = async {
            let mut client = self.allocator.connect(CHECK_TIMEOUT).await?;
            anyhow::Ok(client.check_config(check).await?.into_inner())
        };
        match tokio::time::timeout(CHECK_TIMEOUT, asked).await {
            Ok(Ok(response)) if response.accepted => Verdict::Admit,
            Ok(Ok(response)) if !response.blocking_services.is_empty() => Verdict::Warn(format!(
                "the configuration waits until these Services let go of IPs it would take: {}",
                translate::config_error_lines(&response.errors).join("; ")
            )),
            Ok(Ok(response)) => {
                Verdict::Deny(translate::config_error_lines(&response.errors).join("\n"))
            }
            Ok(Err(err)) => {
                Verdict::Warn(format!("not checked: the allocator did not answer ({err})"))
            }
            Err(_) => Verdict::Warn("not checked: the allocator did not answer in time".into()),
        }
    }

    /// The configuration the namespace's objects would make with the request's change.
    fn configuration_with(
        &self,
        request: &AdmissionRequest<DynamicObject>,
    ) -> Result<pb::Config, String> {
        let changed_kind = request.kind.kind.as_str();
        let mut objects = self.sources.config_objects(&self.namespace);
        objects.resources.retain(|object| {
            let kind = object.types.as_ref().map(|types| types.kind.as_str());
            !(kind == Some(changed_kind) && object.name_any() == request.name)
        });
        if request.operation != Operation::Delete
            && let Some(object) = &request.object
        {
            objects.resources.push(object.clone());
        }
        objects
            .read(&self.namespace)
            .map_err(|errors| errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))
    }
}

enum Verdict {
    Admit,
    Warn(String),
    Deny(String),
}

/// The webhook's HTTPS endpoint, bound.
pub struct Webhook {
    listener: TcpListener,
    acceptor: TlsAcceptor,
}

impl Webhook {
    /// Binds `addr`, serving whatever certificate `certificate` holds at each handshake.
    pub async fn bind(
        addr: SocketAddr,
        certificate: Arc<CurrentCertificate>,
    ) -> anyhow::Result<Self> {
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(certificate);
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|err| anyhow::anyhow!("cannot listen for the webhook on {addr}: {err}"))?;
        Ok(Self { listener, acceptor: TlsAcceptor::from(Arc::new(config)) })
    }

    /// The address bound.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves `POST /validate` until the process ends.
    pub async fn serve(self, reviewer: Arc<Reviewer>) -> std::io::Result<()> {
        // An AdmissionReview holds one object: 1 MiB is far above any configuration object
        // (etcd refuses objects over 1.5 MiB anyway).
        let app = Router::new()
            .route("/validate", post(validate))
            .layer(axum::extract::DefaultBodyLimit::max(MAX_REVIEW_BYTES))
            .with_state(reviewer);
        axum::serve(TlsListener::new(self.listener, self.acceptor), app).await
    }
}

async fn validate(State(reviewer): State<Arc<Reviewer>>, body: Bytes) -> Response {
    let review: AdmissionReview<DynamicObject> = match serde_json::from_slice(&body) {
        Ok(review) => review,
        Err(err) => {
            return (StatusCode::BAD_REQUEST, format!("not an AdmissionReview: {err}\n"))
                .into_response();
        }
    };
    let answer = reviewer.review(review).await;
    match serde_json::to_vec(&answer) {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(err) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{err}\n")).into_response(),
    }
}
