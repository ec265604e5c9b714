//! What of a node decides the BGP routes it announces: whether it announces at all, which peers
//! it has a session with and which advertisements select it. Nodes with the same profile
//! announce a Service routed from every node (externalTrafficPolicy Cluster) identically, so
//! those routes are computed once per profile, not once per node: clusters have hundreds of
//! nodes but a handful of distinct profiles.

use std::collections::BTreeMap;

use crate::{
    address::{Address, Family},
    config::Config,
    leases::Lease,
    nodes::NodeInfo,
    selector::any_matches,
    service_spec::ServiceSpec,
};

use super::{RouteBuilder, RouteKey};

/// A node's profile under one configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Profile {
    /// Announces nothing: unknown to the allocator, excluded by label or NetworkUnavailable.
    pub silent: bool,
    /// Names of the peers whose node selectors select the node, in name order.
    pub peers: Vec<String>,
    /// Indexes of the advertisements whose node selectors select the node, in order.
    pub advertisements: Vec<usize>,
}

impl Profile {
    /// The profile of `node` (`None`: a node the watcher has not reported) under `config`.
    /// A silent node still has its sessions: it keeps its peers and announces no route.
    pub fn of(config: &Config, node: Option<&NodeInfo>) -> Self {
        let Some(node) = node else { return Self { silent: true, ..Self::default() } };
        let peers = config
            .peers
            .values()
            .filter(|peer| any_matches(&peer.node_selectors, &node.labels))
            .map(|peer| peer.spec.name.clone())
            .collect();
        let advertisements = if node.excluded {
            Vec::new()
        } else {
            config
                .advertisements
                .iter()
                .enumerate()
                .filter(|(_, ad)| any_matches(&ad.node_selectors, &node.labels))
                .map(|(index, _)| index)
                .collect()
        };
        Self { silent: node.excluded, peers, advertisements }
    }

    /// The routes a node of this profile announces for `lease` of `service`, when it announces
    /// the Service at all (that depends on the traffic policy and endpoints, not the profile).
    pub fn service_routes(
        &self,
        config: &Config,
        lease: &Lease,
        service: &ServiceSpec,
    ) -> BTreeMap<RouteKey, RouteBuilder> {
        let mut routes: BTreeMap<RouteKey, RouteBuilder> = BTreeMap::new();
        if self.silent {
            return routes;
        }
        for ad in self.advertisements.iter().filter_map(|index| config.advertisements.get(*index)) {
            if !ad.pools.contains(&lease.pool)
                || !any_matches(&ad.service_selectors, &service.labels)
            {
                continue;
            }
            for peer in self.peers.iter().filter_map(|name| config.peers.get(name)) {
                if !ad.peers.is_empty() && !ad.peers.contains(&peer.spec.name) {
                    continue;
                }
                for ip in &lease.ips {
                    let address = Address::from_ip(*ip);
                    if !peer.carries(address.family) {
                        continue;
                    }
                    let length = match address.family {
                        Family::V4 => ad.aggregation_length_v4,
                        Family::V6 => ad.aggregation_length_v6,
                    };
                    let prefix = format!("{}/{length}", address.masked(length).to_ip());
                    let route = routes.entry((peer.spec.name.clone(), prefix)).or_default();
                    route.local_pref = route.local_pref.max(ad.local_pref);
                    route.communities.extend(ad.communities.iter().copied());
                    route.services.insert(lease.service.clone());
                }
            }
        }
        routes
    }
}
