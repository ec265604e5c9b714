//! The life of a process: runtime and telemetry up, the work running beside the admin
//! endpoint, SIGTERM turned into a graceful stop bounded by a grace period, and the outcome
//! turned into an exit code.

use std::{pin::Pin, process::ExitCode, time::Duration};

use tokio::sync::watch;

use crate::{AdminServer, CommonArgs, shutdown};

/// Completes when the process has been asked to stop. Hand it to servers' graceful shutdown.
pub type ShutdownSignal = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Exit code for a failure after start-up (bad environment, a port in use, ...).
pub const EXIT_FAILURE: u8 = 1;

/// Builds the Tokio runtime, installs logs and traces for `service_name`, runs `work`, flushes
/// traces, and maps the outcome to the exit code.
pub fn run_main(
    service_name: &'static str,
    common: &CommonArgs,
    work: impl Future<Output = anyhow::Result<()>>,
) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("{service_name}: cannot start the async runtime: {err}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    runtime.block_on(async {
        let _telemetry = match crate::init(service_name, common) {
            Ok(guard) => guard,
            Err(err) => {
                eprintln!("{service_name}: {err:#}");
                return ExitCode::from(EXIT_FAILURE);
            }
        };
        match work.await {
            Ok(()) => {
                tracing::info!("stopped");
                ExitCode::SUCCESS
            }
            Err(err) => {
                tracing::error!(error = format!("{err:#}"), "exiting on error");
                ExitCode::from(EXIT_FAILURE)
            }
        }
    })
}

/// Serves `admin` and runs `work` until SIGTERM or SIGINT, or until `work` ends by itself.
/// On a signal, `work`'s shutdown signal fires and it gets the grace period to finish.
pub async fn run_until_shutdown<Work, Fut>(
    common: &CommonArgs,
    admin: AdminServer,
    work: Work,
) -> anyhow::Result<()>
where
    Work: FnOnce(ShutdownSignal) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let (stop, stopped) = watch::channel(false);
    let admin_task = tokio::spawn(admin.serve(signal_from(stopped.clone())));
    let work = work(signal_from(stopped));
    tokio::pin!(work);
    let grace = Duration::from_secs(common.shutdown_grace_seconds);

    let outcome = tokio::select! {
        outcome = &mut work => outcome,
        () = shutdown::signal() => {
            stop.send_replace(true);
            match tokio::time::timeout(grace, &mut work).await {
                Ok(outcome) => outcome,
                Err(_) => {
                    tracing::warn!(grace_seconds = grace.as_secs(), "work did not finish within the grace period; exiting anyway");
                    Ok(())
                }
            }
        }
    };
    stop.send_replace(true);
    match tokio::time::timeout(grace, admin_task).await {
        Ok(Ok(Err(err))) => tracing::warn!(error = %err, "admin endpoint failed"),
        Ok(Err(err)) => tracing::warn!(error = %err, "admin endpoint task panicked"),
        Ok(Ok(Ok(()))) | Err(_) => {}
    }
    outcome
}

fn signal_from(mut stopped: watch::Receiver<bool>) -> ShutdownSignal {
    Box::pin(async move {
        // An error means the sender is gone, which only happens once we are stopping anyway.
        let _ = stopped.wait_for(|stop| *stop).await;
    })
}
