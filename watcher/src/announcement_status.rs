//! ServiceBGPStatus and ServiceL2Status objects as MetalLB keeps them: one per Service and node
//! that announces it, naming the BGP peers it is advertised to from that node (whether each
//! session is up is in the announcer's session report, not here), or the interfaces it answers
//! ARP/NDP on (none named: every interface whose addresses cover the IP). Built from the
//! allocator's per-node assignments, so the objects say what the announcers are told.

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

/// For each Service and announcing node: the peers it is advertised to (BGP), or the
/// interfaces it is answered on (layer 2).
pub type Announcements = BTreeMap<Announcement, BTreeSet<String>>;

/// The kinds of status object, each with what it lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusKind {
    /// ServiceBGPStatus: the peers.
    Bgp,
    /// ServiceL2Status: the interfaces.
    L2,
}

impl StatusKind {
    /// The kind's name.
    pub fn kind(self) -> &'static str {
        match self {
            Self::Bgp => "ServiceBGPStatus",
            Self::L2 => "ServiceL2Status",
        }
    }

    /// The kind's plural, its resource name.
    pub fn plural(self) -> &'static str {
        match self {
            Self::Bgp => "servicebgpstatuses",
            Self::L2 => "servicel2statuses",
        }
    }

    /// The status of one object, as MetalLB writes it.
    pub fn status(
        self,
        announcement: &Announcement,
        listed: &BTreeSet<String>,
    ) -> serde_json::Value {
        let mut status = serde_json::json!({
            "node": announcement.node,
            "serviceName": announcement.service,
            "serviceNamespace": announcement.namespace,
        });
        status[self.listed_field()] = match self {
            Self::Bgp => serde_json::json!(listed),
            Self::L2 => listed.iter().map(|name| serde_json::json!({ "name": name })).collect(),
        };
        status
    }

    fn listed_field(self) -> &'static str {
        match self {
            Self::Bgp => "peers",
            Self::L2 => "interfaces",
        }
    }
}

/// The status objects of one kind as this watcher keeps them.
#[derive(Debug)]
pub struct StatusObjects {
    kind: StatusKind,
    /// As last written; `None` until the existing ones are read.
    written: Option<Announcements>,
    /// The cluster serves the kind (false once a list said it does not).
    served: bool,
}

impl StatusObjects {
    /// Nothing known yet of the objects of `kind`.
    pub fn new(kind: StatusKind) -> Self {
        Self { kind, written: None, served: true }
    }

    /// Forgets what was written (another leader may have written since).
    pub fn forget(&mut self) {
        self.written = None;
    }

    /// Whether the cluster may serve the kind.
    pub fn served(&self) -> bool {
        self.served
    }

    /// Makes the objects say `desired`; returns what they said before (`None` when the kind is
    /// not served).
    pub async fn sync(
        &mut self,
        writer: &crate::writeback::Writer,
        namespace: &str,
        desired: Announcements,
    ) -> anyhow::Result<Option<Announcements>> {
        if !self.served {
            return Ok(None);
        }
        let previous = match self.written.take() {
            Some(previous) => previous,
            None => match writer.existing_statuses(self.kind, namespace).await? {
                Some(existing) => existing,
                None => {
                    tracing::debug!(kind = self.kind.kind(), "kind not served; not reporting it");
                    self.served = false;
                    return Ok(None);
                }
            },
        };
        writer.sync_statuses(self.kind, namespace, &desired, &previous).await?;
        self.written = Some(desired);
        Ok(Some(previous))
    }

    /// As last written.
    pub fn written(&self) -> Option<&Announcements> {
        self.written.as_ref()
    }
}

/// Services whose set of announcing nodes changed from `before` to `after` and is not empty
/// now, with the nodes that announce them now.
pub fn new_announcers(
    before: &Announcements,
    after: &Announcements,
) -> BTreeMap<(String, String), BTreeSet<String>> {
    let by_service = |announcements: &Announcements| {
        let mut nodes: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
        for announcement in announcements.keys() {
            let service = (announcement.namespace.clone(), announcement.service.clone());
            nodes.entry(service).or_default().insert(announcement.node.clone());
        }
        nodes
    };
    let before = by_service(before);
    by_service(after)
        .into_iter()
        .filter(|(service, nodes)| before.get(service) != Some(nodes))
        .collect()
}

/// What the nodes' assignments say for layer 2: for each Service of each IP the node answers
/// for, the interfaces.
pub fn l2_announcements<'a>(
    per_node: impl IntoIterator<Item = (&'a str, &'a pb::NodeAssignments)>,
) -> Announcements {
    let mut announced = Announcements::new();
    for (node, assignments) in per_node {
        for l2 in &assignments.l2_announcements {
            for service in &l2.services {
                let announcement = Announcement {
                    namespace: service.namespace.clone(),
                    service: service.name.clone(),
                    node: node.to_string(),
                };
                announced.entry(announcement).or_default().extend(l2.interfaces.iter().cloned());
            }
        }
    }
    announced
}

/// What the nodes' assignments say: for each Service of each route, the route's peer.
pub fn bgp_announcements<'a>(
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
    fn layer_2_objects_name_interfaces_and_news_is_a_change_of_node() {
        let l2 = |ip: &str, interfaces: &[&str], services: &[&str]| pb::L2Announcement {
            ip: ip.into(),
            interfaces: interfaces.iter().map(|i| i.to_string()).collect(),
            services: services
                .iter()
                .map(|name| pb::ServiceKey { namespace: "default".into(), name: name.to_string() })
                .collect(),
        };
        let a = pb::NodeAssignments {
            l2_announcements: vec![l2("192.0.2.10", &["eth0"], &["web", "db"])],
            ..Default::default()
        };
        let b = pb::NodeAssignments {
            l2_announcements: vec![l2("192.0.2.11", &[], &["api"])],
            ..Default::default()
        };
        let before = l2_announcements([("node-a", &a), ("node-b", &b)]);
        assert_eq!(before.len(), 3);
        let web_on_a = Announcement {
            namespace: "default".into(),
            service: "web".into(),
            node: "node-a".into(),
        };
        assert_eq!(before[&web_on_a], BTreeSet::from(["eth0".to_string()]));
        let status = StatusKind::L2.status(&web_on_a, &before[&web_on_a]);
        assert_eq!(status["interfaces"], serde_json::json!([{ "name": "eth0" }]));
        assert_eq!(status["node"], "node-a");

        // web moves to node-b; db and api stay where they were.
        let a = pb::NodeAssignments {
            l2_announcements: vec![l2("192.0.2.12", &[], &["db"])],
            ..Default::default()
        };
        let b = pb::NodeAssignments {
            l2_announcements: vec![
                l2("192.0.2.11", &[], &["api"]),
                l2("192.0.2.10", &[], &["web"]),
            ],
            ..Default::default()
        };
        let after = l2_announcements([("node-a", &a), ("node-b", &b)]);
        let news = new_announcers(&before, &after);
        let web = ("default".to_string(), "web".to_string());
        assert_eq!(news.keys().collect::<Vec<_>>(), [&web]);
        assert_eq!(news[&web], BTreeSet::from(["node-b".to_string()]));
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
        let found = bgp_announcements([("node-a", &a), ("node-b", &b)]);
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
