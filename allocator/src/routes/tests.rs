//! Which node announces what, to whom, with which attributes.

use std::{
    collections::{BTreeMap, HashMap},
    time::SystemTime,
};

use metallb_proto::pb;

use super::{delta, is_empty, node_assignments};
use crate::{
    allocate::assign,
    config::{Config, validate},
    leases::Leases,
    nodes::{EXCLUDE_LABEL, NodeInfo},
    service_spec::{ServiceKey, ServiceSpec},
};

struct World {
    config: Config,
    leases: Leases,
    services: BTreeMap<ServiceKey, ServiceSpec>,
}

impl World {
    fn new(config: pb::Config) -> Self {
        Self {
            config: validate(&config).unwrap(),
            leases: Leases::default(),
            services: BTreeMap::new(),
        }
    }

    fn add(&mut self, service: pb::Service) {
        let spec = ServiceSpec::from_pb(&service).unwrap();
        let lease = assign(Some(&self.config), &self.leases, &spec, SystemTime::now()).unwrap();
        self.leases.insert(lease);
        self.services.insert(spec.key.clone(), spec);
    }

    fn routes(&self, node: &NodeInfo) -> Vec<(String, String)> {
        node_assignments(&self.config, &self.leases, &self.services, node)
            .routes
            .into_iter()
            .map(|route| {
                let key = route.key.unwrap();
                (key.peer, key.prefix)
            })
            .collect()
    }
}

fn node(name: &str, labels: &[(&str, &str)]) -> NodeInfo {
    NodeInfo {
        name: name.into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<HashMap<_, _>>(),
        excluded: labels.iter().any(|(k, _)| *k == EXCLUDE_LABEL),
        ready: true,
    }
}

fn peer(name: &str, address: &str) -> pb::BgpPeer {
    pb::BgpPeer {
        name: name.into(),
        my_asn: 64512,
        peer_asn: 64500,
        peer_address: address.into(),
        ..Default::default()
    }
}

fn base_config() -> pb::Config {
    pb::Config {
        pools: vec![pb::AddressPool {
            name: "default".into(),
            addresses: vec!["192.0.2.0/24".into(), "2001:db8::/64".into()],
            auto_assign: true,
            ..Default::default()
        }],
        peers: vec![peer("r1", "198.51.100.1")],
        advertisements: vec![pb::BgpAdvertisement { name: "all".into(), ..Default::default() }],
        ..Default::default()
    }
}

fn service(name: &str, local: bool, ready_nodes: &[&str]) -> pb::Service {
    pb::Service {
        key: Some(pb::ServiceKey { namespace: "default".into(), name: name.into() }),
        ip_families: vec![pb::IpFamily::Ipv4 as i32],
        external_traffic_policy: if local {
            pb::TrafficPolicy::Local
        } else {
            pb::TrafficPolicy::Cluster
        } as i32,
        ready_endpoint_nodes: ready_nodes.iter().map(|n| n.to_string()).collect(),
        ..Default::default()
    }
}

fn r(peer: &str, prefix: &str) -> (String, String) {
    (peer.into(), prefix.into())
}

#[test]
fn cluster_policy_announces_from_every_node_once_any_endpoint_is_ready() {
    let mut world = World::new(base_config());
    world.add(service("ready", false, &["n1"]));
    world.add(service("idle", false, &[]));
    for name in ["n1", "n2"] {
        assert_eq!(world.routes(&node(name, &[])), [r("r1", "192.0.2.0/32")], "{name}");
    }
}

#[test]
fn local_policy_announces_only_from_nodes_with_a_ready_endpoint() {
    let mut world = World::new(base_config());
    world.add(service("local", true, &["n2"]));
    assert!(world.routes(&node("n1", &[])).is_empty());
    assert_eq!(world.routes(&node("n2", &[])), [r("r1", "192.0.2.0/32")]);
}

#[test]
fn excluded_nodes_keep_their_peers_but_announce_nothing() {
    let mut world = World::new(base_config());
    world.add(service("s", false, &["n1"]));
    let excluded = node("n1", &[(EXCLUDE_LABEL, "")]);
    let assignments = node_assignments(&world.config, &world.leases, &world.services, &excluded);
    assert!(assignments.routes.is_empty());
    assert_eq!(assignments.peers.len(), 1);
}

#[test]
fn node_selectors_and_peer_lists_pick_who_announces_to_whom() {
    let mut config = base_config();
    let mut rack_a_peer = peer("rack-a", "198.51.100.2");
    rack_a_peer.node_selectors = vec![pb::LabelSelector {
        match_labels: [("rack".to_string(), "a".to_string())].into(),
        ..Default::default()
    }];
    config.peers.push(rack_a_peer);
    config.advertisements = vec![pb::BgpAdvertisement {
        name: "to-rack-a-only".into(),
        peers: vec!["rack-a".into()],
        ..Default::default()
    }];
    let mut world = World::new(config);
    world.add(service("s", false, &["n1"]));
    assert!(world.routes(&node("n1", &[])).is_empty());
    assert_eq!(world.routes(&node("n1", &[("rack", "a")])), [r("rack-a", "192.0.2.0/32")]);

    let mut config = base_config();
    config.advertisements[0].node_selectors = vec![pb::LabelSelector {
        match_labels: [("announce".to_string(), "yes".to_string())].into(),
        ..Default::default()
    }];
    let mut world = World::new(config);
    world.add(service("s", false, &["n1"]));
    assert!(world.routes(&node("n1", &[])).is_empty());
    assert_eq!(world.routes(&node("n1", &[("announce", "yes")])).len(), 1);
}

#[test]
fn attributes_aggregation_and_family_lengths_come_from_the_advertisement() {
    let mut config = base_config();
    config.communities =
        vec![pb::CommunityAlias { name: "no-export".into(), value: "65535:65281".into() }];
    config.advertisements = vec![pb::BgpAdvertisement {
        name: "agg".into(),
        aggregation_length: Some(24),
        aggregation_length_v6: Some(64),
        local_pref: Some(250),
        communities: vec!["no-export".into(), "large:64512:1:2".into()],
        ..Default::default()
    }];
    // An IPv4 peer that takes IPv6 routes too.
    config.peers[0].dual_stack_address_family = true;
    let mut world = World::new(config);
    let mut dual = service("dual", false, &["n1"]);
    dual.ip_family_policy = pb::IpFamilyPolicy::RequireDualStack as i32;
    world.add(dual);
    world.add(service("second", false, &["n1"]));
    let routes =
        node_assignments(&world.config, &world.leases, &world.services, &node("n1", &[])).routes;
    let prefixes: Vec<&str> =
        routes.iter().map(|route| route.key.as_ref().unwrap().prefix.as_str()).collect();
    // Both IPv4 services aggregate into one /24.
    assert_eq!(prefixes, ["192.0.2.0/24", "2001:db8::/64"]);
    assert_eq!(routes[0].local_pref, Some(250));
    assert_eq!(routes[0].communities, ["65535:65281"]);
    assert_eq!(routes[0].large_communities, ["64512:1:2"]);
    assert_eq!(routes[0].services.len(), 2);
}

#[test]
fn routes_of_the_other_family_go_only_to_dual_stack_peers() {
    let mut config = base_config();
    let dual_stack =
        pb::BgpPeer { dual_stack_address_family: true, ..peer("both", "198.51.100.3") };
    let not_mp = pb::BgpPeer { disable_mp: true, ..dual_stack.clone() };
    config.peers = vec![
        peer("v4", "198.51.100.1"),
        peer("v6", "2001:db8:ffff::1"),
        dual_stack,
        pb::BgpPeer { name: "disable-mp".into(), ..not_mp },
    ];
    let mut world = World::new(config);
    let mut dual = service("dual", false, &["n1"]);
    dual.ip_family_policy = pb::IpFamilyPolicy::RequireDualStack as i32;
    world.add(dual);
    let routes = world.routes(&node("n1", &[]));
    let families_of = |peer: &str| -> Vec<bool> {
        routes.iter().filter(|(p, _)| p == peer).map(|(_, prefix)| prefix.contains(':')).collect()
    };
    assert_eq!(families_of("v4"), [false], "{routes:?}");
    assert_eq!(families_of("v6"), [true]);
    assert_eq!(families_of("both"), [false, true]);
    assert_eq!(families_of("disable-mp"), [false], "disableMP: one family per session");
}

#[test]
fn service_selectors_narrow_an_advertisement_to_the_services_they_match() {
    let mut config = base_config();
    config.advertisements[0].service_selectors = vec![pb::LabelSelector {
        match_labels: [("app".to_string(), "web".to_string())].into(),
        ..Default::default()
    }];
    let mut world = World::new(config);
    let mut web = service("web", false, &["n1"]);
    web.labels = [("app".to_string(), "web".to_string())].into();
    world.add(web);
    world.add(service("other", false, &["n1"]));
    let routes =
        node_assignments(&world.config, &world.leases, &world.services, &node("n1", &[])).routes;
    assert_eq!(routes.len(), 1, "{routes:?}");
    assert_eq!(routes[0].services[0].name, "web");
}

#[test]
fn deltas_carry_only_what_changed() {
    let mut world = World::new(base_config());
    world.add(service("a", false, &["n1"]));
    let n1 = node("n1", &[]);
    let before = node_assignments(&world.config, &world.leases, &world.services, &n1);
    assert!(is_empty(&delta(&before, &before)));
    world.add(service("b", false, &["n1"]));
    let after = node_assignments(&world.config, &world.leases, &world.services, &n1);
    let change = delta(&before, &after);
    assert!(change.peers_upserted.is_empty() && change.routes_withdrawn.is_empty());
    assert_eq!(change.routes_upserted.len(), 1);
    assert_eq!(change.routes_upserted[0].key.as_ref().unwrap().prefix, "192.0.2.1/32");
    let back = delta(&after, &before);
    assert_eq!(
        back.routes_withdrawn,
        [pb::RouteKey { peer: "r1".into(), prefix: "192.0.2.1/32".into() }]
    );
}

#[test]
fn layer_2_deltas_carry_only_the_ips_that_changed() {
    let l2 = |ip: &str, interfaces: &[&str]| pb::L2Announcement {
        ip: ip.into(),
        interfaces: interfaces.iter().map(|i| i.to_string()).collect(),
        services: Vec::new(),
    };
    let before = pb::NodeAssignments {
        l2_announcements: vec![l2("192.0.2.1", &[]), l2("192.0.2.2", &[])],
        ..Default::default()
    };
    let after = pb::NodeAssignments {
        l2_announcements: vec![l2("192.0.2.2", &["eth1"]), l2("192.0.2.3", &[])],
        ..Default::default()
    };
    assert!(is_empty(&delta(&before, &before)));
    let change = delta(&before, &after);
    assert!(!is_empty(&change));
    assert_eq!(change.l2_withdrawn, ["192.0.2.1"]);
    assert_eq!(change.l2_upserted, [l2("192.0.2.2", &["eth1"]), l2("192.0.2.3", &[])]);
}
