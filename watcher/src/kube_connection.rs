//! Reaching the Kubernetes API: a client from an explicit kubeconfig or the usual inference,
//! and a first contact retried with backoff so the watcher can start before the API answers.

use std::path::Path;

use kube::{
    Client, Config,
    config::{KubeConfigOptions, Kubeconfig},
};
use metallb_process::{Backoff, Readiness};

/// A client for the API server named by `kubeconfig`, or inferred (in-cluster service account,
/// then ~/.kube/config) when `None`.
pub async fn client(kubeconfig: Option<&Path>) -> anyhow::Result<Client> {
    let config = match kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path)
                .map_err(|err| anyhow::anyhow!("reading kubeconfig {}: {err}", path.display()))?;
            Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .map_err(|err| anyhow::anyhow!("using kubeconfig {}: {err}", path.display()))?
        }
        None => Config::infer().await.map_err(|err| {
            anyhow::anyhow!("finding the Kubernetes API (no --kubeconfig): {err}")
        })?,
    };
    Ok(Client::try_from(config)?)
}

/// Asks the API server for its version until it answers, then marks `readiness` ready.
/// Returns the server's version string, e.g. "v1.36.3".
pub async fn wait_until_reachable(client: &Client, readiness: &Readiness) -> String {
    let mut backoff = Backoff::default();
    loop {
        match client.apiserver_version().await {
            Ok(info) => {
                readiness.set_ready();
                return info.git_version;
            }
            Err(err) => {
                let delay = backoff.next_delay();
                readiness.set_not_ready(format!("Kubernetes API unreachable: {err}"));
                tracing::warn!(error = %err, retry_in_ms = delay.as_millis() as u64, "Kubernetes API unreachable");
                tokio::time::sleep(delay).await;
            }
        }
    }
}
