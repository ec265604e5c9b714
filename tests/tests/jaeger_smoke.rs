//! The Jaeger harness itself: a span exported by a real OTLP/gRPC exporter (the same crates our
//! binaries use) from this test process arrives in a real Jaeger and comes back out of its query
//! API with its service, name, attributes and parent intact.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use metallb_tests::jaeger::Jaeger;
use opentelemetry::{
    Context, KeyValue,
    trace::{Span as _, TraceContextExt as _, Tracer as _, TracerProvider as _},
};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::{Resource, trace::SdkTracerProvider};

/// The tonic exporter needs a multi-threaded runtime: the batch processor exports from its own
/// thread while the connection's tasks run on the runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn span_exported_over_otlp_is_found_through_the_query_api() {
    let jaeger = Jaeger::start().await.expect("starting Jaeger");

    // Unique per run, so the assertions can only match what this test sent.
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    let service = format!("jaeger-smoke-{}-{nanos}", std::process::id());
    let marker = format!("marker-{nanos}");

    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(jaeger.otlp_grpc_endpoint())
        .with_timeout(Duration::from_secs(10))
        .build()
        .expect("building the OTLP exporter");
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_service_name(service.clone()).build())
        .build();
    let tracer = provider.tracer("jaeger_smoke");

    let parent = tracer.start("smoke-parent");
    let parent_cx = Context::current_with_span(parent);
    let mut child = tracer.start_with_context("smoke-child", &parent_cx);
    child.set_attribute(KeyValue::new("smoke.marker", marker.clone()));
    let child_ids = child.span_context().clone();
    child.end();
    let parent_ids = parent_cx.span().span_context().clone();
    parent_cx.span().end();

    // force_flush blocks until the export finished; keep it off the runtime's worker threads.
    let flushed = tokio::task::spawn_blocking(move || {
        let result = provider.force_flush();
        let _ = provider.shutdown();
        result
    })
    .await
    .expect("flush task");
    flushed.expect("flushing spans to Jaeger");

    let trace = jaeger
        .wait_for_trace(
            &service,
            |trace| trace.span("smoke-child").is_some() && trace.span("smoke-parent").is_some(),
            Duration::from_secs(15),
        )
        .await
        .unwrap_or_else(|err| panic!("{err:#}\nJaeger log:\n{}", jaeger.log()));

    assert_eq!(trace.trace_id, parent_ids.trace_id().to_string());
    assert_eq!(trace.spans.len(), 2, "{}", trace.summary());
    let child = trace.span("smoke-child").unwrap();
    let parent = trace.span("smoke-parent").unwrap();
    assert_eq!(child.span_id, child_ids.span_id().to_string());
    assert_eq!(parent.span_id, parent_ids.span_id().to_string());
    assert_eq!(child.service_name, service);
    assert_eq!(parent.service_name, service);
    assert_eq!(child.tag_str("smoke.marker"), Some(marker.as_str()));
    assert_eq!(
        trace.parent_of(child).map(|span| span.span_id.as_str()),
        Some(parent.span_id.as_str())
    );
    assert_eq!(parent.parent_span_id, None);

    let services = jaeger.services().await.expect("listing services");
    assert!(services.contains(&service), "{service} not in {services:?}");
    // A service that sent nothing has no traces: the lookup really filters.
    let other = jaeger.traces(&format!("{service}-absent")).await.expect("querying traces");
    assert!(other.is_empty(), "unexpected traces: {other:?}");
}
