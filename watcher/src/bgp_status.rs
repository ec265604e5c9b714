//! ServiceBGPStatus objects as MetalLB keeps them: one per Service and node that announces it
//! over BGP, naming the peers it is advertised to from that node (whether each session is up is
//! in the announcer's session report, not here). Built from the allocator's per-node
//! assignments, so the objects say what the announcers are told.

use std::collections::{BTreeMap, BTreeSet};

use metallb_proto::pb;

/// One object: a Service announced from a node.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Announcement {
    /// The Service's namespace.
    pub namespace: String,
    /// The Service's name.
    pub service: String,
    /// The announcing node.
    pub node: String,
}

/// The peers each Service is advertised to from each node.
pub type Announcements = BTreeMap<Announcement, BTreeSet<String>>;

/// What the nodes' assignments say: for each Service of each route, the route's peer.
pub fn announcements<'a>(
    per_node: impl IntoIterator<Item = (&'a str, &'a pb::NodeAssignments)>,
) -> Announcements {
    let mut announced = Announcements::new();
    for (node, assignments) in per_node {
        for route in &assignments.routes {
            let Some(key) = &route.key else { continue };
            for service in &route.services {
                let announcement = Announcement {
                    namespace: service.namespace.clone(),
                    service: service.name.clone(),
                    node: node.to_string(),
                };
                announced.entry(announcement).or_default().insert(key.peer.clone());
            }
        }
    }
    announced
}

impl Announcement {
    /// The object's name: readable when it fits in a DNS subdomain (253 characters), else
    /// shortened with a hash of the whole so that names stay distinct.
    pub fn object_name(&self) -> String {
        let readable = format!("{}-{}-{}", self.namespace, self.service, self.node).to_lowercase();
        if readable.len() <= 253 {
            return readable;
        }
        let digest = fnv1a(&readable);
        format!("{}-{digest:016x}", &readable[..200])
    }
}

/// FNV-1a, 64 bits: stable across processes and releases, unlike the standard hasher.
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(peer: &str, prefix: &str, services: &[&str]) -> pb::Route {
        pb::Route {
            key: Some(pb::RouteKey { peer: peer.into(), prefix: prefix.into() }),
            services: services
                .iter()
                .map(|name| pb::ServiceKey { namespace: "default".into(), name: name.to_string() })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn one_object_per_service_and_node_with_its_peers() {
        let a = pb::NodeAssignments {
            peers: vec![],
            routes: vec![
                route("r1", "192.0.2.1/32", &["web"]),
                route("r2", "192.0.2.1/32", &["web"]),
                route("r1", "192.0.2.0/24", &["web", "db"]),
            ],
            ..Default::default()
        };
        let b = pb::NodeAssignments {
            peers: vec![],
            routes: vec![route("r2", "192.0.2.0/24", &["db"])],
            ..Default::default()
        };
        let found = announcements([("node-a", &a), ("node-b", &b)]);
        let key = |service: &str, node: &str| Announcement {
            namespace: "default".into(),
            service: service.into(),
            node: node.into(),
        };
        assert_eq!(found.len(), 3);
        assert_eq!(found[&key("web", "node-a")], BTreeSet::from(["r1".into(), "r2".into()]));
        assert_eq!(found[&key("db", "node-a")], BTreeSet::from(["r1".to_string()]));
        assert_eq!(found[&key("db", "node-b")], BTreeSet::from(["r2".to_string()]));
        assert_eq!(key("web", "node-a").object_name(), "default-web-node-a");
    }

    #[test]
    fn long_names_are_shortened_distinctly() {
        let long = |node: &str| Announcement {
            namespace: "n".repeat(63),
            service: "s".repeat(63),
            node: format!("{}{node}", "x".repeat(140)),
        };
        let (one, two) = (long("1").object_name(), long("2").object_name());
        assert!(one.len() <= 253 && two.len() <= 253);
        assert_ne!(one, two);
    }
}
