//! What one node announces: for each lease, each advertisement that selects its pool and the
//! node, the route (the IP masked to the aggregation length, local-pref, communities) to each
//! peer that applies to the node. ETP=Local services only from nodes with a ready endpoint;
//! ETP=Cluster services from every eligible node once they have any ready endpoint.

use std::collections::{BTreeMap, BTreeSet};

use metallb_proto::pb;

use crate::{
    address::{Address, Family},
    config::{Community, Config},
    leases::Leases,
    nodes::NodeInfo,
    selector::any_matches,
    service_spec::{ServiceKey, ServiceSpec},
};

/// The peers and routes of `node`.
pub fn node_assignments(
    config: &Config,
    leases: &Leases,
    services: &BTreeMap<ServiceKey, ServiceSpec>,
    node: &NodeInfo,
) -> pb::NodeAssignments {
    let peers: Vec<&crate::config::Peer> = config
        .peers
        .values()
        .filter(|peer| any_matches(&peer.node_selectors, &node.labels))
        .collect();
    let mut routes: BTreeMap<(String, String), RouteBuilder> = BTreeMap::new();
    if !node.excluded {
        for lease in leases.iter() {
            let Some(service) = services.get(&lease.service) else { continue };
            let announces = if service.local_traffic {
                service.ready_endpoint_nodes.contains(&node.name)
            } else {
                service.has_ready_endpoints
            };
            if !announces {
                continue;
            }
            for ad in &config.advertisements {
                if !ad.pools.contains(&lease.pool)
                    || !any_matches(&ad.node_selectors, &node.labels)
                    || !any_matches(&ad.service_selectors, &service.labels)
                {
                    continue;
                }
                for peer in &peers {
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
        }
    }
    pb::NodeAssignments {
        peers: peers.iter().map(|peer| peer.spec.clone()).collect(),
        routes: routes
            .into_iter()
            .map(|((peer, prefix), route)| route.build(peer, prefix))
            .collect(),
        l2_announcements: Vec::new(),
    }
}

/// A route being merged from every advertisement that yields it: the highest local-pref and
/// the union of communities win, so no advertisement's intent is dropped.
#[derive(Default)]
struct RouteBuilder {
    local_pref: Option<u32>,
    communities: BTreeSet<Community>,
    services: BTreeSet<ServiceKey>,
}

impl RouteBuilder {
    fn build(self, peer: String, prefix: String) -> pb::Route {
        let (mut communities, mut large_communities) = (Vec::new(), Vec::new());
        for community in self.communities {
            match community {
                Community::Standard(..) => communities.push(community.to_string()),
                Community::Large(..) => large_communities.push(community.to_string()),
            }
        }
        pb::Route {
            key: Some(pb::RouteKey { peer, prefix }),
            local_pref: self.local_pref,
            communities,
            large_communities,
            services: self.services.iter().map(ServiceKey::to_pb).collect(),
        }
    }
}

/// The difference between what a node announced and what it must announce now.
pub fn delta(before: &pb::NodeAssignments, after: &pb::NodeAssignments) -> pb::AssignmentDelta {
    let peers_before: BTreeMap<&str, &pb::BgpPeer> =
        before.peers.iter().map(|p| (p.name.as_str(), p)).collect();
    let peers_after: BTreeMap<&str, &pb::BgpPeer> =
        after.peers.iter().map(|p| (p.name.as_str(), p)).collect();
    let routes_before: BTreeMap<_, &pb::Route> =
        before.routes.iter().map(|r| (route_key(r), r)).collect();
    let routes_after: BTreeMap<_, &pb::Route> =
        after.routes.iter().map(|r| (route_key(r), r)).collect();
    let l2_before: BTreeMap<&str, &pb::L2Announcement> =
        before.l2_announcements.iter().map(|a| (a.ip.as_str(), a)).collect();
    let l2_after: BTreeMap<&str, &pb::L2Announcement> =
        after.l2_announcements.iter().map(|a| (a.ip.as_str(), a)).collect();
    pb::AssignmentDelta {
        peers_upserted: peers_after
            .iter()
            .filter(|(name, peer)| peers_before.get(*name) != Some(*peer))
            .map(|(_, peer)| (*peer).clone())
            .collect(),
        peers_removed: peers_before
            .keys()
            .filter(|name| !peers_after.contains_key(*name))
            .map(|n| n.to_string())
            .collect(),
        routes_upserted: routes_after
            .iter()
            .filter(|(key, route)| routes_before.get(*key) != Some(*route))
            .map(|(_, route)| (*route).clone())
            .collect(),
        routes_withdrawn: routes_before
            .keys()
            // A removed peer takes its routes with it; withdrawing them too would be noise.
            .filter(|key| {
                !routes_after.contains_key(*key) && peers_after.contains_key(key.0.as_str())
            })
            .map(|(peer, prefix)| pb::RouteKey { peer: peer.clone(), prefix: prefix.clone() })
            .collect(),
        l2_upserted: l2_after
            .iter()
            .filter(|(ip, announcement)| l2_before.get(*ip) != Some(*announcement))
            .map(|(_, announcement)| (*announcement).clone())
            .collect(),
        l2_withdrawn: l2_before
            .keys()
            .filter(|ip| !l2_after.contains_key(*ip))
            .map(|ip| ip.to_string())
            .collect(),
    }
}

/// Whether a delta changes nothing.
pub fn is_empty(delta: &pb::AssignmentDelta) -> bool {
    delta.peers_upserted.is_empty()
        && delta.peers_removed.is_empty()
        && delta.routes_upserted.is_empty()
        && delta.routes_withdrawn.is_empty()
        && delta.l2_upserted.is_empty()
        && delta.l2_withdrawn.is_empty()
}

fn route_key(route: &pb::Route) -> (String, String) {
    let key = route.key.clone().unwrap_or_default();
    (key.peer, key.prefix)
}

#[cfg(test)]
mod tests;
