//! The allocator's gRPC server: the API, the standard health service and server reflection on
//! one port, every request in a span joined to the caller's trace.

use metallb_proto::{FILE_DESCRIPTOR_SET, pb::allocator_server::AllocatorServer};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{server::NamedService, transport::Server};
use tonic_health::pb::health_server::{Health, HealthServer};

use crate::api::AllocatorApi;

/// Serves `api` and `health` on `listener` until `shutdown` completes, then lets in-flight
/// requests finish.
pub async fn serve_grpc<H>(
    listener: TcpListener,
    api: AllocatorApi,
    health: HealthServer<H>,
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

    Server::builder()
        .trace_fn(metallb_process::propagation::grpc_server_span)
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(AllocatorServer::new(api))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await?;
    Ok(())
}
