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
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (health, health_service) = tonic_health::server::health_reporter();
    let core =
        Core::new(Metrics::register(&mut Registry::default()), Readiness::new("test"), health)
            .await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve_grpc(listener, core, health_service, Security::insecure(), async move {
        let _ = stopped.await;
    }));
    (AllocatorClient::connect(format!("http://{addr}")).await.unwrap(), stop)
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
