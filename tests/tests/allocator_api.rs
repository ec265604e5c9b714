//! The allocator's API as a user meets it: grpcurl lists and describes it through server
//! reflection, the standard health check answers, and RPCs whose logic is not built yet say
//! UNIMPLEMENTED rather than anything made up.

use metallb_tests::{daemons::Allocator, grpcurl::grpcurl};

async fn allocator() -> (Allocator, tempfile::TempDir) {
    let logs = tempfile::tempdir().unwrap();
    let allocator = Allocator::start(&[], logs.path()).await.unwrap();
    (allocator, logs)
}

#[tokio::test]
async fn grpcurl_lists_the_api_health_and_reflection() {
    let (allocator, _logs) = allocator().await;
    let out = grpcurl(allocator.grpc_addr(), None, &["list"]).unwrap();
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
    let (allocator, _logs) = allocator().await;
    let out = grpcurl(allocator.grpc_addr(), None, &["describe", "metallb.v1.Allocator"]).unwrap();
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

    let message =
        grpcurl(allocator.grpc_addr(), None, &["describe", "metallb.v1.Service"]).unwrap();
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

#[tokio::test]
async fn health_check_answers_serving_for_the_server_and_the_api() {
    let (allocator, _logs) = allocator().await;
    for service in ["", "metallb.v1.Allocator"] {
        let request = format!(r#"{{"service":"{service}"}}"#);
        let out = grpcurl(allocator.grpc_addr(), Some(&request), &["grpc.health.v1.Health/Check"])
            .unwrap();
        assert_eq!(out.code, 0, "{out:?}");
        assert!(out.stdout.contains(r#""status": "SERVING""#), "{service:?}: {}", out.stdout);
    }
    let unknown = grpcurl(
        allocator.grpc_addr(),
        Some(r#"{"service":"no.such.Service"}"#),
        &["grpc.health.v1.Health/Check"],
    )
    .unwrap();
    assert!(unknown.stderr.contains("NotFound"), "{unknown:?}");
}

#[tokio::test]
async fn rpcs_not_built_yet_answer_unimplemented() {
    let (allocator, _logs) = allocator().await;
    let out =
        grpcurl(allocator.grpc_addr(), Some("{}"), &["metallb.v1.Allocator/ListPools"]).unwrap();
    // grpcurl exits with 64 + the status code; UNIMPLEMENTED is 12.
    assert_eq!(out.code, 64 + 12, "{out:?}");
    assert!(out.stderr.contains("Code: Unimplemented"), "{}", out.stderr);
    assert!(out.stderr.contains("ListPools"), "{}", out.stderr);
}
