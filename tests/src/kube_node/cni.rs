//! The node's pod network: the standard bridge and host-local IPAM plugins (Debian's
//! containernetworking-plugins) on a bridge inside the node's namespace, with the node's pod
//! CIDR written in. Pods' traffic to anything outside the pod CIDR is masqueraded to the
//! node's address, as on a real node: replies then find their way back (the apiserver's side
//! of the host link knows no route to pod addresses).

use std::path::Path;

/// Writes the configuration list for network `name` into `conf_dir`, keeping host-local's
/// address leases in `ipam_dir`.
pub(super) fn write_config(
    conf_dir: &Path,
    name: &str,
    pod_cidr: &str,
    ipam_dir: &Path,
) -> anyhow::Result<()> {
    let config = serde_json::json!({
        // The newest version Debian's plugins (1.1) speak.
        "cniVersion": "1.0.0",
        "name": name,
        "plugins": [
            {
                "type": "bridge",
                "bridge": "cni0",
                "isGateway": true,
                "ipMasq": true,
                // A pod reaching itself through a Service comes back over its own port.
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{ "subnet": pod_cidr }]],
                    "routes": [{ "dst": "0.0.0.0/0" }],
                    "dataDir": ipam_dir,
                }
            },
            { "type": "portmap", "capabilities": { "portMappings": true } }
        ]
    });
    std::fs::create_dir_all(conf_dir)?;
    std::fs::create_dir_all(ipam_dir)?;
    std::fs::write(conf_dir.join("10-pods.conflist"), serde_json::to_vec_pretty(&config)?)?;
    Ok(())
}
