//! The allocator's API as a user meets it: grpcurl, over TLS and presenting a ServiceAccount
//! token (the watcher's, unless a case needs an announcer's), lists and describes it through
//! server reflection, the standard health check answers, and RPCs whose logic is not built yet say
//! UNIMPLEMENTED rather than anything made up.

use metallb_tests::{
    daemons::Allocator,
    grpcurl::{GrpcTarget, grpcurl, grpcurl_with},
    kube_control_plane::ControlPlane,
    trust::{self, ANNOUNCER_ACCOUNT, AUDIENCE, Trust},
};

/// An allocator called as the watcher (the writer) unless a test says otherwise, with what it
/// needs alive: its certificates and the control plane that issues tokens. Fields drop in order.
struct Fixture {
    allocator: Allocator,
    trust: Trust,
    _control_plane: ControlPlane,
    _logs: tempfile::TempDir,
}

impl std::ops::Deref for Fixture {
    type Target = Allocator;

    fn deref(&self) -> &Allocator {
        &self.allocator
    }
}

impl Fixture {
    /// The allocator called as the announcer of node-a.
    async fn as_announcer(&self) -> GrpcTarget {
        let token = self.trust.token(ANNOUNCER_ACCOUNT, Some("node-a"), AUDIENCE, "1h").await;
        self.allocator.target().with_token(Some(&token.unwrap()))
    }
}

async fn allocator() -> Fixture {
    let logs = tempfile::tempdir().unwrap();
    let (control_plane, trust) = trust::standalone(&["node-a"]).await.unwrap();
    let allocator = Allocator::start(&trust, &[], logs.path()).await.unwrap();
    Fixture { allocator, trust, _control_plane: control_plane, _logs: logs }
}

#[tokio::test]
async fn grpcurl_lists_the_api_health_and_reflection() {
    let allocator = allocator().await;
    let out = grpcurl(&allocator.target(), None, &["list"]).unwrap();
    assert_eq!(out.code, 0, "{out:?}");
    let services: Vec<&str> = out.stdout.lines().collect();
    for expected in
        ["metallb.v1.Allocator", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"]
    {
        assert!(services.contains(&expected), "{expected} missing from {services:?}");
    }
}

#[tokio::test]
async fn grpcurl_describe_reads_as_a_manual() {
    let allocator = allocator().await;
    let out = grpcurl(&allocator.target(), None, &["describe", "metallb.v1.Allocator"]).unwrap();
    assert_eq!(out.code, 0, "{out:?}");
    // Every RPC of the contract, each with its comment above it.
    for rpc in [
        "ApplyConfig",
        "UpsertService",
        "DeleteService",
        "SyncServices",
        "UpdateNode",
        "DeleteNode",
        "ListPools",
        "ListLeases",
        "GetLease",
        "GetNodeAssignments",
        "WatchAssignments",
        "ReportSessions",
        "ListSessions",
    ] {
        let line = out
            .stdout
            .lines()
            .position(|line| line.trim_start().starts_with(&format!("rpc {rpc} ")));
        let line = line.unwrap_or_else(|| panic!("rpc {rpc} not described:\n{}", out.stdout));
        let above = out.stdout.lines().nth(line - 1).unwrap();
        assert!(
            above.trim_start().starts_with("//"),
            "rpc {rpc} has no documentation:\n{}",
            out.stdout
        );
    }
    assert!(
        out.stdout.contains("returns ( stream .metallb.v1.AssignmentUpdate )"),
        "{}",
        out.stdout
    );

    let message = grpcurl(&allocator.target(), None, &["describe", "metallb.v1.Service"]).unwrap();
    assert_eq!(message.code, 0, "{message:?}");
    for field in [
        "load_balancer_ips",
        "sharing_key",
        "ip_family_policy",
        "external_traffic_policy",
        "ready_endpoint_nodes",
    ] {
        assert!(message.stdout.contains(field), "{field} missing:\n{}", message.stdout);
    }
}

/// grpcurl's exit code for a failed RPC: 64 + the gRPC status code.
fn exit_code_for(status: tonic::Code) -> i32 {
    64 + status as i32
}

fn call(allocator: &Allocator, method: &str, data: &str) -> serde_json::Value {
    let out =
        grpcurl(&allocator.target(), Some(data), &[&format!("metallb.v1.Allocator/{method}")])
            .unwrap();
    assert_eq!(out.code, 0, "{method} {data}: {out:?}");
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|err| panic!("{method}: {err}: {}", out.stdout))
}

fn health(allocator: &Allocator, service: &str) -> String {
    let request = format!(r#"{{"service":"{service}"}}"#);
    let out =
        grpcurl(&allocator.target(), Some(&request), &["grpc.health.v1.Health/Check"]).unwrap();
    assert_eq!(out.code, 0, "{out:?}");
    out.stdout
}

const CONFIG: &str = r#"{"source": "grpcurl", "config": {
    "pools": [{"name": "default", "addresses": ["192.0.2.0/24", "2001:db8::/64"], "auto_assign": true}],
    "peers": [{"name": "router", "my_asn": 64512, "peer_asn": 64500, "peer_address": "198.51.100.1"}],
    "advertisements": [{"name": "all"}]}}"#;

#[tokio::test]
async fn the_api_is_not_serving_until_the_first_full_sync() {
    let allocator = allocator().await;
    assert!(health(&allocator, "").contains(r#""status": "SERVING""#));
    assert!(health(&allocator, "metallb.v1.Allocator").contains("NOT_SERVING"));
    let early = grpcurl(
        &allocator.target(),
        Some(r#"{"service": {"key": {"namespace": "default", "name": "web"}}}"#),
        &["metallb.v1.Allocator/UpsertService"],
    )
    .unwrap();
    assert_eq!(early.code, exit_code_for(tonic::Code::FailedPrecondition), "{early:?}");
    assert!(early.stderr.contains("first full sync"), "{}", early.stderr);

    call(&allocator, "SyncServices", "{}");
    assert!(health(&allocator, "metallb.v1.Allocator").contains(r#""status": "SERVING""#));
    let unknown = grpcurl(
        &allocator.target(),
        Some(r#"{"service":"no.such.Service"}"#),
        &["grpc.health.v1.Health/Check"],
    )
    .unwrap();
    assert!(unknown.stderr.contains("NotFound"), "{unknown:?}");
}

#[tokio::test]
async fn a_user_drives_configuration_services_and_inspection_with_grpcurl() {
    let allocator = allocator().await;
    let applied = call(&allocator, "ApplyConfig", CONFIG);
    assert_eq!(applied["accepted"], true, "{applied}");
    call(&allocator, "SyncServices", "{}");
    call(&allocator, "UpdateNode", r#"{"node": {"name": "node-a"}}"#);

    let upserted = call(
        &allocator,
        "UpsertService",
        r#"{"service": {"key": {"namespace": "default", "name": "web"}, "ip_families": ["IP_FAMILY_IPV4"],
            "ports": [{"port": 80, "protocol": "PROTOCOL_TCP"}], "has_ready_endpoints": true}}"#,
    );
    assert_eq!(upserted["outcome"]["lease"]["ips"][0], "192.0.2.0", "{upserted}");

    let pools = call(&allocator, "ListPools", "{}");
    let v4 = &pools["pools"][0]["families"][0];
    assert_eq!(
        (v4["size"].as_str(), v4["used"].as_str(), v4["free"].as_str()),
        (Some("256"), Some("1"), Some("255")),
        "{pools}"
    );
    assert_eq!(pools["pools"][0]["families"][1]["size"], "18446744073709551616");

    let leases = call(&allocator, "ListLeases", r#"{"namespace": "default"}"#);
    assert_eq!(leases["leases"][0]["service"]["name"], "web", "{leases}");
    assert!(leases["leases"][0]["assignedAt"].is_string(), "{leases}");
    let lease =
        call(&allocator, "GetLease", r#"{"service": {"namespace": "default", "name": "web"}}"#);
    assert_eq!(lease["pool"], "default");

    let routes = call(&allocator, "GetNodeAssignments", r#"{"node_name": "node-a"}"#);
    assert_eq!(routes["routes"][0]["key"]["prefix"], "192.0.2.0/32", "{routes}");
    assert_eq!(routes["peers"][0]["name"], "router");

    let failed = call(
        &allocator,
        "UpsertService",
        r#"{"service": {"key": {"namespace": "default", "name": "elsewhere"}, "load_balancer_ip": "203.0.113.9"}}"#,
    );
    assert_eq!(
        failed["outcome"]["failure"]["reason"], "FAILURE_REASON_IP_NOT_IN_ANY_POOL",
        "{failed}"
    );
    assert!(
        failed["outcome"]["failure"]["message"]
            .as_str()
            .unwrap()
            .contains("203.0.113.9 is not in any pool")
    );

    let deleted = call(
        &allocator,
        "DeleteService",
        r#"{"service": {"namespace": "default", "name": "web"}}"#,
    );
    assert_eq!(deleted["releasedIps"][0], "192.0.2.0");
    let metrics = allocator.daemon.admin_get("/metrics").await.unwrap().1;
    assert!(
        metrics.contains(r#"metallb_allocator_addresses_in_use_total{pool="default"} 0"#),
        "{metrics}"
    );
    assert!(metrics.contains("metallb_k8s_client_config_loaded_bool 1"), "{metrics}");

    // A burst in one call: the delete first frees .0, which the first upsert then gets.
    call(
        &allocator,
        "UpsertService",
        r#"{"service": {"key": {"namespace": "default", "name": "old"}, "has_ready_endpoints": true}}"#,
    );
    let batch = call(
        &allocator,
        "UpdateServices",
        r#"{"deletes": [{"service": {"namespace": "default", "name": "old"}}],
            "upserts": [{"service": {"key": {"namespace": "default", "name": "new-1"}}},
                        {"service": {"key": {"namespace": "default", "name": "new-2"}}}]}"#,
    );
    assert_eq!(batch["deletes"][0]["releasedIps"][0], "192.0.2.0", "{batch}");
    assert_eq!(batch["upserts"][0]["outcome"]["lease"]["ips"][0], "192.0.2.0", "{batch}");
    assert_eq!(batch["upserts"][1]["outcome"]["lease"]["ips"][0], "192.0.2.1", "{batch}");
}

#[tokio::test]
async fn bad_requests_get_precise_status_codes() {
    let allocator = allocator().await;
    call(&allocator, "SyncServices", "{}");
    // Each RPC called by a role that may call it: the status is about the request itself.
    let (writer, announcer) = (allocator.target(), allocator.as_announcer().await);
    let cases = [
        (
            &writer,
            "UpsertService",
            r#"{"service": {"key": {"name": "no-namespace"}}}"#,
            tonic::Code::InvalidArgument,
            "namespace",
        ),
        (
            &writer,
            "ApplyConfig",
            r#"{"source": "x"}"#,
            tonic::Code::InvalidArgument,
            "config is required",
        ),
        (
            &announcer,
            "WatchAssignments",
            "{}",
            tonic::Code::InvalidArgument,
            "node_name is required",
        ),
        (
            &writer,
            "GetLease",
            r#"{"service": {"namespace": "default", "name": "none"}}"#,
            tonic::Code::NotFound,
            "holds no lease",
        ),
        (
            &writer,
            "GetNodeAssignments",
            r#"{"node_name": "nodo-a"}"#,
            tonic::Code::NotFound,
            "node nodo-a is unknown",
        ),
        (
            &writer,
            "SyncServices",
            r#"{"services": [{}]}"#,
            tonic::Code::InvalidArgument,
            "services[0]",
        ),
        (
            &writer,
            "UpdateServices",
            r#"{"upserts": [{"service": {"key": {"namespace": "a", "name": "b"}}}, {}]}"#,
            tonic::Code::InvalidArgument,
            "upserts[1]",
        ),
    ];
    // Announcers may not use server reflection: grpcurl reads the API from its source.
    let proto_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../proto");
    let from_source = ["-import-path", proto_dir, "-proto", "metallb/v1/allocator.proto"];
    for (target, method, data, code, text) in cases {
        let method = format!("metallb.v1.Allocator/{method}");
        let out = grpcurl_with(target, &from_source, Some(data), &[&method]).unwrap();
        assert_eq!(out.code, exit_code_for(code), "{method}: {out:?}");
        assert!(out.stderr.contains(text), "{method}: {}", out.stderr);
    }
    let rejected = call(
        &allocator,
        "ApplyConfig",
        r#"{"config": {"pools": [{"name": "a", "addresses": ["192.0.2.0/33"]}], "peers": [{"name": "r", "peer_address": "x"}]}}"#,
    );
    assert_eq!(
        rejected["accepted"],
        serde_json::Value::Null,
        "proto3 JSON omits false: {rejected}"
    );
    let errors = rejected["errors"].as_array().unwrap();
    assert!(errors.len() >= 3, "{rejected}");
}
