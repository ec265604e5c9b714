//! Our binaries' spans reach a real Jaeger over OTLP, joined to the caller's trace through the
//! W3C `traceparent` gRPC metadata.

use std::time::Duration;

use metallb_tests::{
    daemons::Allocator,
    grpcurl::grpcurl_with,
    jaeger::Jaeger,
    trust::{self, Trust},
};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

#[tokio::test]
async fn an_allocator_request_is_a_span_in_the_callers_trace_in_jaeger() {
    let jaeger = Jaeger::start().await.unwrap();
    let logs = tempfile::tempdir().unwrap();
    let (_control_plane, trust) = trust::standalone(&[]).await.unwrap();
    let env = [("OTEL_EXPORTER_OTLP_ENDPOINT", jaeger.otlp_grpc_endpoint())];
    let mut allocator = Allocator::start(&trust, &env, logs.path()).await.unwrap();

    let traceparent = format!("traceparent: 00-{TRACE_ID}-00f067aa0ba902b7-01");
    let headers = ["-H", traceparent.as_str()];
    let out = grpcurl_with(
        &allocator.target(),
        &headers,
        Some("{}"),
        &["metallb.v1.Allocator/SyncServices"],
    )
    .unwrap();
    assert_eq!(out.code, 0, "{out:?}");
    // SIGTERM flushes the batch exporter.
    allocator.daemon.terminate(Duration::from_secs(15)).unwrap();

    let trace = jaeger
        .wait_for_trace(
            "metallb-allocator",
            |trace| {
                trace
                    .spans
                    .iter()
                    .any(|span| span.operation_name == "/metallb.v1.Allocator/SyncServices")
            },
            Duration::from_secs(20),
        )
        .await
        .unwrap_or_else(|err| panic!("{err}\nallocator log:\n{}", allocator.daemon.log()));
    assert_eq!(
        trace.trace_id,
        TRACE_ID,
        "the span continues the caller's trace: {}",
        trace.summary()
    );
    let span = trace
        .spans
        .iter()
        .find(|s| s.operation_name == "/metallb.v1.Allocator/SyncServices")
        .unwrap();
    assert_eq!(span.service_name, "metallb-allocator");
    assert_eq!(span.parent_span_id.as_deref(), Some("00f067aa0ba902b7"), "{}", trace.summary());
}

#[tokio::test]
async fn a_service_change_is_one_trace_from_the_watcher_into_the_allocator() {
    use k8s_openapi::api::core::v1::Service;
    use kube::{Api, api::PostParams};
    use metallb_tests::{daemons::Daemon, kube_control_plane::ControlPlane};

    let jaeger = Jaeger::start().await.unwrap();
    let logs = tempfile::tempdir().unwrap();
    let control_plane = ControlPlane::start().await.unwrap();
    control_plane.kubectl(&["create", "namespace", "metallb-system"]).await.unwrap();
    control_plane
        .apply_yaml("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: config, namespace: metallb-system}\ndata:\n  config: |\n    address-pools:\n    - name: p\n      cidr: [203.0.113.0/24]\n")
        .await
        .unwrap();
    // After the namespace: the Trust puts its ServiceAccounts there.
    let trust = Trust::new(&control_plane, &[]).await.unwrap();
    let env = [("OTEL_EXPORTER_OTLP_ENDPOINT", jaeger.otlp_grpc_endpoint())];
    let mut allocator = Allocator::start(&trust, &env, logs.path()).await.unwrap();
    let mut args: Vec<String> = [
        "--kubeconfig",
        &control_plane.kubeconfig_path().to_string_lossy(),
        "--allocator-endpoint",
        &allocator.grpc_url(),
        // The Trust stands in for the Secret and ConfigMap the watcher would issue.
        "--manage-allocator-tls=false",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(trust.watcher_args().await.unwrap());
    let mut watcher = Daemon::start("metallb-watcher", &args, &env, logs.path()).unwrap();
    watcher.wait_ready().await.unwrap();

    let service: Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "traced", "namespace": "default"},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]},
    }))
    .unwrap();
    Api::<Service>::namespaced(control_plane.client().await, "default")
        .create(&PostParams::default(), &service)
        .await
        .unwrap();
    // The watcher logs the trace ID of the event it handles.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let trace_id = loop {
        let log = watcher.log();
        let line = log.lines().find(|l| l.contains("default/traced") && l.contains("trace_id="));
        if let Some(id) = line
            .and_then(|l| l.split("trace_id=").nth(1))
            .and_then(|rest| rest.split_whitespace().next())
        {
            break id.trim_matches('"').to_string();
        }
        assert!(std::time::Instant::now() < deadline, "no trace ID logged:\n{log}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(trace_id.len(), 32, "{trace_id}");
    watcher.terminate(Duration::from_secs(15)).unwrap();
    allocator.daemon.terminate(Duration::from_secs(15)).unwrap();

    let trace = jaeger
        .wait_for_trace(
            "metallb-allocator",
            |trace| {
                trace.trace_id == trace_id
                    && trace.spans.iter().any(|s| s.service_name == "metallb-watcher")
            },
            Duration::from_secs(20),
        )
        .await
        .unwrap_or_else(|err| panic!("{err}\nwatcher log:\n{}", watcher.log()));
    let services: std::collections::BTreeSet<&str> =
        trace.spans.iter().map(|s| s.service_name.as_str()).collect();
    assert!(
        services.contains("metallb-watcher") && services.contains("metallb-allocator"),
        "{}",
        trace.summary()
    );
    assert!(trace.spans.iter().any(|s| s.operation_name == "UpsertService"), "{}", trace.summary());
}
