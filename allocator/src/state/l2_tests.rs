//! Layer 2 ownership through the state: which nodes may answer for an IP (advertisements'
//! node selectors, endpoints under Local policy, excluded and NotReady nodes, shared IPs) and
//! what each node is told.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant, SystemTime},
};

use metallb_proto::pb;

use super::AllocatorState;
use crate::{l2::L2Fencing, nodes::NodeInfo, service_spec::ServiceSpec};

const FENCE: Duration = Duration::from_millis(1000);

fn selector(key: &str, value: &str) -> pb::LabelSelector {
    pb::LabelSelector {
        match_labels: [(key.to_string(), value.to_string())].into(),
        ..Default::default()
    }
}

/// A pool of two IPs, advertised over layer 2 from zone-a nodes on eth1 and from every node on
/// any interface by a second advertisement that selects only role=edge nodes.
fn config() -> pb::Config {
    pb::Config {
        pools: vec![pb::AddressPool {
            name: "segment".into(),
            addresses: vec!["192.0.2.10-192.0.2.11".into()],
            auto_assign: true,
            ..Default::default()
        }],
        l2_advertisements: vec![
            pb::L2Advertisement {
                name: "zone-a".into(),
                node_selectors: vec![selector("zone", "a")],
                interfaces: vec!["eth1".into()],
                ..Default::default()
            },
            pb::L2Advertisement {
                name: "edge".into(),
                node_selectors: vec![selector("role", "edge")],
                ..Default::default()
            },
        ],
        ..Default::default()
    }
}

fn node(name: &str, labels: &[(&str, &str)], conditions: &[(&str, &str)]) -> NodeInfo {
    NodeInfo::from_pb(&pb::Node {
        name: name.into(),
        labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        conditions: conditions
            .iter()
            .map(|(t, s)| pb::NodeCondition {
                r#type: t.to_string(),
                status: s.to_string(),
                reason: String::new(),
            })
            .collect(),
        ..Default::default()
    })
    .unwrap()
}

fn service(name: &str, local: bool, endpoints: &[&str], sharing_key: &str) -> ServiceSpec {
    ServiceSpec::from_pb(&pb::Service {
        key: Some(pb::ServiceKey { namespace: "default".into(), name: name.into() }),
        ip_families: vec![pb::IpFamily::Ipv4 as i32],
        external_traffic_policy: if local {
            pb::TrafficPolicy::Local as i32
        } else {
            pb::TrafficPolicy::Cluster as i32
        },
        ready_endpoint_nodes: endpoints.iter().map(|n| n.to_string()).collect(),
        has_ready_endpoints: !endpoints.is_empty(),
        sharing_key: sharing_key.into(),
        load_balancer_ip: if sharing_key.is_empty() { String::new() } else { "192.0.2.10".into() },
        ports: vec![pb::ServicePort {
            port: 8000 + u32::from(name.as_bytes()[0]),
            ..Default::default()
        }],
        ..Default::default()
    })
    .unwrap()
}

/// A synced state with `nodes` connected, past the start-up wait.
fn state(nodes: Vec<NodeInfo>) -> (AllocatorState, Instant) {
    let mut state = AllocatorState::default();
    let t0 = Instant::now();
    state.configure_l2(L2Fencing::new(FENCE), t0);
    assert!(state.apply_config(&config(), "test", SystemTime::now()).accepted);
    for node in nodes {
        state.stream_opened(&node.name);
        state.update_node(node);
    }
    state.sync(vec![], SystemTime::now());
    (state, t0 + FENCE * 2)
}

/// Each node's layer 2 view: node -> [(ip, interfaces)].
fn views(state: &AllocatorState, nodes: &[&str]) -> BTreeMap<String, Vec<(String, Vec<String>)>> {
    nodes
        .iter()
        .map(|node| {
            let view = state.node_view(node).unwrap();
            let l2 = view.l2_announcements.into_iter().map(|a| (a.ip, a.interfaces)).collect();
            (node.to_string(), l2)
        })
        .collect()
}

#[test]
fn only_selected_ready_nodes_answer_on_their_advertisements_interfaces() {
    let (mut state, now) = state(vec![
        node("a1", &[("zone", "a")], &[("Ready", "True")]),
        node("edge", &[("role", "edge")], &[]),
        node("other", &[], &[]),
    ]);
    state.upsert(service("web", false, &["other"], ""), SystemTime::now()).result.unwrap();
    assert!(state.refresh_l2(now));
    let seen = views(&state, &["a1", "edge", "other"]);
    assert!(seen["other"].is_empty(), "no advertisement selects it: {seen:?}");
    let owners: Vec<_> = seen.iter().filter(|(_, l2)| !l2.is_empty()).collect();
    assert_eq!(owners.len(), 1, "one owner: {seen:?}");
    let (owner, l2) = owners[0];
    let expected_interfaces = if owner == "a1" { vec!["eth1".to_string()] } else { vec![] };
    assert_eq!(l2, &[("192.0.2.10".to_string(), expected_interfaces)]);
    assert_eq!(state.l2_owners().len(), 1);

    // Its node goes NotReady: the other selected node takes over once the first has fallen
    // silent (it still has its stream, so only after the fencing interval).
    let failing = if owner == "a1" {
        node("a1", &[("zone", "a")], &[("Ready", "Unknown")])
    } else {
        node("edge", &[("role", "edge")], &[("NetworkUnavailable", "True")])
    };
    state.update_node(failing);
    state.refresh_l2(now);
    assert!(state.l2_owners().is_empty(), "nobody until the old owner is silent");
    let later = now + L2Fencing::new(FENCE).reassign_after();
    state.refresh_l2(later);
    let successor = &state.l2_owners()[&"192.0.2.10".parse().unwrap()].node;
    assert_ne!(successor, owner);
    assert_ne!(successor, "other");
}

#[test]
fn local_policy_needs_an_endpoint_and_a_shared_ip_suits_every_service() {
    let (mut state, now) = state(vec![
        node("e1", &[("role", "edge")], &[]),
        node("e2", &[("role", "edge")], &[]),
        node("e3", &[("role", "edge")], &[]),
    ]);
    state.upsert(service("a", true, &["e1", "e2"], "shared"), SystemTime::now()).result.unwrap();
    state.upsert(service("b", true, &["e2", "e3"], "shared"), SystemTime::now()).result.unwrap();
    state.refresh_l2(now);
    let owner = &state.l2_owners()[&"192.0.2.10".parse().unwrap()];
    assert_eq!(owner.node, "e2", "the one node with endpoints of both");
    assert_eq!(owner.services.len(), 2);

    // No endpoint anywhere: nobody answers.
    state.upsert(service("c", true, &[], ""), SystemTime::now()).result.unwrap();
    state.refresh_l2(now);
    assert!(!state.l2_owners().contains_key(&"192.0.2.11".parse().unwrap()));
}

#[test]
fn an_advertisement_with_service_selectors_answers_for_those_services_only() {
    let mut state = AllocatorState::default();
    let t0 = Instant::now();
    state.configure_l2(L2Fencing::new(FENCE), t0);
    let mut config = config();
    config.l2_advertisements = vec![pb::L2Advertisement {
        name: "frontends".into(),
        service_selectors: vec![selector("tier", "frontend")],
        ..Default::default()
    }];
    assert!(state.apply_config(&config, "test", SystemTime::now()).accepted);
    state.stream_opened("n1");
    state.update_node(node("n1", &[], &[]));
    state.sync(vec![], SystemTime::now());
    let mut frontend = service("web", false, &["n1"], "");
    frontend.labels = [("tier".to_string(), "frontend".to_string())].into();
    state.upsert(frontend, SystemTime::now()).result.unwrap();
    state.upsert(service("db", false, &["n1"], ""), SystemTime::now()).result.unwrap();
    state.refresh_l2(t0 + FENCE * 2);
    let owned: Vec<String> = state
        .l2_owners()
        .values()
        .flat_map(|owner| owner.services.iter().map(|key| key.name.to_string()))
        .collect();
    assert_eq!(owned, ["web"]);
}
