//! One Service change is one trace in Jaeger across all three processes: the watcher's span
//! for the change, the allocator's for the allocation, and the announcer's `send_update` for
//! the UPDATE that announced it (trace context rides inside the streamed assignment).

use std::time::Duration;

use metallb_tests::{
    jaeger::Span,
    stack::{Stack, StackOptions, kube_objects::TrafficPolicy},
};

const SERVICE: &str = "traced";
const POOL: &str = "address-pools:\n- name: p\n  cidr: [203.0.113.0/24]\n";

/// The watcher's span for a change of our Service.
fn is_the_watchers_span(span: &Span) -> bool {
    span.service_name == "metallb-watcher"
        && span.operation_name == "watcher.service"
        && span.tag_str("service") == Some(&format!("default/{SERVICE}"))
}

fn is_an_update_sent(span: &Span) -> bool {
    span.service_name == "metallb-announcer" && span.operation_name == "send_update"
}

#[tokio::test]
async fn a_service_change_is_one_trace_from_the_watcher_to_the_update_sent() {
    let stack =
        Stack::start(StackOptions { nodes: 1, jaeger: true, ..Default::default() }).await.unwrap();
    stack.apply_config_map(&format!("{}{POOL}", stack.v01_peers())).await.unwrap();
    // Established first: an UPDATE sent when a session comes up belongs to no Service change.
    stack.wait_for_sessions().await.unwrap();
    // Endpoints before the Service, so that its first change is the one announced.
    stack.set_endpoints(SERVICE, &["node-1"]).await.unwrap();
    stack.create_load_balancer(SERVICE, TrafficPolicy::Cluster).await.unwrap();
    stack.wait_for_router_next_hops("203.0.113.0", &["node-1"]).await.unwrap();

    let jaeger = stack.jaeger.as_ref().unwrap();
    let trace = jaeger
        .wait_for_operation_trace(
            "metallb-watcher",
            "watcher.service",
            // All three in one trace; each process exports its spans in its own batches, so
            // the trace is complete only once the last of them has arrived.
            |trace| {
                trace.spans.iter().any(is_the_watchers_span)
                    && trace.spans.iter().any(|span| span.service_name == "metallb-allocator")
                    && trace.spans.iter().any(is_an_update_sent)
            },
            Duration::from_secs(20),
        )
        .await
        .unwrap_or_else(|err| panic!("{err}\n{}", stack.diagnostics()));
    let update = trace.spans.iter().find(|span| is_an_update_sent(span)).unwrap();
    assert!(update.parent_span_id.is_some(), "send_update is a root span: {}", trace.summary());
}
