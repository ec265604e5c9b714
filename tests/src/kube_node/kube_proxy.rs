//! kube-proxy of a test node, in iptables mode inside the node's namespace (so its rules live
//! and die with the namespace). It leaves the machine-wide conntrack table size alone: only
//! per-namespace settings may change.

use std::{path::Path, process::Command};

use crate::tools::cached_tool;

/// Writes the KubeProxyConfiguration and returns the command that runs kube-proxy with it.
pub(super) fn command(
    dir: &Path,
    node_name: &str,
    kubeconfig: &Path,
    cluster_cidr: &str,
) -> anyhow::Result<Command> {
    let configuration = serde_json::json!({
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "iptables",
        "clientConnection": { "kubeconfig": kubeconfig },
        "hostnameOverride": node_name,
        "clusterCIDR": cluster_cidr,
        "healthzBindAddress": "127.0.0.1:10256",
        "metricsBindAddress": "127.0.0.1:10249",
        // nf_conntrack_max is one value for the whole machine; zero means "leave it".
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
        },
        // Lowering its own OOM score needs CAP_SYS_RESOURCE, which a test machine may lack.
        "oomScoreAdj": 0,
        // A Service's rules follow its endpoints within a second.
        "iptables": { "minSyncPeriod": "0s", "syncPeriod": "10s" },
    });
    let config_path = dir.join("kube-proxy-config.json");
    std::fs::write(&config_path, serde_json::to_vec_pretty(&configuration)?)?;
    let mut command = Command::new(cached_tool("kube-proxy"));
    command.arg(format!("--config={}", config_path.display()));
    Ok(command)
}
