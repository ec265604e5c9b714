//! `kubectl port-forward` as a test handle: a port on the test's loopback that leads, through
//! the apiserver and the kubelet, to a port of a pod behind a Service, as an operator reaches
//! an in-cluster UI. Stopped when the handle drops.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use anyhow::Context;

use crate::{child::ChildProcess, kube_control_plane::ControlPlane, tools::cached_tool};

/// How long kubectl may take to report the forwarded port.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `kubectl port-forward`.
pub struct PortForward {
    // Declared before `dir` so the process is killed before its log goes.
    process: ChildProcess,
    local_addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl PortForward {
    /// Forwards a free loopback port to `remote_port` of `target` (e.g. `svc/metallb-jaeger`)
    /// in `namespace`, and waits until kubectl listens.
    pub async fn start(
        control_plane: &ControlPlane,
        namespace: &str,
        target: &str,
        remote_port: u16,
    ) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("metallb-port-forward-").tempdir()?;
        let mut command = std::process::Command::new(cached_tool("kubectl"));
        command
            .arg("--kubeconfig")
            .arg(control_plane.kubeconfig_path())
            .args(["--namespace", namespace, "port-forward", "--address", "127.0.0.1", target])
            .arg(format!(":{remote_port}"));
        let mut process = ChildProcess::spawn("kubectl-port-forward", command, dir.path())?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            process.ensure_running()?;
            if let Some(local_addr) = forwarded_addr(&process.log()) {
                return Ok(Self { process, local_addr, _dir: dir });
            }
            if Instant::now() >= deadline {
                anyhow::bail!(
                    "kubectl port-forward {target} did not listen within {START_TIMEOUT:?}:\n{}",
                    process.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The loopback address that leads to the remote port.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// What kubectl printed (errors of single connections show here).
    pub fn log(&self) -> String {
        self.process.log()
    }
}

/// The address in kubectl's "Forwarding from 127.0.0.1:PORT -> REMOTE" line.
fn forwarded_addr(log: &str) -> Option<SocketAddr> {
    log.lines()
        .find_map(|line| line.strip_prefix("Forwarding from ")?.split(" -> ").next())
        .and_then(|addr| addr.parse().context("kubectl's forwarding line").ok())
}

#[cfg(test)]
mod tests {
    use super::forwarded_addr;

    #[test]
    fn reads_the_forwarded_port_from_kubectls_output() {
        let log = "Forwarding from 127.0.0.1:43121 -> 16686\nHandling connection for 43121\n";
        assert_eq!(forwarded_addr(log), Some("127.0.0.1:43121".parse().unwrap()));
        assert_eq!(forwarded_addr("error: unable to forward\n"), None);
    }
}
