//! kube-apiserver for tests: loopback only, client-certificate authentication against the
//! control plane's CA, RBAC authorization, and no more than it needs to start in a few seconds.

use std::{net::SocketAddr, path::Path, process::Command};

use crate::tools::cached_tool;

/// The files and addresses kube-apiserver is started with.
pub(super) struct ApiserverConfig<'a> {
    pub(super) dir: &'a Path,
    pub(super) secure_addr: SocketAddr,
    pub(super) etcd_url: &'a str,
    pub(super) ca_cert: &'a Path,
    pub(super) serving_cert: &'a Path,
    pub(super) serving_key: &'a Path,
    pub(super) service_account_signing_key: &'a Path,
    pub(super) service_account_public_key: &'a Path,
    /// Whether kubelets and pods use this apiserver (see `ControlPlaneOptions`).
    pub(super) serves_nodes: bool,
    /// What the apiserver presents to kubelets (for logs, exec, port-forward).
    pub(super) kubelet_client_cert: &'a Path,
    pub(super) kubelet_client_key: &'a Path,
}

/// The ServiceAccount token issuer of kubeadm's clusters (its `--service-account-issuer`
/// default), which deploy/ and the chart expect unless told otherwise.
pub const KUBEADM_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// The Service ClusterIP ranges, IPv4 first (the family of single-stack Services that name
/// none) and IPv6 (so tests can make IPv6 and dual-stack Services, as in a dual-stack cluster).
/// Only configuration: nothing routes to them.
pub const SERVICE_CLUSTER_IP_RANGE: &str = "10.96.0.0/16,fd00:10:96::/112";

/// The ClusterIP of the `kubernetes` Service: the first address of the IPv4 range.
pub const KUBERNETES_SERVICE_IP: std::net::Ipv4Addr = std::net::Ipv4Addr::new(10, 96, 0, 1);

/// The command that runs kube-apiserver with `config`.
pub(super) fn command(config: &ApiserverConfig<'_>) -> Command {
    let ApiserverConfig {
        dir,
        secure_addr,
        etcd_url,
        ca_cert,
        serving_cert,
        serving_key,
        service_account_signing_key,
        service_account_public_key,
        serves_nodes,
        kubelet_client_cert,
        kubelet_client_key,
    } = config;
    let mut command = Command::new(cached_tool("kube-apiserver"));
    command
        .arg(format!("--bind-address={}", secure_addr.ip()))
        .arg(format!("--secure-port={}", secure_addr.port()))
        .arg(format!("--advertise-address={}", secure_addr.ip()))
        .arg(format!("--etcd-servers={etcd_url}"))
        // Anything the apiserver would otherwise write (e.g. self-signed loopback certificates)
        // lands in the temp dir instead of /var/run/kubernetes.
        .arg(format!("--cert-dir={}", dir.join("apiserver-certs").display()))
        .arg(format!("--tls-cert-file={}", serving_cert.display()))
        .arg(format!("--tls-private-key-file={}", serving_key.display()))
        .arg(format!("--client-ca-file={}", ca_cert.display()))
        .arg("--authorization-mode=RBAC")
        .arg(format!("--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}"))
        // Required since 1.20. A cluster with nodes issues tokens as kubeadm's clusters do, the
        // issuer deploy/ expects by default; without nodes, tests name the apiserver itself.
        .arg(format!(
            "--service-account-issuer={}",
            if *serves_nodes {
                KUBEADM_ISSUER.to_string()
            } else {
                format!("https://{secure_addr}")
            }
        ))
        .arg(format!("--service-account-key-file={}", service_account_public_key.display()))
        .arg(format!(
            "--service-account-signing-key-file={}",
            service_account_signing_key.display()
        ))
        // The test is the only client: API priority and fairness would only add bootstrap
        // work to the readiness path.
        .arg("--enable-priority-and-fairness=false")
        .arg("--allow-privileged=true")
        .arg("--profiling=false");
    if *serves_nodes {
        // Pods talk to the apiserver through the `kubernetes` Service, whose endpoint this
        // reconciler keeps; a controller manager creates the ServiceAccounts that admission
        // then requires and mounts tokens of.
        command
            .arg("--endpoint-reconciler-type=lease")
            .arg(format!("--kubelet-client-certificate={}", kubelet_client_cert.display()))
            .arg(format!("--kubelet-client-key={}", kubelet_client_key.display()))
            // The node's address on the link to the apiserver: its other addresses are only
            // reachable inside the lab.
            .arg("--kubelet-preferred-address-types=InternalIP");
    } else {
        command
            // Without a controller manager nobody creates the default ServiceAccount, and
            // this plugin would reject every Pod for lacking it.
            .arg("--disable-admission-plugins=ServiceAccount")
            // Nothing routes to the `kubernetes` Service without nodes: no endpoint to keep.
            .arg("--endpoint-reconciler-type=none");
    }
    command
}
