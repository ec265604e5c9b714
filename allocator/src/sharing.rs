//! When two services may hold the same IP (MetalLB's `allow-shared-ip` rules): the same
//! sharing key, no port used by both, and either both use externalTrafficPolicy Cluster or
//! both select exactly the same pods.

use crate::{leases::Lease, service_spec::ServiceSpec};

/// `Ok` when `spec` may hold an address `holder` holds; otherwise why not, naming the holder.
pub fn may_share(spec: &ServiceSpec, holder: &Lease) -> Result<(), String> {
    if holder.service == spec.key {
        return Ok(());
    }
    let holder_name = &holder.service;
    let terms = match (&spec.sharing_key, &holder.sharing) {
        (Some(mine), Some(terms)) if *mine == terms.key => terms,
        (Some(_), Some(_)) => {
            return Err(format!("held by {holder_name} under a different sharing key"));
        }
        _ => {
            return Err(format!(
                "held by {holder_name}, and both need the same metallb.io/allow-shared-ip to share"
            ));
        }
    };
    if let Some((protocol, port)) = spec.ports.iter().find(|port| terms.ports.contains(port)) {
        let protocol = metallb_proto::pb::Protocol::try_from(*protocol)
            .map(|p| p.as_str_name().trim_start_matches("PROTOCOL_").to_lowercase())
            .unwrap_or_default();
        return Err(format!("shared with {holder_name}, which also uses {protocol}/{port}"));
    }
    let both_cluster = !spec.local_traffic && !terms.local_traffic;
    if !both_cluster && spec.selector != terms.selector {
        return Err(format!(
            "shared with {holder_name}: services sharing an IP must both use externalTrafficPolicy Cluster or select the same pods"
        ));
    }
    Ok(())
}
