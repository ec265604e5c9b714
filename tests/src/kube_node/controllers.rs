//! kube-controller-manager and kube-scheduler for a test cluster: in the test's own network
//! namespace, no serving port (nothing scrapes them, and a fixed default port would collide
//! between parallel tests), no leader election (one instance each).

use std::{path::Path, process::Command};

use crate::{child::ChildProcess, kube_control_plane::ControlPlane, tools::cached_tool};

/// A running kube-controller-manager and kube-scheduler, killed on drop. One per control
/// plane, whatever the number of nodes.
pub struct ClusterControllers {
    controller_manager: ChildProcess,
    scheduler: ChildProcess,
}

impl ClusterControllers {
    /// Starts both against `control_plane` (which must outlive them), their logs beside the
    /// control plane's. `cluster_cidr` is the range all nodes' pod CIDRs are in (e.g.
    /// [`super::CLUSTER_CIDR`]).
    pub fn start(control_plane: &ControlPlane, cluster_cidr: &str) -> anyhow::Result<Self> {
        let dir = control_plane.dir();
        let controller_manager = ChildProcess::spawn(
            "kube-controller-manager",
            controller_manager(
                control_plane.kubeconfig_path(),
                control_plane.ca_cert_path(),
                control_plane.service_account_signing_key_path(),
                cluster_cidr,
            ),
            dir,
        )?;
        let scheduler =
            ChildProcess::spawn("kube-scheduler", scheduler(control_plane.kubeconfig_path()), dir)?;
        Ok(Self { controller_manager, scheduler })
    }

    /// Fails with the log of whichever has exited.
    pub fn ensure_running(&mut self) -> anyhow::Result<()> {
        self.controller_manager.ensure_running()?;
        self.scheduler.ensure_running()
    }

    /// Process IDs of kube-controller-manager and kube-scheduler.
    pub fn process_ids(&self) -> [u32; 2] {
        [self.controller_manager.pid(), self.scheduler.pid()]
    }
}

/// kube-controller-manager with the admin's kubeconfig. The root CA goes into every
/// namespace's `kube-root-ca.crt` ConfigMap and the signing key into service-account token
/// Secrets, as in a real cluster. Pod CIDRs come from the nodes' CNI configuration, so the
/// controller allocates none.
fn controller_manager(
    kubeconfig: &Path,
    ca_cert: &Path,
    service_account_key: &Path,
    cluster_cidr: &str,
) -> Command {
    let mut command = Command::new(cached_tool("kube-controller-manager"));
    command
        .arg(format!("--kubeconfig={}", kubeconfig.display()))
        .arg("--secure-port=0")
        .arg("--leader-elect=false")
        .arg(format!("--root-ca-file={}", ca_cert.display()))
        .arg(format!("--service-account-private-key-file={}", service_account_key.display()))
        .arg("--use-service-account-credentials=false")
        .arg(format!("--cluster-cidr={cluster_cidr}"))
        .arg("--allocate-node-cidrs=false")
        // Seconds rather than the production minute, so a test sees a stopped node go
        // NotReady (and its pods' endpoints go) soon.
        .arg("--node-monitor-grace-period=20s")
        .arg("--node-monitor-period=2s");
    command
}

/// kube-scheduler with the admin's kubeconfig.
fn scheduler(kubeconfig: &Path) -> Command {
    let mut command = Command::new(cached_tool("kube-scheduler"));
    command
        .arg(format!("--kubeconfig={}", kubeconfig.display()))
        .arg("--secure-port=0")
        .arg("--leader-elect=false");
    command
}
