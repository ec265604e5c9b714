//! Which nodes may answer for each layer 2 IP, from the configuration and the Services alone
//! (liveness is the owner table's business): a node matched by an L2Advertisement of the IP's
//! pool that selects the Service, not excluded from load-balancing, not NetworkUnavailable, not NotReady, and, for a
//! Service with `externalTrafficPolicy: Local`, holding one of its ready endpoints (for
//! `Cluster`, any ready endpoint anywhere). For an IP shared by several Services, a node must
//! suit every one of them: traffic for any of them arrives wherever the IP is answered.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use crate::{
    config::Config,
    leases::Leases,
    nodes::NodeInfo,
    selector::any_matches,
    service_spec::{ServiceKey, ServiceSpec},
};

/// The nodes that may answer for one IP, and the Services holding it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Candidates {
    /// Services holding the IP.
    pub services: BTreeSet<ServiceKey>,
    /// Each node that may answer, with the interfaces it may answer on (empty: every interface
    /// whose addresses cover the IP).
    pub nodes: BTreeMap<String, BTreeSet<String>>,
}

/// The candidates of every IP that some L2Advertisement covers.
pub fn eligible(
    config: &Config,
    leases: &Leases,
    services: &BTreeMap<ServiceKey, ServiceSpec>,
    nodes: &BTreeMap<String, NodeInfo>,
) -> BTreeMap<IpAddr, Candidates> {
    let mut eligible: BTreeMap<IpAddr, Candidates> = BTreeMap::new();
    if config.l2_advertisements.is_empty() {
        return eligible;
    }
    for lease in leases.iter() {
        let Some(service) = services.get(&lease.service) else { continue };
        let ads: Vec<_> = config
            .l2_advertisements
            .iter()
            .filter(|ad| ad.pools.contains(&lease.pool))
            .filter(|ad| any_matches(&ad.service_selectors, &service.labels))
            .collect();
        if ads.is_empty() {
            continue;
        }
        let suits: BTreeMap<String, BTreeSet<String>> = nodes
            .values()
            .filter(|node| !node.excluded && node.ready)
            .filter(|node| match service.local_traffic {
                true => service.ready_endpoint_nodes.contains(&node.name),
                false => service.has_ready_endpoints,
            })
            .filter_map(|node| {
                let matching: Vec<_> =
                    ads.iter().filter(|ad| any_matches(&ad.node_selectors, &node.labels)).collect();
                if matching.is_empty() {
                    return None;
                }
                let interfaces = match matching.iter().any(|ad| ad.interfaces.is_empty()) {
                    true => BTreeSet::new(),
                    false => matching.iter().flat_map(|ad| ad.interfaces.iter().cloned()).collect(),
                };
                Some((node.name.clone(), interfaces))
            })
            .collect();
        for ip in &lease.ips {
            match eligible.get_mut(ip) {
                None => {
                    let services = BTreeSet::from([lease.service.clone()]);
                    eligible.insert(*ip, Candidates { services, nodes: suits.clone() });
                }
                Some(shared) => {
                    shared.services.insert(lease.service.clone());
                    shared.nodes.retain(|node, _| suits.contains_key(node));
                    for (node, interfaces) in shared.nodes.iter_mut() {
                        widen(interfaces, &suits[node]);
                    }
                }
            }
        }
    }
    eligible
}

/// Interfaces allowed by either of two advertisements' choices (empty means all).
fn widen(interfaces: &mut BTreeSet<String>, other: &BTreeSet<String>) {
    if interfaces.is_empty() || other.is_empty() {
        interfaces.clear();
    } else {
        interfaces.extend(other.iter().cloned());
    }
}
