//! End-to-end figures: from creating a Service to its route in the router's kernel table, with
//! the whole system running as processes (tests/src/stack.rs: kube-apiserver, watcher,
//! allocator, three announcers, BIRD). Prints the figures; asserts only that every Service got
//! routed at all.
//!
//! 1. 200 Services created one after another: creation to route, p50 and p99.
//! 2. 1,000 Services created at once (32 concurrent clients): time until every one is routed.
//!
//! Routes are seen through `ip monitor route` in the router's namespace, so the time a route
//! appears is the time the kernel reports it, not the time a poll happened to look.
//!
//! Run: `cargo bench -p metallb-tests --bench end_to_end_figures`

use std::time::{Duration, Instant};

use futures::StreamExt;
use metallb_tests::{
    route_monitor::RouteMonitor,
    stack::{Stack, StackOptions, kube_objects::TrafficPolicy},
};

/// Sequential Services for the latency figures.
const SEQUENTIAL: usize = 200;
/// Services created at once for the throughput figure.
const BURST: usize = 1000;
/// Concurrent clients creating the burst.
const CREATORS: usize = 32;
/// Longest wait for one Service.
const SERVICE_DEADLINE: Duration = Duration::from_secs(30);
/// Longest wait for the whole burst.
const BURST_DEADLINE: Duration = Duration::from_secs(300);

/// Where each Service's endpoints are. A Service without ready endpoints is not announced
/// (as in MetalLB); with externalTrafficPolicy Cluster every node announces it.
const ENDPOINT_NODES: &[&str] = &["node-1"];

/// A pool big enough for both rounds; it exists only inside the stack's namespaces.
const POOL: &str = "100.64.0.0/20";

fn resources(stack: &Stack) -> String {
    format!(
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata:\n  name: bench\n  namespace: metallb-system\nspec:\n  addresses:\n  - {POOL}\n---\n{}---\napiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata:\n  name: everything\n  namespace: metallb-system\nspec: {{}}\n",
        stack.bgp_peer_resource()
    )
}

/// Waits until `n` destinations have appeared; returns when the last of them did.
async fn wait_for_routes(
    stack: &Stack,
    routes: &RouteMonitor,
    n: usize,
    deadline: Instant,
) -> Instant {
    loop {
        if let Some(at) = n.checked_sub(1).and_then(|last| routes.nth_appearance(last)) {
            return at;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {n} Services routed\n{}",
            routes.appeared(),
            stack.diagnostics()
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn percentile(sorted: &[Duration], q: f64) -> f64 {
    sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)].as_secs_f64() * 1e3
}

#[tokio::main]
async fn main() {
    let stack = Stack::start(StackOptions::default()).await.expect("the stack starts");
    stack.apply_yaml(&resources(&stack)).await.expect("configuration applied");
    stack.wait_for_sessions().await.expect("sessions up");
    let routes = RouteMonitor::follow(&stack.lab.router).expect("ip monitor starts");

    // One at a time, so the n-th new destination in the router's table is the n-th Service.
    let mut latencies = Vec::with_capacity(SEQUENTIAL);
    for n in 0..SEQUENTIAL {
        let name = format!("seq-{n}");
        stack.set_endpoints(&name, ENDPOINT_NODES).await.expect("endpoints");
        let created = Instant::now();
        stack.create_load_balancer(&name, TrafficPolicy::Cluster).await.expect("created");
        let routed = wait_for_routes(&stack, &routes, n + 1, created + SERVICE_DEADLINE).await;
        latencies.push(routed.saturating_duration_since(created));
    }
    latencies.sort();
    println!(
        "{SEQUENTIAL} Services one after another, creation to route in the router's kernel table: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0),
    );

    // Endpoints first, so that the clock measures Services only.
    futures::stream::iter(0..BURST)
        .map(|n| {
            let stack = &stack;
            async move {
                let name = format!("burst-{n}");
                stack.set_endpoints(&name, ENDPOINT_NODES).await.expect("endpoints");
            }
        })
        .buffer_unordered(CREATORS)
        .collect::<Vec<()>>()
        .await;
    let started = Instant::now();
    futures::stream::iter(0..BURST)
        .map(|n| {
            let stack = &stack;
            async move {
                let name = format!("burst-{n}");
                stack.create_load_balancer(&name, TrafficPolicy::Cluster).await.expect("created");
            }
        })
        .buffer_unordered(CREATORS)
        .collect::<Vec<()>>()
        .await;
    let created = started.elapsed();
    let last = wait_for_routes(&stack, &routes, SEQUENTIAL + BURST, started + BURST_DEADLINE).await;
    let all_routed = last.saturating_duration_since(started);
    println!(
        "{BURST} Services created at once by {CREATORS} clients (creating took {:.2} s): all routed after {:.2} s",
        created.as_secs_f64(),
        all_routed.as_secs_f64()
    );
}
