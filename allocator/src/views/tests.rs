//! The views' own bookkeeping: deltas carry only what changed, a Service announced from every
//! node is computed once per profile, and a stream too far behind gets a snapshot.

use std::time::SystemTime;

use metallb_proto::pb::{self, assignment_update::Update};

use super::{Cursor, NodeViews};
use crate::{nodes::NodeInfo, service_spec::ServiceSpec, state::AllocatorState};

fn config(local_pref: u32) -> pb::Config {
    pb::Config {
        pools: vec![pb::AddressPool {
            name: "p".into(),
            addresses: vec!["192.0.2.0/24".into()],
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
        advertisements: vec![pb::BgpAdvertisement {
            name: "all".into(),
            local_pref: Some(local_pref),
            ..Default::default()
        }],
        ..Default::default()
    }
}

const NODES: [&str; 3] = ["n1", "n2", "n3"];

/// A state with three nodes, synced, and views subscribed to every node.
fn setup() -> (AllocatorState, NodeViews) {
    let mut state = AllocatorState::default();
    assert!(state.apply_config(&config(100), "test", SystemTime::now()).accepted);
    for name in NODES {
        state.update_node(NodeInfo {
            name: name.into(),
            labels: Default::default(),
            excluded: false,
            ready: true,
        });
    }
    state.sync(vec![], SystemTime::now());
    let mut views = NodeViews::default();
    for node in NODES {
        views.subscribe(node, state.route_inputs());
    }
    let affected = state.take_affected();
    views.apply(state.route_inputs(), &affected);
    (state, views)
}

fn upsert(state: &mut AllocatorState, name: &str, local_on: Option<&str>) {
    let service = pb::Service {
        key: Some(pb::ServiceKey { namespace: "default".into(), name: name.into() }),
        external_traffic_policy: if local_on.is_some() {
            pb::TrafficPolicy::Local as i32
        } else {
            pb::TrafficPolicy::Cluster as i32
        },
        ready_endpoint_nodes: local_on.into_iter().map(String::from).collect(),
        has_ready_endpoints: true,
        ..Default::default()
    };
    state.upsert(ServiceSpec::from_pb(&service).unwrap(), SystemTime::now()).result.unwrap();
}

fn publish(state: &mut AllocatorState, views: &mut NodeViews) -> Vec<String> {
    let affected = state.take_affected();
    views.apply(state.route_inputs(), &affected).into_iter().collect()
}

/// Every node's first message (a snapshot), and the cursors after it.
fn first_messages(views: &NodeViews) -> Vec<Option<Cursor>> {
    NODES
        .iter()
        .map(|node| {
            let mut cursor = None;
            let first = views.next_update(node, &mut cursor);
            assert!(matches!(first, Some(Update::Snapshot(_))), "{node}: {first:?}");
            cursor
        })
        .collect()
}

#[test]
fn a_local_service_wakes_and_reaches_only_its_endpoint_node() {
    let (mut state, mut views) = setup();
    let mut cursors = first_messages(&views);
    upsert(&mut state, "local", Some("n2"));
    assert_eq!(publish(&mut state, &mut views), ["n2"]);
    let updates: Vec<_> = NODES
        .iter()
        .zip(cursors.iter_mut())
        .map(|(node, cursor)| views.next_update(node, cursor))
        .collect();
    assert!(updates[0].is_none() && updates[2].is_none(), "{updates:?}");
    let Some(Update::Delta(delta)) = &updates[1] else { panic!("{updates:?}") };
    assert_eq!(delta.routes_upserted.len(), 1);
    assert!(delta.peers_upserted.is_empty() && delta.routes_withdrawn.is_empty());
    // Nothing more until something changes.
    assert!(views.next_update("n2", &mut cursors[1]).is_none());
}

#[test]
fn a_cluster_service_is_computed_once_and_sent_as_a_one_route_delta_to_every_node() {
    let (mut state, mut views) = setup();
    for n in 0..20 {
        upsert(&mut state, &format!("before{n}"), None);
    }
    publish(&mut state, &mut views);
    let mut cursors = first_messages(&views);
    assert_eq!(views.profiles.len(), 1, "three identical nodes share one profile");
    upsert(&mut state, "cluster", None);
    assert_eq!(publish(&mut state, &mut views), NODES);
    for (node, cursor) in NODES.iter().zip(cursors.iter_mut()) {
        let Some(Update::Delta(delta)) = views.next_update(node, cursor) else {
            panic!("{node}: a delta")
        };
        assert_eq!(delta.routes_upserted.len(), 1, "{node}: only the new route");
        let services = &delta.routes_upserted[0].services;
        assert_eq!(services[0].name, "cluster");
    }
}

#[test]
fn a_deleted_service_is_withdrawn_and_a_new_configuration_resends_only_what_it_changed() {
    let (mut state, mut views) = setup();
    upsert(&mut state, "a", None);
    upsert(&mut state, "b", Some("n1"));
    publish(&mut state, &mut views);
    let mut cursors = first_messages(&views);
    let key = ServiceSpec::from_pb(&pb::Service {
        key: Some(pb::ServiceKey { namespace: "default".into(), name: "b".into() }),
        ..Default::default()
    })
    .unwrap()
    .key;
    let _ = state.delete(&key, SystemTime::now());
    assert_eq!(publish(&mut state, &mut views), ["n1"]);
    let Some(Update::Delta(delta)) = views.next_update("n1", &mut cursors[0]) else {
        panic!("a delta")
    };
    assert_eq!(delta.routes_withdrawn.len(), 1);
    assert!(delta.routes_upserted.is_empty());

    // Same configuration again: nothing to send. Another local-pref: every route, as a delta.
    let _ = state.apply_config(&config(100), "test", SystemTime::now());
    publish(&mut state, &mut views);
    assert!(views.next_update("n2", &mut cursors[1]).is_none());
    let _ = state.apply_config(&config(200), "test", SystemTime::now());
    assert_eq!(publish(&mut state, &mut views), NODES);
    let Some(Update::Delta(delta)) = views.next_update("n2", &mut cursors[1]) else {
        panic!("a delta, not a snapshot")
    };
    assert_eq!(delta.routes_upserted.len(), 1);
    assert_eq!(delta.routes_upserted[0].local_pref, Some(200));
}

#[test]
fn a_stream_behind_the_remembered_removals_gets_a_snapshot() {
    let (mut state, mut views) = setup();
    let mut cursors = first_messages(&views);
    // Many Services come and go on n1 while its stream sends nothing.
    let names: Vec<String> = (0..200).map(|n| format!("s{n}")).collect();
    for name in &names {
        upsert(&mut state, name, Some("n1"));
    }
    publish(&mut state, &mut views);
    for name in names {
        let key = ServiceSpec::from_pb(&pb::Service {
            key: Some(pb::ServiceKey { namespace: "default".into(), name }),
            ..Default::default()
        })
        .unwrap()
        .key;
        let _ = state.delete(&key, SystemTime::now());
    }
    publish(&mut state, &mut views);
    let update = views.next_update("n1", &mut cursors[0]);
    assert!(matches!(update, Some(Update::Snapshot(ref s)) if s.routes.is_empty()), "{update:?}");
    // Another node's stream, which the churn did not touch, is not disturbed.
    assert!(views.next_update("n2", &mut cursors[1]).is_none());
}
