//! `/metrics` over HTTPS for scrapers that present a ServiceAccount token, for a process on the
//! host network (the announcer), whose plain admin port stays on the node's loopback. This is
//! what MetalLB 0.16 does with kube-rbac-proxy, with the token verified offline against the
//! issuer's keys and an allow-list of ServiceAccounts instead of a SubjectAccessReview.
//!
//! The certificate is self-signed, made at start (as kube-rbac-proxy's default): scrapers
//! authenticate the endpoint by the network path they use, and the endpoint authenticates
//! them by their token.

use std::{collections::HashSet, net::SocketAddr, sync::Arc};

use axum::{
    Router,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use clap::Args;
use prometheus_client::registry::Registry;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio_rustls::{TlsAcceptor, rustls::ServerConfig};

use crate::{
    admin::encode_metrics, issuer_args::IssuerArgs, service_account_token::TokenVerifier,
    tls_listener::TlsListener,
};

/// Flags of the HTTPS metrics endpoint.
#[derive(Args, Clone, Debug)]
pub struct SecureMetricsArgs {
    /// Serve /metrics over HTTPS here, to scrapers with a token of an allowed ServiceAccount.
    /// Unset: no such endpoint.
    #[arg(long, env = "METALLB_METRICS_HTTPS_ADDR")]
    pub metrics_https_addr: Option<SocketAddr>,

    /// ServiceAccounts (namespace/name, comma-separated) allowed to scrape the HTTPS endpoint.
    #[arg(
        long,
        env = "METALLB_METRICS_READER_SERVICE_ACCOUNTS",
        value_delimiter = ',',
        default_value = "monitoring/prometheus-k8s"
    )]
    pub metrics_reader_service_accounts: Vec<String>,

    /// Audience the scrapers' tokens must have (a pod's default token has the API server's).
    #[arg(
        long,
        env = "METALLB_METRICS_TOKEN_AUDIENCE",
        default_value = "https://kubernetes.default.svc.cluster.local"
    )]
    pub metrics_token_audience: String,

    #[command(flatten)]
    pub issuer: IssuerArgs,
}

/// The HTTPS metrics endpoint, bound.
pub struct SecureMetrics {
    listener: TcpListener,
    acceptor: TlsAcceptor,
    gate: Arc<Gate>,
}

struct Gate {
    verifier: TokenVerifier,
    allowed: HashSet<String>,
}

impl SecureMetrics {
    /// Binds the endpoint `args` ask for, if any (within a Tokio runtime: the issuer's keys
    /// are refreshed in the background).
    pub async fn bind(args: &SecureMetricsArgs) -> anyhow::Result<Option<Self>> {
        let Some(addr) = args.metrics_https_addr else { return Ok(None) };
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|err| anyhow::anyhow!("cannot listen on metrics address {addr}: {err}"))?;
        let verifier = args.issuer.verifier(&args.metrics_token_audience)?;
        let allowed = args.metrics_reader_service_accounts.iter().cloned().collect();
        let gate = Arc::new(Gate { verifier, allowed });
        Ok(Some(Self { listener, acceptor: self_signed_acceptor()?, gate }))
    }

    /// The address bound.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves `registry` until `shutdown` completes.
    pub async fn serve(
        self,
        registry: Arc<Registry>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let app = Router::new().route("/metrics", get(metrics)).with_state((registry, self.gate));
        let listener = TlsListener::new(self.listener, self.acceptor);
        axum::serve(listener, app).with_graceful_shutdown(shutdown).await
    }
}

async fn metrics(
    State((registry, gate)): State<(Arc<Registry>, Arc<Gate>)>,
    headers: HeaderMap,
) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    let Some(token) = token else {
        return (StatusCode::UNAUTHORIZED, "a ServiceAccount token is required\n").into_response();
    };
    match gate.verifier.verify(token.trim()).await {
        Err(err) => (StatusCode::UNAUTHORIZED, format!("{err}\n")).into_response(),
        Ok(identity) if !gate.allowed.contains(&identity.service_account) => {
            let message = format!("{} may not read metrics\n", identity.service_account);
            (StatusCode::FORBIDDEN, message).into_response()
        }
        Ok(_) => encode_metrics(&registry).into_response(),
    }
}

/// A self-signed certificate for the node, made now.
fn self_signed_acceptor() -> anyhow::Result<TlsAcceptor> {
    let key = rcgen::KeyPair::generate()?;
    let cert =
        rcgen::CertificateParams::new(vec!["metallb-announcer".to_string()])?.self_signed(&key)?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(cert.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
