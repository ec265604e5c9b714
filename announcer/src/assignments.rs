//! What this node must announce, as the allocator last said: the peers to keep sessions with,
//! the routes for each, and the IPs it answers ARP/NDP for. A snapshot replaces it; a delta
//! edits it.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use metallb_proto::pb;

/// The node's current assignments, keyed for cheap deltas.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Assignments {
    peers: BTreeMap<String, pb::BgpPeer>,
    routes: BTreeMap<RouteKey, pb::Route>,
    /// Layer 2 IPs this node owns, each with the interfaces it may answer on (empty: any
    /// interface whose addresses cover it).
    l2: BTreeMap<IpAddr, BTreeSet<String>>,
    /// The trace of the last change, so the UPDATEs it causes join that trace.
    cause: Option<pb::TraceContext>,
}

/// (peer name, prefix): a route's identity.
pub type RouteKey = (String, String);

impl Assignments {
    /// The assignments in a snapshot.
    pub fn from_snapshot(snapshot: pb::NodeAssignments) -> Self {
        let mut assignments = Self::default();
        for peer in snapshot.peers {
            assignments.peers.insert(peer.name.clone(), peer);
        }
        for route in snapshot.routes {
            assignments.upsert_route(route);
        }
        for announcement in snapshot.l2_announcements {
            assignments.upsert_l2(announcement);
        }
        assignments
    }

    /// Applies a delta: peers first (a removed peer takes its routes with it), then routes.
    pub fn apply(&mut self, delta: pb::AssignmentDelta) {
        for peer in delta.peers_upserted {
            self.peers.insert(peer.name.clone(), peer);
        }
        for name in &delta.peers_removed {
            self.peers.remove(name);
            self.routes.retain(|(peer, _), _| peer != name);
        }
        for withdrawn in delta.routes_withdrawn {
            self.routes.remove(&(withdrawn.peer, withdrawn.prefix));
        }
        for route in delta.routes_upserted {
            self.upsert_route(route);
        }
        for withdrawn in &delta.l2_withdrawn {
            if let Ok(ip) = withdrawn.parse::<IpAddr>() {
                self.l2.remove(&ip);
            }
        }
        for announcement in delta.l2_upserted {
            self.upsert_l2(announcement);
        }
    }

    /// Layer 2 IPs owned, with their interfaces.
    pub fn l2(&self) -> &BTreeMap<IpAddr, BTreeSet<String>> {
        &self.l2
    }

    /// Peers by name.
    pub fn peers(&self) -> &BTreeMap<String, pb::BgpPeer> {
        &self.peers
    }

    /// Routes by (peer, prefix).
    pub fn routes(&self) -> &BTreeMap<RouteKey, pb::Route> {
        &self.routes
    }

    /// The trace of the change that produced these assignments.
    pub fn cause(&self) -> Option<&pb::TraceContext> {
        self.cause.as_ref()
    }

    /// Records the trace of the change being applied.
    pub fn set_cause(&mut self, cause: pb::TraceContext) {
        self.cause = Some(cause);
    }

    fn upsert_l2(&mut self, announcement: pb::L2Announcement) {
        // An IP that does not parse cannot be answered for; the allocator never sends one.
        let Ok(ip) = announcement.ip.parse::<IpAddr>() else { return };
        self.l2.insert(ip, announcement.interfaces.into_iter().collect());
    }

    fn upsert_route(&mut self, route: pb::Route) {
        // A route without a key cannot be addressed by a later delta; the allocator never
        // sends one, and keeping it would make it impossible to withdraw.
        let Some(key) = &route.key else { return };
        self.routes.insert((key.peer.clone(), key.prefix.clone()), route);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(name: &str) -> pb::BgpPeer {
        pb::BgpPeer { name: name.into(), peer_asn: 64500, my_asn: 64512, ..Default::default() }
    }

    fn route(peer: &str, prefix: &str, local_pref: Option<u32>) -> pb::Route {
        pb::Route {
            key: Some(pb::RouteKey { peer: peer.into(), prefix: prefix.into() }),
            local_pref,
            ..Default::default()
        }
    }

    fn key(peer: &str, prefix: &str) -> RouteKey {
        (peer.into(), prefix.into())
    }

    #[test]
    fn layer_2_ips_follow_snapshots_and_deltas() {
        let l2 = |ip: &str, interfaces: &[&str]| pb::L2Announcement {
            ip: ip.into(),
            interfaces: interfaces.iter().map(|i| i.to_string()).collect(),
            services: Vec::new(),
        };
        let mut assignments = Assignments::from_snapshot(pb::NodeAssignments {
            l2_announcements: vec![l2("192.0.2.10", &[]), l2("2001:db8::10", &["eth1"])],
            ..Default::default()
        });
        assert_eq!(assignments.l2().len(), 2);
        assignments.apply(pb::AssignmentDelta {
            l2_withdrawn: vec!["192.0.2.10".into()],
            l2_upserted: vec![l2("2001:db8::10", &["eth0"]), l2("192.0.2.11", &[])],
            ..Default::default()
        });
        let ips: Vec<String> = assignments.l2().keys().map(|ip| ip.to_string()).collect();
        assert_eq!(ips, ["192.0.2.11", "2001:db8::10"]);
        let v6: IpAddr = "2001:db8::10".parse().unwrap();
        assert_eq!(assignments.l2()[&v6], BTreeSet::from(["eth0".to_string()]));
    }

    #[test]
    fn a_snapshot_is_taken_whole() {
        let assignments = Assignments::from_snapshot(pb::NodeAssignments {
            peers: vec![peer("r1")],
            routes: vec![route("r1", "192.0.2.1/32", None), route("r1", "2001:db8::1/128", None)],
            ..Default::default()
        });
        assert_eq!(assignments.peers().keys().collect::<Vec<_>>(), ["r1"]);
        assert_eq!(assignments.routes().len(), 2);
    }

    #[test]
    fn deltas_add_change_and_withdraw_routes() {
        let mut assignments = Assignments::from_snapshot(pb::NodeAssignments {
            peers: vec![peer("r1")],
            routes: vec![route("r1", "192.0.2.1/32", None), route("r1", "192.0.2.2/32", None)],
            ..Default::default()
        });
        assignments.apply(pb::AssignmentDelta {
            routes_upserted: vec![
                route("r1", "192.0.2.1/32", Some(200)),
                route("r1", "192.0.2.3/32", None),
            ],
            routes_withdrawn: vec![pb::RouteKey {
                peer: "r1".into(),
                prefix: "192.0.2.2/32".into(),
            }],
            ..Default::default()
        });
        let routes = assignments.routes();
        assert_eq!(
            routes.keys().cloned().collect::<Vec<_>>(),
            [key("r1", "192.0.2.1/32"), key("r1", "192.0.2.3/32")]
        );
        assert_eq!(routes[&key("r1", "192.0.2.1/32")].local_pref, Some(200));
    }

    #[test]
    fn removing_a_peer_removes_its_routes_only() {
        let mut assignments = Assignments::from_snapshot(pb::NodeAssignments {
            peers: vec![peer("r1"), peer("r2")],
            routes: vec![route("r1", "192.0.2.1/32", None), route("r2", "192.0.2.1/32", None)],
            ..Default::default()
        });
        assignments
            .apply(pb::AssignmentDelta { peers_removed: vec!["r1".into()], ..Default::default() });
        assert_eq!(assignments.peers().keys().collect::<Vec<_>>(), ["r2"]);
        assert_eq!(
            assignments.routes().keys().cloned().collect::<Vec<_>>(),
            [key("r2", "192.0.2.1/32")]
        );
    }
}
