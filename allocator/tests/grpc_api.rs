//! The API through a real gRPC server on loopback and a tonic client: the assignment stream an
//! announcer opens, and the trace context each message carries.

use std::time::Duration;

use metallb_allocator::{
    core::Core,
    metrics::Metrics,
    server::{Security, serve_grpc},
};
use metallb_process::Readiness;
use metallb_proto::pb::{self, allocator_client::AllocatorClient, assignment_update::Update};
use prometheus_client::registry::Registry;
use tonic::transport::Channel;

async fn start() -> (AllocatorClient<Channel>, tokio::sync::oneshot::Sender<()>) {
    let (client, stop, _) = start_with_metrics().await;
    (client, stop)
}

/// `start`, and the registry of the allocator's metrics.
async fn start_with_metrics()
-> (AllocatorClient<Channel>, tokio::sync::oneshot::Sender<()>, Registry) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (health, health_service) = tonic_health::server::health_reporter();
    let mut registry = Registry::default();
    let core = Core::new(Metrics::register(&mut registry), Readiness::new("test"), health).await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve_grpc(listener, core, health_service, Security::insecure(), async move {
        let _ = stopped.await;
    }));
    (AllocatorClient::connect(format!("http://{addr}")).await.unwrap(), stop, registry)
}

fn scrape(registry: &Registry) -> String {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
    text
}

fn config() -> pb::Config {
    pb::Config {
        pools: vec![pb::AddressPool {
            name: "p".into(),
            addresses: vec!["192.0.2.0/24".into()],
            auto_assign: true,
            ..Default::default()
        }],
        peers: vec![pb::BgpPeer {
            name: "router".into(),
            my_asn: 64512,
            peer_asn: 64500,
            peer_address: "198.51.100.1".into(),
            ..Default::default()
        }],
        advertisements: vec![pb::BgpAdvertisement { name: "all".into(), ..Default::default() }],
        ..Default::default()
    }
}

fn local_service(name: &str, ready_on: &[&str]) -> pb::Service {
    pb::Service {
        key: Some(pb::ServiceKey { namespace: "default".into(), name: name.into() }),
        external_traffic_policy: pb::TrafficPolicy::Local as i32,
        ready_endpoint_nodes: ready_on.iter().map(|n| n.to_string()).collect(),
        ..Default::default()
    }
}

/// The next message that is not a heartbeat (those come every 250 ms once the snapshot is out).
async fn next(stream: &mut tonic::Streaming<pb::AssignmentUpdate>) -> pb::AssignmentUpdate {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(5), stream.message())
            .await
            .expect("a message in time")
            .unwrap()
            .unwrap();
        if !matches!(message.update, Some(Update::Heartbeat(_))) {
            return message;
        }
    }
}

const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

#[tokio::test]
async fn an_announcer_gets_a_snapshot_after_the_first_sync_then_traced_deltas() {
    let (mut client, _stop) = start().await;
    client
        .apply_config(pb::ApplyConfigRequest { config: Some(config()), ..Default::default() })
        .await
        .unwrap();
    client
        .update_node(pb::UpdateNodeRequest {
            node: Some(pb::Node { name: "n1".into(), ..Default::default() }),
            trace: None,
        })
        .await
        .unwrap();
    let mut stream = client
        .watch_assignments(pb::WatchAssignmentsRequest { node_name: "n1".into() })
        .await
        .unwrap()
        .into_inner();
    // Nothing before the first sync: no snapshot from a partial picture.
    assert!(tokio::time::timeout(Duration::from_millis(300), stream.message()).await.is_err());

    let held =
        pb::Service { current_ips: vec!["192.0.2.7".into()], ..local_service("held", &["n1"]) };
    client
        .sync_services(pb::SyncServicesRequest { services: vec![held], trace: None })
        .await
        .unwrap();
    let snapshot = next(&mut stream).await;
    let snapshot_sequence = snapshot.sequence;
    let Some(Update::Snapshot(snapshot)) = snapshot.update else { panic!("expected a snapshot") };
    assert_eq!(snapshot.peers[0].name, "router");
    assert_eq!(
        snapshot.routes[0].key.as_ref().unwrap().prefix,
        "192.0.2.7/32",
        "the IP in the status was adopted"
    );

    let trace = pb::TraceContext { traceparent: TRACEPARENT.into(), tracestate: String::new() };
    client
        .upsert_service(pb::UpsertServiceRequest {
            service: Some(local_service("web", &["n1"])),
            trace: Some(trace.clone()),
        })
        .await
        .unwrap();
    let delta = next(&mut stream).await;
    assert!(delta.sequence > snapshot_sequence, "sequences grow");
    assert_eq!(
        delta.trace.unwrap().traceparent,
        TRACEPARENT,
        "the message carries the cause's trace"
    );
    let Some(Update::Delta(delta)) = delta.update else { panic!("expected a delta") };
    assert_eq!(delta.routes_upserted[0].key.as_ref().unwrap().prefix, "192.0.2.0/32");

    // The endpoint moves to another node: ETP=Local withdraws the route from n1.
    client
        .upsert_service(pb::UpsertServiceRequest {
            service: Some(local_service("web", &["n2"])),
            trace: None,
        })
        .await
        .unwrap();
    let Some(Update::Delta(delta)) = next(&mut stream).await.update else {
        panic!("expected a delta")
    };
    assert_eq!(delta.routes_withdrawn[0].prefix, "192.0.2.0/32");

    // The node is excluded from load-balancing: everything it announced is withdrawn.
    let excluded = pb::Node {
        name: "n1".into(),
        labels: [(
            "node.kubernetes.io/exclude-from-external-load-balancers".to_string(),
            String::new(),
        )]
        .into(),
        ..Default::default()
    };
    client.update_node(pb::UpdateNodeRequest { node: Some(excluded), trace: None }).await.unwrap();
    let Some(Update::Delta(delta)) = next(&mut stream).await.update else {
        panic!("expected a delta")
    };
    assert_eq!(delta.routes_withdrawn[0].prefix, "192.0.2.7/32");
}

#[tokio::test]
async fn sessions_reported_by_announcers_are_listed() {
    let (mut client, _stop) = start().await;
    let session = pb::SessionState {
        peer: "router".into(),
        peer_address: "198.51.100.1".into(),
        state: pb::BgpState::Established as i32,
        prefixes_sent: 3,
        ..Default::default()
    };
    client
        .report_sessions(pb::ReportSessionsRequest {
            node_name: "n1".into(),
            sessions: vec![session],
        })
        .await
        .unwrap();
    let listed =
        client.list_sessions(pb::ListSessionsRequest::default()).await.unwrap().into_inner();
    assert_eq!(listed.sessions.len(), 1);
    assert_eq!(
        (listed.sessions[0].node_name.as_str(), listed.sessions[0].prefixes_sent),
        ("n1", 3)
    );
    let other = client
        .list_sessions(pb::ListSessionsRequest { node_name: "n2".into() })
        .await
        .unwrap()
        .into_inner();
    assert!(other.sessions.is_empty());
}

#[tokio::test]
async fn assignments_of_a_node_never_heard_of_are_not_found() {
    let (mut client, _stop, registry) = start_with_metrics().await;
    client
        .apply_config(pb::ApplyConfigRequest { config: Some(config()), ..Default::default() })
        .await
        .unwrap();
    let ask = |node: &str| pb::GetNodeAssignmentsRequest { node_name: node.into() };
    // Before the first sync, that comes first.
    let early = client.get_node_assignments(ask("n1")).await.unwrap_err();
    assert_eq!(early.code(), tonic::Code::FailedPrecondition, "{early:?}");
    client.sync_services(pb::SyncServicesRequest::default()).await.unwrap();

    let typo = client.get_node_assignments(ask("nl")).await.unwrap_err();
    assert_eq!(typo.code(), tonic::Code::NotFound, "{typo:?}");
    assert!(typo.message().contains("node nl is unknown"), "{typo:?}");

    // Known from the watcher: an answer, empty or not.
    let node = pb::Node { name: "n1".into(), ..Default::default() };
    client.update_node(pb::UpdateNodeRequest { node: Some(node), trace: None }).await.unwrap();
    let assignments = client.get_node_assignments(ask("n1")).await.unwrap().into_inner();
    assert_eq!(assignments.peers[0].name, "router");
    // Deleted by the watcher: no longer known.
    client.delete_node(pb::DeleteNodeRequest { name: "n1".into(), trace: None }).await.unwrap();
    let deleted = client.get_node_assignments(ask("n1")).await.unwrap_err();
    assert_eq!(deleted.code(), tonic::Code::NotFound, "{deleted:?}");

    // Known from an announcer's stream, even before (or without) the watcher's word on it,
    // and after the stream closed.
    let stream = client
        .watch_assignments(pb::WatchAssignmentsRequest { node_name: "n2".into() })
        .await
        .unwrap()
        .into_inner();
    let streaming = client.get_node_assignments(ask("n2")).await.unwrap().into_inner();
    assert_eq!(streaming, pb::NodeAssignments::default(), "nothing for a node not reported");
    assert!(scrape(&registry).contains("metallb_allocator_assignment_streams 1"));
    drop(stream);
    tokio::time::sleep(Duration::from_millis(200)).await;
    client.get_node_assignments(ask("n2")).await.unwrap();
    assert!(scrape(&registry).contains("metallb_allocator_assignment_streams 0"));

    // The refusals are counted with their method and code by the server's layer.
    let text = scrape(&registry);
    for expected in [
        r#"metallb_allocator_grpc_errors_total{method="GetNodeAssignments",code="NOT_FOUND"} 2"#,
        r#"metallb_allocator_grpc_errors_total{method="GetNodeAssignments",code="FAILED_PRECONDITION"} 1"#,
        r#"metallb_allocator_grpc_request_duration_seconds_count{method="GetNodeAssignments",code="OK"} 3"#,
        r#"metallb_allocator_grpc_request_duration_seconds_count{method="WatchAssignments",code="OK"} 1"#,
    ] {
        assert!(text.contains(expected), "{expected} missing:\n{text}");
    }
}

#[tokio::test]
async fn a_change_reaches_the_stream_and_its_lag_is_measured() {
    let (mut client, _stop, registry) = start_with_metrics().await;
    client
        .apply_config(pb::ApplyConfigRequest { config: Some(config()), ..Default::default() })
        .await
        .unwrap();
    let node = pb::Node { name: "n1".into(), ..Default::default() };
    client.update_node(pb::UpdateNodeRequest { node: Some(node), trace: None }).await.unwrap();
    client.sync_services(pb::SyncServicesRequest::default()).await.unwrap();
    let mut stream = client
        .watch_assignments(pb::WatchAssignmentsRequest { node_name: "n1".into() })
        .await
        .unwrap()
        .into_inner();
    next(&mut stream).await;
    let lag_count = |text: &str| {
        text.lines()
            .find_map(|line| {
                line.strip_prefix("metallb_allocator_assignment_stream_lag_seconds_count ")
            })
            .map(|count| count.trim().parse::<u64>().unwrap())
    };
    let before = lag_count(&scrape(&registry)).unwrap();
    client
        .upsert_service(pb::UpsertServiceRequest {
            service: Some(local_service("web", &["n1"])),
            trace: None,
        })
        .await
        .unwrap();
    let delta = next(&mut stream).await;
    assert!(matches!(delta.update, Some(Update::Delta(_))), "{delta:?}");
    let text = scrape(&registry);
    assert!(lag_count(&text).unwrap() > before, "{text}");
}
