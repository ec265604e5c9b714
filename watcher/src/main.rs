//! `metallb-watcher`: see `metallb_watcher` for what it does.

use std::process::ExitCode;

use metallb_process::{AdminServer, Readiness, parse_args_or_exit, run_until_shutdown};
use metallb_watcher::{args::Args, kube_connection};
use prometheus_client::registry::Registry;

const SERVICE_NAME: &str = "metallb-watcher";

fn main() -> ExitCode {
    let args: Args = parse_args_or_exit();
    metallb_process::run_main(SERVICE_NAME, &args.common.clone(), run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let readiness = Readiness::new("the Kubernetes API has not answered yet");
    let registry = Registry::default();
    let admin = AdminServer::bind(args.common.admin_addr, registry, readiness.clone()).await?;
    let client = kube_connection::client(args.kubeconfig.as_deref()).await?;
    tracing::info!(
        allocator = args.allocator_endpoint,
        config_namespace = args.config_namespace,
        load_balancer_class = args.load_balancer_class.as_deref().unwrap_or("<none>"),
        admin_addr = %admin.local_addr()?,
        "watcher starting"
    );
    run_until_shutdown(&args.common, admin, |mut shutdown| async move {
        tokio::select! {
            version = kube_connection::wait_until_reachable(&client, &readiness) => {
                tracing::info!(version, "Kubernetes API reachable");
            }
            () = &mut shutdown => return Ok(()),
        }
        // Watching and forwarding are not built yet: stay up, reachable and honest about it.
        shutdown.await;
        Ok(())
    })
    .await
}
