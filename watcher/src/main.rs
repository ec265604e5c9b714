//! `metallb-watcher`: see `metallb_watcher` for what it does.

use std::{process::ExitCode, sync::Arc, time::Duration};

use metallb_process::{
    AdminServer, AllocatorConnector, Readiness, parse_args_or_exit, run_until_shutdown,
};
use metallb_watcher::{
    admission::{Reviewer, Webhook},
    allocator_tls::{self, TlsSettings},
    args::{Args, WebhookTls},
    kube_connection,
    leadership::{Election, ElectionSettings},
    leftovers,
    metrics::WatcherMetrics,
    reconciler::{Reconciler, Settings},
    sources::Sources,
    webhook_tls::{self, CurrentCertificate},
    writeback::Writer,
};
use prometheus_client::registry::Registry;
use tokio::sync::{Notify, watch};

const SERVICE_NAME: &str = "metallb-watcher";

fn main() -> ExitCode {
    let args: Args = parse_args_or_exit();
    if let Err(message) = args.validate() {
        metallb_process::usage_error(&message);
    }
    metallb_process::run_main(SERVICE_NAME, &args.common.clone(), run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let readiness = Readiness::new("the Kubernetes API has not answered yet");
    let mut registry = Registry::default();
    let metrics = WatcherMetrics::register(&mut registry);
    let admin = AdminServer::bind(args.common.admin_addr, registry, readiness.clone()).await?;
    let client = kube_connection::client(args.kubeconfig.as_deref()).await?;
    let connector = AllocatorConnector::new(&args.allocator)?;
    tracing::info!(
        allocator = args.allocator.endpoints_text(),
        config_namespace = args.config_namespace,
        load_balancer_class = args.load_balancer_class.as_deref().unwrap_or("<none>"),
        admin_addr = %admin.local_addr()?,
        "watcher starting"
    );
    let identity = args.identity();
    let webhook = args.webhook()?;
    run_until_shutdown(&args.common, admin, |shutdown| async move {
        let mut election = None;
        let work = async {
            let version = kube_connection::wait_until_reachable(&client, &readiness).await;
            tracing::info!(version, "Kubernetes API reachable");
            leftovers::warn_about_metallb_webhook(&client).await;
            if args.manage_allocator_tls {
                let settings = TlsSettings {
                    namespace: args.config_namespace.clone(),
                    service: args.allocator_service.clone(),
                    serving_validity: Duration::from_secs(
                        args.allocator_cert_validity_hours.max(1) * 3600,
                    ),
                };
                let interval = Duration::from_secs(args.allocator_tls_check_seconds.max(1));
                tokio::spawn(allocator_tls::keep_current(client.clone(), settings, interval));
            }
            readiness.set_not_ready("reading the initial lists");
            let changed = Arc::new(Notify::new());
            let sources = Sources::start(&client, &args.config_namespace, changed.clone(), &metrics).await;
            sources.wait_until_ready().await?;
            tracing::info!("initial lists read");
            if let Some(plan) = webhook {
                // Every replica answers reviews (they read, never write): the leader need not
                // be the one the API server reaches.
                let certificate = Arc::new(CurrentCertificate::default());
                match plan.tls {
                    WebhookTls::Files { cert, key } => certificate.install(&cert, &key)?,
                    WebhookTls::FromCa(settings) => {
                        let keeper = webhook_tls::keep_current(client.clone(), settings, certificate.clone());
                        tokio::spawn(keeper);
                    }
                }
                let webhook = Webhook::bind(plan.addr, certificate).await?;
                tracing::info!(webhook_addr = %webhook.local_addr()?, "serving the admission webhook");
                let reviewer =
                    Reviewer::new(sources.clone(), args.config_namespace.clone(), connector.clone());
                tokio::spawn(webhook.serve(Arc::new(reviewer)));
            }
            let leading = if args.leader_election {
                let settings = ElectionSettings {
                    namespace: args.config_namespace.clone(),
                    lease_name: args.leader_lease_name.clone(),
                    identity,
                    lease_seconds: args.leader_lease_seconds,
                    renew_before_seconds: args.leader_renew_before_seconds,
                };
                tracing::info!(
                    lease = settings.lease_name,
                    identity = settings.identity,
                    "joining the leader election"
                );
                let joined = election.insert(Election::join(client.clone(), settings).await?);
                joined.leading()
            } else {
                watch::channel(true).1
            };
            readiness.set_not_ready("waiting for the first pass to reach the allocator");
            let settings = Settings {
                allocator: connector,
                config_namespace: args.config_namespace.clone(),
                load_balancer_class: args.load_balancer_class.clone(),
                metrics,
            };
            Reconciler::new(settings, sources, Writer::new(client.clone()))
                .run(changed, leading, readiness)
                .await;
            anyhow::Ok(())
        };
        let result = tokio::select! {
            result = work => result,
            () = shutdown => Ok(()),
        };
        if let Some(election) = election {
            election.resign().await;
        }
        result
    })
    .await
}
