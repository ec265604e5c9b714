//! The kubelet of a test node: its own root directory, certificate directory, pod log
//! directory and cgroup root, so several nodes run side by side; cgroupfs on this machine's
//! cgroup v1 hierarchies, which Kubernetes 1.36 only accepts when told to; no swap check; the
//! admin's credentials (a test needs no node authorizer), and authentication of the
//! apiserver's calls by the control plane's CA.

use std::{net::Ipv4Addr, path::Path, process::Command};

use crate::tools::cached_tool;

/// What differs between nodes.
pub(super) struct KubeletConfig<'a> {
    pub(super) dir: &'a Path,
    pub(super) node_name: &'a str,
    pub(super) node_ip: Ipv4Addr,
    pub(super) kubeconfig: &'a Path,
    pub(super) ca_cert: &'a Path,
    pub(super) containerd_socket: &'a Path,
    pub(super) cgroup_root: &'a str,
    pub(super) cluster_dns: Ipv4Addr,
}

/// Writes the KubeletConfiguration and returns the command that runs the kubelet with it.
pub(super) fn command(config: &KubeletConfig<'_>) -> anyhow::Result<Command> {
    let KubeletConfig {
        dir,
        node_name,
        node_ip,
        kubeconfig,
        ca_cert,
        containerd_socket,
        cgroup_root,
        cluster_dns,
    } = config;
    let root_dir = dir.join("kubelet");
    let pod_logs = dir.join("pod-logs");
    let volume_plugins = dir.join("volume-plugins");
    for path in [&root_dir, &pod_logs, &volume_plugins] {
        std::fs::create_dir_all(path)?;
    }
    let configuration = serde_json::json!({
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "authentication": {
            "anonymous": { "enabled": false },
            "webhook": { "enabled": false },
            "x509": { "clientCAFile": ca_cert },
        },
        // Only the apiserver, with the admin's certificate, calls the kubelet.
        "authorization": { "mode": "AlwaysAllow" },
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": cgroup_root,
        // This machine has the cgroup v1 (hybrid) layout; 1.36 refuses it by default.
        "failCgroupV1": false,
        "failSwapOn": false,
        "containerRuntimeEndpoint": format!("unix://{}", containerd_socket.display()),
        "clusterDNS": [cluster_dns.to_string()],
        "clusterDomain": "cluster.local",
        // Pods with dnsPolicy Default would otherwise get the machine's name servers, and
        // could send queries out of the lab.
        "resolvConf": "",
        "podLogsDir": pod_logs,
        "volumePluginDir": volume_plugins,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        // Quick node status and pod updates keep the tests' waits short.
        "nodeStatusUpdateFrequency": "4s",
        "syncFrequency": "10s",
        "fileCheckFrequency": "10s",
        "httpCheckFrequency": "10s",
        // Images are imported, never pulled: garbage-collecting one would lose it for good.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        // A test machine's disk may well be fuller than a node's defaults allow; a test
        // cares about pods running, not about evicting them.
        "evictionHard": {
            "memory.available": "1Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
            "nodefs.inodesFree": "1%",
        },
        "serializeImagePulls": false,
    });
    let config_path = dir.join("kubelet-config.json");
    std::fs::write(&config_path, serde_json::to_vec_pretty(&configuration)?)?;

    let mut command = Command::new(cached_tool("kubelet"));
    command
        .arg(format!("--config={}", config_path.display()))
        .arg(format!("--kubeconfig={}", kubeconfig.display()))
        .arg(format!("--root-dir={}", root_dir.display()))
        // The default is under /var/lib/kubelet whatever --root-dir says.
        .arg(format!("--cert-dir={}", root_dir.join("pki").display()))
        .arg(format!("--hostname-override={node_name}"))
        .arg(format!("--node-ip={node_ip}"));
    Ok(command)
}
