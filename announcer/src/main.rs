//! `metallb-announcer`: see `metallb_announcer` for what it does.

use std::process::ExitCode;

use metallb_announcer::{args::Args, subscription::subscribe};
use metallb_process::{AdminServer, Readiness, parse_args_or_exit, run_until_shutdown};
use prometheus_client::registry::Registry;

const SERVICE_NAME: &str = "metallb-announcer";

fn main() -> ExitCode {
    let args: Args = parse_args_or_exit();
    metallb_process::run_main(SERVICE_NAME, &args.common.clone(), run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let readiness = Readiness::new(format!(
        "waiting for the first assignment snapshot from {}",
        args.allocator_endpoint
    ));
    let registry = Registry::default();
    let admin = AdminServer::bind(args.common.admin_addr, registry, readiness.clone()).await?;
    tracing::info!(
        node = args.node_name,
        allocator = args.allocator_endpoint,
        admin_addr = %admin.local_addr()?,
        "announcer starting"
    );
    run_until_shutdown(&args.common, admin, |shutdown| async move {
        let (_assignments, task) =
            subscribe(args.allocator_endpoint, args.node_name, readiness, shutdown);
        task.await?;
        Ok(())
    })
    .await
}
