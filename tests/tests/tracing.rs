//! Our binaries' spans reach a real Jaeger over OTLP, joined to the caller's trace through the
//! W3C `traceparent` gRPC metadata.

use std::time::Duration;

use metallb_tests::{daemons::Allocator, grpcurl::grpcurl_with, jaeger::Jaeger};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

#[tokio::test]
async fn an_allocator_request_is_a_span_in_the_callers_trace_in_jaeger() {
    let jaeger = Jaeger::start().await.unwrap();
    let logs = tempfile::tempdir().unwrap();
    let env = [("OTEL_EXPORTER_OTLP_ENDPOINT", jaeger.otlp_grpc_endpoint())];
    let mut allocator = Allocator::start(&env, logs.path()).await.unwrap();

    let traceparent = format!("traceparent: 00-{TRACE_ID}-00f067aa0ba902b7-01");
    let headers = ["-H", traceparent.as_str()];
    let out = grpcurl_with(
        allocator.grpc_addr(),
        &headers,
        Some("{}"),
        &["metallb.v1.Allocator/ListPools"],
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
                    .any(|span| span.operation_name == "/metallb.v1.Allocator/ListPools")
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
    let span =
        trace.spans.iter().find(|s| s.operation_name == "/metallb.v1.Allocator/ListPools").unwrap();
    assert_eq!(span.service_name, "metallb-allocator");
    assert_eq!(span.parent_span_id.as_deref(), Some("00f067aa0ba902b7"), "{}", trace.summary());
}
