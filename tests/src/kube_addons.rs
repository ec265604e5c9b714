//! Cluster add-ons a real node needs beyond the control plane: today the cluster DNS (CoreDNS),
//! which the manifests' Service names depend on. Images are the ones
//! `tests/scripts/build-test-images.sh` builds, imported into the node's runtime beforehand.

use crate::kube_control_plane::ControlPlane;

const COREDNS_MANIFEST: &str = include_str!("kube_addons/coredns.yaml");

/// Applies CoreDNS (ServiceAccount, RBAC, Corefile, Deployment, and the `kube-dns` Service at
/// `cluster_dns_ip`, the address the kubelet writes into pods' resolv.conf) running `image`.
pub async fn install_cluster_dns(
    control_plane: &ControlPlane,
    image: &str,
    cluster_dns_ip: std::net::IpAddr,
) -> anyhow::Result<()> {
    let manifest = COREDNS_MANIFEST
        .replace("image: IMAGE", &format!("image: {image}"))
        .replace("clusterIP: CLUSTER_DNS_IP", &format!("clusterIP: {cluster_dns_ip}"));
    control_plane.apply_yaml(&manifest).await
}
