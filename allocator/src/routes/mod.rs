//! What one node announces: for each lease, each advertisement that selects its pool and the
//! node, the route (the IP masked to the aggregation length, local-pref, communities) to each
//! peer that applies to the node. ETP=Local services only from nodes with a ready endpoint;
//! ETP=Cluster services from every eligible node once they have any ready endpoint.

use std::collections::{BTreeMap, BTreeSet};

use metallb_proto::pb;

pub use self::profile::Profile;
use crate::{
    config::{Community, Config},
    leases::{Lease, Leases},
    nodes::NodeInfo,
    service_spec::{ServiceKey, ServiceSpec},
};

mod profile;

/// A route's identity on a node: (peer name, prefix).
pub type RouteKey = (String, String);

/// The peers and routes of `node`, computed from every lease: the reference the incremental
/// views (`crate::views`) must always agree with, and what a one-off read returns.
pub fn node_assignments(
    config: &Config,
    leases: &Leases,
    services: &BTreeMap<ServiceKey, ServiceSpec>,
    node: &NodeInfo,
) -> pb::NodeAssignments {
    let profile = Profile::of(config, Some(node));
    let mut routes: BTreeMap<RouteKey, RouteBuilder> = BTreeMap::new();
    for lease in leases.iter() {
        let Some(service) = services.get(&lease.service) else { continue };
        if !announces_from(lease, service, &node.name) {
            continue;
        }
        for (key, route) in profile.service_routes(config, lease, service) {
            routes.entry(key).or_default().absorb(&route);
        }
    }
    pb::NodeAssignments {
        peers: profile_peers(config, &profile),
        routes: routes.iter().map(|(key, route)| route.build(key)).collect(),
        l2_announcements: Vec::new(),
    }
}

/// The peers of a node of `profile`.
pub fn profile_peers(config: &Config, profile: &Profile) -> Vec<pb::BgpPeer> {
    profile.peers.iter().filter_map(|name| config.peers.get(name)).map(|p| p.spec.clone()).collect()
}

/// How a leased Service is announced: from every eligible node, from the nodes with a ready
/// endpoint, or not at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    /// externalTrafficPolicy Cluster with any ready endpoint.
    EveryNode,
    /// externalTrafficPolicy Local: the nodes in `ready_endpoint_nodes`.
    EndpointNodes,
    /// No ready endpoint.
    Nowhere,
}

impl Reach {
    /// How `service` is announced.
    pub fn of(service: &ServiceSpec) -> Self {
        if service.local_traffic {
            Self::EndpointNodes
        } else if service.has_ready_endpoints {
            Self::EveryNode
        } else {
            Self::Nowhere
        }
    }
}

/// Whether `node` announces `lease` of `service` (given its profile lets it).
fn announces_from(lease: &Lease, service: &ServiceSpec, node: &str) -> bool {
    debug_assert_eq!(lease.service, service.key);
    match Reach::of(service) {
        Reach::EveryNode => true,
        Reach::EndpointNodes => service.ready_endpoint_nodes.contains(node),
        Reach::Nowhere => false,
    }
}

/// A route being merged from every advertisement and Service that yields it: the highest
/// local-pref and the union of communities win, so no advertisement's intent is dropped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteBuilder {
    local_pref: Option<u32>,
    communities: BTreeSet<Community>,
    services: BTreeSet<ServiceKey>,
}

impl RouteBuilder {
    /// Adds what `other` says of the same route.
    pub fn absorb(&mut self, other: &RouteBuilder) {
        self.local_pref = self.local_pref.max(other.local_pref);
        self.communities.extend(other.communities.iter().copied());
        self.services.extend(other.services.iter().cloned());
    }

    /// The route at `key` in the contract's terms.
    pub fn build(&self, (peer, prefix): &RouteKey) -> pb::Route {
        let (mut communities, mut large_communities) = (Vec::new(), Vec::new());
        for community in &self.communities {
            match community {
                Community::Standard(..) => communities.push(community.to_string()),
                Community::Large(..) => large_communities.push(community.to_string()),
            }
        }
        pb::Route {
            key: Some(pb::RouteKey { peer: peer.clone(), prefix: prefix.clone() }),
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
