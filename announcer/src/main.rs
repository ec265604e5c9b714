//! `metallb-announcer`: see `metallb_announcer` for what it does.

use std::{process::ExitCode, time::Duration};

use metallb_announcer::{
    args::Args,
    l2::{L2Options, L2Speaker, follow_ownership},
    metrics::Metrics,
    reporter::Reporter,
    speaker::Speaker,
    subscription::subscribe,
};
use metallb_process::{
    AdminServer, AllocatorConnector, Readiness, parse_args_or_exit, run_until_shutdown,
    secure_metrics::SecureMetrics,
};
use prometheus_client::registry::Registry;

const SERVICE_NAME: &str = "metallb-announcer";

fn main() -> ExitCode {
    let args: Args = parse_args_or_exit();
    if let Err(message) = args.allocator.validate() {
        metallb_process::usage_error(&message);
    }
    metallb_process::run_main(SERVICE_NAME, &args.common.clone(), run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let readiness = Readiness::new(format!(
        "waiting for the first assignment snapshot from {}",
        args.allocator.endpoints_text()
    ));
    let connector = AllocatorConnector::new(&args.allocator)?;
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let admin = AdminServer::bind(args.common.admin_addr, registry, readiness.clone()).await?;
    if let Some(secure) = SecureMetrics::bind(&args.metrics).await? {
        tracing::info!(metrics_https_addr = %secure.local_addr()?, "serving /metrics over HTTPS to token holders");
        // Ends with the process; a scrape cut short by exit costs nothing.
        tokio::spawn(secure.serve(admin.registry(), std::future::pending()));
    }
    tracing::info!(
        node = args.node_name,
        allocator = args.allocator.endpoints_text(),
        admin_addr = %admin.local_addr()?,
        "announcer starting"
    );
    run_until_shutdown(&args.common, admin, |mut shutdown| async move {
        let (mut assignments, answer_until, subscription) = subscribe(
            connector.clone(),
            args.node_name.clone(),
            readiness,
            Box::pin(std::future::pending()),
            metrics.stream_connected(),
        );
        let mut speaker = Speaker::new(args.node_address);
        let refresh = (args.l2_refresh_interval_ms > 0)
            .then(|| Duration::from_millis(args.l2_refresh_interval_ms));
        let l2 = L2Speaker::start(L2Options { refresh_interval: refresh }, metrics.l2());
        let (stop_layer2, layer2_stopped) = tokio::sync::oneshot::channel();
        let layer2 =
            tokio::spawn(follow_ownership(assignments.clone(), answer_until, l2, layer2_stopped));
        let mut reporter = Reporter::new(&connector);
        let mut report =
            tokio::time::interval(Duration::from_secs(args.report_interval_seconds.max(1)));
        loop {
            tokio::select! {
                changed = assignments.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let current = assignments.borrow_and_update().clone();
                    if let Some(current) = current {
                        speaker.apply(&current).await;
                    }
                }
                _ = report.tick() => {
                    let statuses = speaker.statuses();
                    metrics.update(&statuses);
                    metrics.update_bfd(&speaker.bfd_statuses());
                    reporter.report(&args.node_name, speaker.reports(&args.node_name)).await;
                }
                () = &mut shutdown => break,
            }
        }
        // Silent at once: another node may be given these IPs while this one drains.
        let _ = stop_layer2.send(());
        let _ = layer2.await;
        // Withdraw cleanly on a requested stop; a crash leaves graceful restart to keep routes.
        speaker.shutdown().await;
        subscription.abort();
        Ok(())
    })
    .await
}
