//! `metallb-allocator`: see `metallb_allocator` for what it does.

use std::{process::ExitCode, sync::Arc, time::Duration};

use metallb_allocator::{
    args::Args,
    auth::{AuthMetrics, Authenticator, RoleBindings},
    core::Core,
    l2::L2Fencing,
    metrics::Metrics,
    server::{Keepalive, Security, Transport, serve_grpc},
    tls::{CertificateFiles, ReloadingCertificate},
};
use metallb_process::{
    AdminServer, Readiness, parse_args_or_exit, process_metrics::ReadinessGauge, run_until_shutdown,
};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

const SERVICE_NAME: &str = "metallb-allocator";

fn main() -> ExitCode {
    let args: Args = parse_args_or_exit();
    let bindings = RoleBindings::new(
        &args.writer_service_accounts,
        &args.announcer_service_accounts,
        &args.reader_service_accounts,
    )
    .unwrap_or_else(|err| metallb_process::usage_error(&format!("role flags: {err}")));
    metallb_process::run_main(SERVICE_NAME, &args.common.clone(), run(args, bindings))
}

async fn run(args: Args, bindings: RoleBindings) -> anyhow::Result<()> {
    let readiness = Readiness::new("starting");
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let auth_metrics = AuthMetrics::register(&mut registry);
    registry.register_collector(Box::new(ReadinessGauge::new(
        "metallb_allocator_ready",
        "1 when this allocator's /readyz answers ready (it had its first full sync), else 0",
        readiness.clone(),
    )));
    let admin = AdminServer::bind(args.common.admin_addr, registry, readiness.clone()).await?;
    let grpc_listener = TcpListener::bind(args.grpc_addr).await.map_err(|err| {
        anyhow::anyhow!("cannot listen on gRPC address {}: {err}", args.grpc_addr)
    })?;
    let security = security(&args, bindings, auth_metrics).await?;
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    let core = Core::new(metrics, readiness, health_reporter).await;
    core.configure_l2(L2Fencing::new(Duration::from_millis(args.l2_fencing_interval_ms)));
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
        serve_grpc(grpc_listener, core, health_service, security, shutdown)
    })
    .await
}

async fn security(
    args: &Args,
    bindings: RoleBindings,
    metrics: AuthMetrics,
) -> anyhow::Result<Security> {
    if args.insecure {
        tracing::warn!(
            "INSECURE: the gRPC API is plaintext and unauthenticated; anyone who reaches {} \
             can read BGP passwords and rewrite every assignment. For local debugging only.",
            args.grpc_addr
        );
        return Ok(Security {
            max_message_bytes: args.max_message_bytes,
            max_streams_per_caller: args.max_streams_per_caller,
            keepalive: keepalive(args),
            ..Security::insecure()
        });
    }
    let verifier = args.issuer.verifier(&args.token_audience)?;
    let certificate = ReloadingCertificate::load(CertificateFiles {
        cert: args.tls_cert_file.clone(),
        key: args.tls_key_file.clone(),
    })
    .await?;
    Ok(Security {
        transport: Transport::Tls(certificate),
        authenticator: Arc::new(Authenticator::Enforcing { verifier, bindings, metrics }),
        max_message_bytes: args.max_message_bytes,
        max_streams_per_caller: args.max_streams_per_caller,
        keepalive: keepalive(args),
    })
}

fn keepalive(args: &Args) -> Keepalive {
    Keepalive {
        interval: Duration::from_millis(args.keepalive_interval_ms),
        timeout: Duration::from_millis(args.keepalive_timeout_ms),
    }
}
