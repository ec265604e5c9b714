//! The etcd behind the apiserver: a single member listening on two loopback ports, its data in
//! the control plane's directory, tuned for tests rather than durability.

use std::{net::SocketAddr, path::Path, process::Command};

use crate::tools::cached_tool;

/// Loopback addresses of one etcd member.
#[derive(Clone, Copy, Debug)]
pub(super) struct EtcdAddrs {
    pub(super) client: SocketAddr,
    pub(super) peer: SocketAddr,
}

impl EtcdAddrs {
    /// The value for kube-apiserver's `--etcd-servers`.
    pub(super) fn client_url(&self) -> String {
        format!("http://{}", self.client)
    }
}

/// The command that runs etcd with its data under `dir`.
pub(super) fn command(dir: &Path, addrs: EtcdAddrs) -> Command {
    let client_url = addrs.client_url();
    let peer_url = format!("http://{}", addrs.peer);
    let mut command = Command::new(cached_tool("etcd"));
    command
        .arg("--name=default")
        .arg(format!("--data-dir={}", dir.join("etcd-data").display()))
        .arg(format!("--listen-client-urls={client_url}"))
        .arg(format!("--advertise-client-urls={client_url}"))
        // Even a single member binds a peer port (default :2380, which parallel tests would
        // fight over), so it gets a free one too.
        .arg(format!("--listen-peer-urls={peer_url}"))
        .arg(format!("--initial-advertise-peer-urls={peer_url}"))
        .arg(format!("--initial-cluster=default={peer_url}"))
        .arg("--initial-cluster-state=new")
        // The data dies with the test: fsync only costs time (a lot of it on a busy disk).
        .arg("--unsafe-no-fsync")
        .arg("--log-level=warn");
    // A developer's ETCD_* settings would override the flags' intent (etcd reads them as flags).
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("ETCD_") {
            command.env_remove(key);
        }
    }
    command
}
