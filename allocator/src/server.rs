//! The allocator's gRPC server: the API, the standard health service and server reflection on
//! one port, over TLS, every call authenticated and authorized (`auth`) and bounded in size
//! and time, every request in a span joined to the caller's trace.

use std::{sync::Arc, time::Duration};

use metallb_proto::{FILE_DESCRIPTOR_SET, pb::allocator_server::AllocatorServer};
use tokio::net::TcpListener;
use tonic::{
    server::NamedService,
    transport::{Server, server::TcpIncoming},
};
use tonic_health::pb::health_server::{Health, HealthServer};

use crate::{
    api::AllocatorApi,
    auth::{Authenticator, layer::AuthLayer},
    call_metrics::CallMetricsLayer,
    core::Core,
    instance::{instance_layer, new_instance},
    limits::{DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_MAX_STREAMS_PER_CALLER},
    tls::ReloadingCertificate,
};

/// A unary call taking longer than this is cut off (a stream only has to start within it).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Concurrent calls on one connection.
const MAX_CONCURRENT_STREAMS: u32 = 128;

/// HTTP/2 pings, so that a vanished announcer's stream is noticed (its layer 2 IPs wait for
/// that to move).
#[derive(Clone, Copy, Debug)]
pub struct Keepalive {
    /// Between pings.
    pub interval: Duration,
    /// For the answer to a ping.
    pub timeout: Duration,
}

impl Default for Keepalive {
    fn default() -> Self {
        Self { interval: Duration::from_secs(1), timeout: Duration::from_secs(1) }
    }
}

/// How connections are secured.
pub enum Transport {
    /// TLS with a certificate reloaded when its files change.
    Tls(Arc<ReloadingCertificate>),
    /// Plaintext: `--insecure` and in-process tests only.
    Plaintext,
}

/// Transport, caller checks and request size limit of a server.
pub struct Security {
    /// TLS or not.
    pub transport: Transport,
    /// Who may call what.
    pub authenticator: Arc<Authenticator>,
    /// Largest request accepted, in bytes.
    pub max_message_bytes: usize,
    /// Assignment streams one caller may hold open.
    pub max_streams_per_caller: usize,
    /// Pings that close connections of callers that vanished.
    pub keepalive: Keepalive,
}

impl Security {
    /// No TLS and no caller checks: for in-process tests and `--insecure` debugging.
    pub fn insecure() -> Self {
        Self {
            transport: Transport::Plaintext,
            authenticator: Arc::new(Authenticator::Off),
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            max_streams_per_caller: DEFAULT_MAX_STREAMS_PER_CALLER,
            keepalive: Keepalive::default(),
        }
    }
}

/// Serves the API over `core` and `health` on `listener` until `shutdown` completes, then lets in-flight
/// requests finish.
pub async fn serve_grpc<H>(
    listener: TcpListener,
    core: Arc<Core>,
    health: HealthServer<H>,
    security: Security,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()>
where
    H: Health,
    HealthServer<H>: NamedService,
{
    // v1 is what current grpcurl uses; v1alpha keeps older clients (and grpcui) working.
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;

    let call_metrics = CallMetricsLayer::new(core.metrics().grpc());
    let api =
        AllocatorApi::new(core, security.authenticator.clone(), security.max_streams_per_caller);
    let router = Server::builder()
        .trace_fn(metallb_process::propagation::grpc_server_span)
        .timeout(REQUEST_TIMEOUT)
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .http2_keepalive_interval(Some(security.keepalive.interval))
        .http2_keepalive_timeout(Some(security.keepalive.timeout))
        // Outermost, so that every answer says which allocator gave it, refusals included.
        .layer(instance_layer(new_instance()))
        // Outside the auth layer, so that refusals are counted with their status.
        .layer(call_metrics)
        .layer(AuthLayer::new(security.authenticator))
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(
            AllocatorServer::new(api).max_decoding_message_size(security.max_message_bytes),
        );
    match security.transport {
        Transport::Tls(certificate) => {
            let incoming = crate::tls::incoming(listener, certificate.acceptor());
            router.serve_with_incoming_shutdown(incoming, shutdown).await?
        }
        Transport::Plaintext => {
            let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
            router.serve_with_incoming_shutdown(incoming, shutdown).await?
        }
    }
    Ok(())
}
