//! `metallb-allocator`: see `metallb_allocator` for what it does.

use std::process::ExitCode;

use metallb_allocator::{
    api::AllocatorApi, args::Args, core::Core, metrics::Metrics, server::serve_grpc,
};
use metallb_process::{AdminServer, Readiness, parse_args_or_exit, run_until_shutdown};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

const SERVICE_NAME: &str = "metallb-allocator";

fn main() -> ExitCode {
    let args: Args = parse_args_or_exit();
    metallb_process::run_main(SERVICE_NAME, &args.common.clone(), run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let readiness = Readiness::new("starting");
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let admin = AdminServer::bind(args.common.admin_addr, registry, readiness.clone()).await?;
    let grpc_listener = TcpListener::bind(args.grpc_addr).await.map_err(|err| {
        anyhow::anyhow!("cannot listen on gRPC address {}: {err}", args.grpc_addr)
    })?;
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    let core = Core::new(metrics, readiness, health_reporter).await;
    tracing::info!(
        grpc_addr = %grpc_listener.local_addr()?,
        admin_addr = %admin.local_addr()?,
        "allocator listening; not ready until the first full sync"
    );
    run_until_shutdown(&args.common, admin, |shutdown| {
        let streams_owner = core.clone();
        let shutdown = async move {
            shutdown.await;
            streams_owner.streams().close();
        };
        serve_grpc(grpc_listener, AllocatorApi::new(core), health_service, shutdown)
    })
    .await
}
