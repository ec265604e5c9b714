//! The allocator and two announcers as processes, BIRD as the router: a Service's IP reaches
//! the router from every eligible node (ECMP in the kernel), externalTrafficPolicy Local narrows
//! it to nodes with endpoints, deleting the Service withdraws it, sessions are reported back,
//! and announcers keep announcing when the allocator goes away. The peer's BFD profile reaches
//! the announcers, whose BFD sessions come up with BIRD's.

use std::{net::IpAddr, time::Duration};

use metallb_tests::{
    bgp_routers::{Neighbor, Router, RouterConfig, RouterKind},
    daemons::{Allocator, Daemon},
    grpcurl::grpcurl_in,
    lab::{Lab, ROUTER_V4},
    trust,
};

const WAIT: Duration = Duration::from_secs(30);
const GRPC_PORT: u16 = 50051;
const SERVICE_IP: &str = "203.0.113.0";

fn call(lab: &Lab, allocator: &Allocator, method: &str, data: &str) -> serde_json::Value {
    let out = grpcurl_in(
        &lab.router,
        &allocator.target(),
        Some(data),
        &[&format!("metallb.v1.Allocator/{method}")],
    )
    .unwrap();
    assert_eq!(out.code, 0, "{method}: {out:?}");
    serde_json::from_str(&out.stdout).unwrap_or_default()
}

fn service(local_on: Option<&str>) -> String {
    let (policy, nodes) = match local_on {
        Some(node) => ("TRAFFIC_POLICY_LOCAL", format!(r#"["{node}"]"#)),
        None => ("TRAFFIC_POLICY_CLUSTER", r#"["node-a", "node-b"]"#.to_string()),
    };
    format!(
        r#"{{"key": {{"namespace": "default", "name": "web"}}, "ip_families": ["IP_FAMILY_IPV4"],
            "external_traffic_policy": "{policy}", "ready_endpoint_nodes": {nodes}, "has_ready_endpoints": true}}"#
    )
}

fn kernel_next_hops(lab: &Lab) -> Vec<IpAddr> {
    Lab::kernel_routes(&lab.router, "-4")
        .unwrap()
        .into_iter()
        .find(|route| route.destination == SERVICE_IP)
        .map(|route| route.next_hops)
        .unwrap_or_default()
}

fn wait_for_next_hops(router: &Router, lab: &Lab, expected: &[IpAddr], announcers: &[&Daemon]) {
    router
        .wait_until(&format!("routing {SERVICE_IP} via {expected:?}"), WAIT, |_| {
            Ok(kernel_next_hops(lab) == expected)
        })
        .unwrap_or_else(|err| {
            let logs: String = announcers.iter().map(|a| a.log()).collect();
            panic!("{err}\nkernel: {:?}\nannouncers:\n{logs}", kernel_next_hops(lab))
        });
}

#[tokio::test]
async fn services_are_announced_from_eligible_nodes_and_survive_the_allocator() {
    let logs = tempfile::tempdir().unwrap();
    // kube-apiserver issues the announcers' tokens, bound to pods on their nodes.
    let (_control_plane, trust) = trust::standalone(&["node-a", "node-b"]).await.unwrap();
    let lab = Lab::new(2).unwrap();
    let (a, b) = (lab.nodes[0].clone(), lab.nodes[1].clone());
    // BFD on both sessions: the peer's bfdProfile travels from the configuration to the
    // announcers, which run it against BIRD's.
    let with_bfd = |address| Neighbor { bfd: true, ..Neighbor::new(IpAddr::V4(address), 64512) };
    let neighbors = vec![with_bfd(a.v4), with_bfd(b.v4)];
    let router = Router::start(
        RouterKind::Bird,
        &lab.router,
        &RouterConfig { asn: 64500, router_id: ROUTER_V4, neighbors },
    )
    .unwrap();

    // The allocator lives in the router's namespace, where every node reaches it.
    let mut allocator =
        Allocator::start_in(&lab.router, GRPC_PORT, &trust, &[], logs.path()).await.unwrap();
    let endpoint = format!("https://{ROUTER_V4}:{GRPC_PORT}");
    let mut announcers = Vec::new();
    for (node, name) in [(&a, "node-a"), (&b, "node-b")] {
        let mut args: Vec<String> = [
            "--node-name",
            name,
            "--allocator-endpoint",
            &endpoint,
            "--node-address",
            &node.v4.to_string(),
            "--report-interval-seconds",
            "1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(trust.announcer_args(name).await.unwrap());
        announcers.push(
            Daemon::start_in(Some(&node.namespace), "metallb-announcer", &args, &[], logs.path())
                .unwrap(),
        );
    }

    let config = format!(
        r#"{{"source": "test", "config": {{"pools": [{{"name": "p", "addresses": ["203.0.113.0/24"], "auto_assign": true}}],
            "peers": [{{"name": "router", "my_asn": 64512, "peer_asn": 64500, "peer_address": "{ROUTER_V4}", "hold_time_seconds": 9, "bfd_profile": "default"}}],
            "bfd_profiles": [{{"name": "default"}}],
            "advertisements": [{{"name": "all"}}]}}}}"#
    );
    assert_eq!(call(&lab, &allocator, "ApplyConfig", &config)["accepted"], true);
    for name in ["node-a", "node-b"] {
        call(&lab, &allocator, "UpdateNode", &format!(r#"{{"node": {{"name": "{name}"}}}}"#));
    }
    let synced =
        call(&lab, &allocator, "SyncServices", &format!(r#"{{"services": [{}]}}"#, service(None)));
    assert_eq!(synced["outcomes"][0]["lease"]["ips"][0], SERVICE_IP, "{synced}");

    // Cluster policy: both nodes announce; the router spreads over both.
    let both = vec![IpAddr::V4(a.v4), IpAddr::V4(b.v4)];
    let refs: Vec<&Daemon> = announcers.iter().collect();
    wait_for_next_hops(&router, &lab, &both, &refs);

    // Local policy with the endpoint on node-a only: node-b withdraws.
    call(
        &lab,
        &allocator,
        "UpsertService",
        &format!(r#"{{"service": {}}}"#, service(Some("node-a"))),
    );
    wait_for_next_hops(&router, &lab, &[IpAddr::V4(a.v4)], &refs);

    // The announcers report their sessions, BFD up on both, as BIRD sees it too.
    router
        .wait_until("sessions reported to the allocator", WAIT, |_| {
            let sessions = call(&lab, &allocator, "ListSessions", "{}");
            let established = sessions["sessions"]
                .as_array()
                .map(|s| {
                    s.iter()
                        .filter(|s| s["state"] == "BGP_STATE_ESTABLISHED" && s["bfdState"] == "up")
                        .count()
                })
                .unwrap_or(0);
            Ok(established == 2)
        })
        .unwrap();
    for node in [&a, &b] {
        assert!(router.bfd_up(IpAddr::V4(node.v4)).unwrap(), "{}", router.describe());
    }

    // Deleting the Service withdraws the route everywhere.
    call(
        &lab,
        &allocator,
        "DeleteService",
        r#"{"service": {"namespace": "default", "name": "web"}}"#,
    );
    wait_for_next_hops(&router, &lab, &[], &refs);

    // Back again, then the allocator dies: the announcers keep what they have.
    call(&lab, &allocator, "UpsertService", &format!(r#"{{"service": {}}}"#, service(None)));
    wait_for_next_hops(&router, &lab, &both, &refs);
    let (_, metrics) = allocator.daemon.admin_get("/metrics").await.unwrap();
    for expected in ["metallb_allocator_ready 1", "metallb_allocator_assignment_streams 2"] {
        assert!(metrics.contains(expected), "{expected} missing:\n{metrics}");
    }
    for announcer in &announcers {
        let (_, metrics) = announcer.admin_get("/metrics").await.unwrap();
        for expected in [
            "metallb_announcer_allocator_stream_connected 1",
            "metallb_bgp_session_flaps_total{",
            "process_open_fds ",
        ] {
            assert!(metrics.contains(expected), "{expected} missing:\n{metrics}");
        }
    }
    allocator.daemon.terminate(Duration::from_secs(10)).unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(kernel_next_hops(&lab), both, "announcers withdrew when the allocator went away");
    for announcer in &announcers {
        assert!(announcer.log().contains("assignment stream unavailable"), "{}", announcer.log());
        let (_, metrics) = announcer.admin_get("/metrics").await.unwrap();
        assert!(
            metrics.contains("metallb_announcer_allocator_stream_connected 0"),
            "the stream is down: {metrics}"
        );
    }
}
