//! Publishing only what a change touched, and sending each stream only the delta of what
//! changed since its last message, must leave every subscribed node holding exactly the view a
//! full recomputation gives, whatever the history: Services of both traffic policies
//! coming, moving their endpoints and going, nodes relabelled, excluded, deleted and back, and
//! new configurations (one advertisement only for labelled nodes, so labels matter).

use std::{collections::BTreeMap, time::SystemTime};

use metallb_proto::pb;
use proptest::prelude::*;

use super::{
    NodeStreams,
    tests::{fold_update, normalized, trace},
};
use crate::{nodes::NodeInfo, service_spec::ServiceSpec, state::AllocatorState, views::Cursor};

const NODES: [&str; 4] = ["n1", "n2", "n3", "n4"];

#[derive(Clone, Debug)]
enum Step {
    Upsert { service: usize, local: bool, endpoints: Vec<usize>, ready: bool },
    Delete { service: usize },
    Node { node: usize, rack: bool, excluded: bool },
    DeleteNode { node: usize },
    Config { aggregate: bool },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0..6usize, any::<bool>(), proptest::collection::vec(0..4usize, 0..3), any::<bool>())
            .prop_map(|(service, local, endpoints, ready)| Step::Upsert { service, local, endpoints, ready }),
        1 => (0..6usize).prop_map(|service| Step::Delete { service }),
        2 => (0..4usize, any::<bool>(), any::<bool>())
            .prop_map(|(node, rack, excluded)| Step::Node { node, rack, excluded }),
        1 => (0..4usize).prop_map(|node| Step::DeleteNode { node }),
        1 => any::<bool>().prop_map(|aggregate| Step::Config { aggregate }),
    ]
}

fn config(aggregate: bool) -> pb::Config {
    let rack = pb::LabelSelector {
        match_labels: [("rack".to_string(), "a".to_string())].into(),
        ..Default::default()
    };
    pb::Config {
        pools: vec![pb::AddressPool {
            name: "p".into(),
            addresses: vec!["192.0.2.0/28".into()],
            auto_assign: true,
            ..Default::default()
        }],
        peers: vec![pb::BgpPeer {
            name: "r".into(),
            my_asn: 64512,
            peer_asn: 64512,
            peer_address: "198.51.100.1".into(),
            ..Default::default()
        }],
        advertisements: vec![
            pb::BgpAdvertisement { name: "all".into(), ..Default::default() },
            pb::BgpAdvertisement {
                name: "rack".into(),
                aggregation_length: aggregate.then_some(30),
                communities: vec!["64512:7".into()],
                node_selectors: vec![rack],
                ..Default::default()
            },
        ],
        ..Default::default()
    }
}

fn node(name: &str, rack: bool, excluded: bool) -> NodeInfo {
    let labels =
        if rack { [("rack".to_string(), "a".to_string())].into() } else { Default::default() };
    NodeInfo { name: name.into(), labels, excluded, ready: true }
}

fn apply(state: &mut AllocatorState, step: &Step) {
    let now = SystemTime::now();
    match step {
        Step::Upsert { service, local, endpoints, ready } => {
            let service = pb::Service {
                key: Some(pb::ServiceKey {
                    namespace: "default".into(),
                    name: format!("s{service}"),
                }),
                external_traffic_policy: if *local {
                    pb::TrafficPolicy::Local as i32
                } else {
                    pb::TrafficPolicy::Cluster as i32
                },
                ready_endpoint_nodes: endpoints.iter().map(|n| NODES[*n].to_string()).collect(),
                has_ready_endpoints: *ready || !endpoints.is_empty(),
                ..Default::default()
            };
            let _ = state.upsert(ServiceSpec::from_pb(&service).unwrap(), now);
        }
        Step::Delete { service } => {
            let key = ServiceSpec::from_pb(&pb::Service {
                key: Some(pb::ServiceKey {
                    namespace: "default".into(),
                    name: format!("s{service}"),
                }),
                ..Default::default()
            })
            .unwrap()
            .key;
            let _ = state.delete(&key, now);
        }
        Step::Node { node: index, rack, excluded } => {
            state.update_node(node(NODES[*index], *rack, *excluded))
        }
        Step::DeleteNode { node } => state.delete_node(NODES[*node]),
        Step::Config { aggregate } => {
            let _ = state.apply_config(&config(*aggregate), "test", now);
        }
    }
}

/// What each subscribed node's stream holds after every message so far (folded into
/// `held`), and what a full recomputation says, both in one order.
fn held_and_full(
    streams: &NodeStreams,
    state: &AllocatorState,
    cursors: &mut BTreeMap<String, Option<Cursor>>,
    held: &mut BTreeMap<String, pb::NodeAssignments>,
) -> (BTreeMap<String, pb::NodeAssignments>, BTreeMap<String, pb::NodeAssignments>) {
    let subscriptions = streams.lock();
    for (node, cursor) in cursors.iter_mut() {
        if let Some(update) = subscriptions.views.next_update(node, cursor) {
            fold_update(held.entry(node.clone()).or_default(), update);
        }
    }
    let full = cursors
        .keys()
        .map(|node| (node.clone(), normalized(state.node_view(node).unwrap_or_default())))
        .collect();
    let held = held.iter().map(|(node, view)| (node.clone(), normalized(view.clone()))).collect();
    (held, full)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn publishing_what_changed_equals_recomputing_everything(steps in proptest::collection::vec(step(), 1..40)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let mut state = AllocatorState::default();
            assert!(state.apply_config(&config(false), "test", SystemTime::now()).accepted);
            for (index, name) in NODES.iter().enumerate() {
                state.update_node(node(name, index % 2 == 0, false));
            }
            state.sync(vec![], SystemTime::now());
            let streams = NodeStreams::default();
            // Keep the receiving ends, or the channels count as unheard and are dropped.
            let _receivers: Vec<_> = NODES.iter().map(|node| streams.open(node, &state)).collect();
            state.take_affected();
            let mut cursors: BTreeMap<String, Option<Cursor>> =
                NODES.iter().map(|node| (node.to_string(), None)).collect();
            let mut held = BTreeMap::new();
            for (n, step) in steps.iter().enumerate() {
                apply(&mut state, step);
                let affected = state.take_affected();
                streams.publish_since(&state, &trace(n), std::time::Instant::now(), &affected);
                let (held, full) = held_and_full(&streams, &state, &mut cursors, &mut held);
                prop_assert_eq!(held, full, "after step {} {:?} (affected {:?})", n, step, affected);
            }
            Ok(())
        })?;
    }
}
