//! Convergence and failover figures, with the whole system running as processes
//! (tests/src/stack.rs: kube-apiserver, two watchers, two allocators, three announcers, BIRD).
//! Prints the figures; asserts only that each step converged at all.
//!
//! 1. Delete to withdraw: 100 routed Services deleted while 100 others are created (32
//!    clients): from the last API delete to the last of the 100 routes gone from the router's
//!    kernel table.
//! 2. A restarted allocator, with nothing changing in Kubernetes: from starting the process to
//!    ready (synced by the watcher), 10 trials.
//! 3. Failover, 10 trials each: SIGKILL of the primary allocator, or of the leading watcher,
//!    then a new Service created at once: time until its status shows an IP.
//!
//! Run: `cargo bench -p metallb-tests --bench convergence_figures`

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use futures::StreamExt;
use metallb_tests::{
    route_monitor::RouteMonitor,
    stack::{Stack, StackOptions, kube_objects::TrafficPolicy},
};

const CHURN: usize = 100;
const CLIENTS: usize = 32;
const TRIALS: usize = 10;
const DEADLINE: Duration = Duration::from_secs(60);
const POOL: &str = "100.64.0.0/20";

fn resources(stack: &Stack) -> String {
    format!(
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata:\n  name: bench\n  namespace: metallb-system\nspec:\n  addresses:\n  - {POOL}\n---\n{}---\napiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata:\n  name: everything\n  namespace: metallb-system\nspec: {{}}\n",
        stack.bgp_peer_resource()
    )
}

async fn ingress_ip(stack: &Stack, name: &str) -> IpAddr {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(ip) = stack.ingress(name).await {
            return ip.parse().expect("an IP");
        }
        assert!(Instant::now() < deadline, "{name} got no IP\n{}", stack.diagnostics());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn create_all(stack: &Stack, names: &[String]) {
    futures::stream::iter(names)
        .map(|name| async move {
            stack.set_endpoints(name, &["node-1"]).await.expect("endpoints");
            stack.create_load_balancer(name, TrafficPolicy::Cluster).await.expect("created");
        })
        .buffer_unordered(CLIENTS)
        .collect::<Vec<()>>()
        .await;
}

fn summary(times: &mut [Duration]) -> String {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    format!(
        "p50 {:.0} ms, max {:.0} ms (all: {:?})",
        ms(times[times.len() / 2]),
        ms(times[times.len() - 1]),
        times.iter().map(|t| ms(*t).round() as u64).collect::<Vec<_>>()
    )
}

async fn delete_to_withdraw(stack: &Stack, routes: &RouteMonitor) {
    let old: Vec<String> = (0..CHURN).map(|n| format!("old-{n}")).collect();
    create_all(stack, &old).await;
    let mut ips = Vec::new();
    for name in &old {
        let ip = ingress_ip(stack, name).await;
        let deadline = Instant::now() + DEADLINE;
        while routes.changes(ip).added.is_none() {
            assert!(Instant::now() < deadline, "{name}'s {ip} never routed");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        ips.push(ip);
    }
    let new: Vec<String> = (0..CHURN).map(|n| format!("new-{n}")).collect();
    let deletes_started = Instant::now();
    let deletes = async {
        futures::stream::iter(&old)
            .map(|name| async move { stack.delete_service(name).await.expect("deleted") })
            .buffer_unordered(CLIENTS)
            .collect::<Vec<()>>()
            .await;
        Instant::now()
    };
    let (last_delete, ()) = tokio::join!(deletes, create_all(stack, &new));
    let deadline = Instant::now() + DEADLINE;
    let mut last_withdrawal = last_delete;
    for ip in ips {
        let removed = loop {
            if let Some(at) = routes.changes(ip).removed {
                break at;
            }
            assert!(Instant::now() < deadline, "{ip} never withdrawn\n{}", stack.diagnostics());
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        last_withdrawal = last_withdrawal.max(removed);
    }
    // Signed: withdrawals keep pace with the deletes, so the last one may come before the
    // last delete has returned to its client.
    let after_ms = if last_withdrawal >= last_delete {
        last_withdrawal.duration_since(last_delete).as_secs_f64() * 1e3
    } else {
        -(last_delete.duration_since(last_withdrawal).as_secs_f64() * 1e3)
    };
    println!(
        "{CHURN} Services deleted while {CHURN} others were created ({CLIENTS} clients): the last route withdrawn {after_ms:+.0} ms from the last API delete's return; deletes took {:.0} ms",
        last_delete.duration_since(deletes_started).as_secs_f64() * 1e3
    );
}

async fn restarted_allocator_ready(stack: &mut Stack) {
    let mut times = Vec::new();
    for _ in 0..TRIALS {
        // The standby: killing it disturbs nothing else.
        let standby = 1;
        stack.allocators[standby].daemon.kill().expect("killed");
        let started = Instant::now();
        stack.restart_allocator(standby).await.expect("restarted");
        stack.allocators[standby].daemon.wait_ready().await.expect("ready");
        times.push(started.elapsed());
    }
    println!(
        "A restarted allocator, nothing changing in Kubernetes: process start to ready {}",
        summary(&mut times)
    );
}

async fn failover(stack: &mut Stack) {
    let mut allocator_times = Vec::new();
    // The primary is the first endpoint until it fails, then the other one.
    let mut primary = 0;
    for trial in 0..TRIALS {
        let name = format!("after-allocator-{trial}");
        stack.set_endpoints(&name, &["node-1"]).await.expect("endpoints");
        stack.allocators[primary].daemon.kill().expect("killed");
        let killed = Instant::now();
        stack.create_load_balancer(&name, TrafficPolicy::Cluster).await.expect("created");
        ingress_ip(stack, &name).await;
        allocator_times.push(killed.elapsed());
        stack.restart_allocator(primary).await.expect("restarted");
        stack.allocators[primary].daemon.wait_ready().await.expect("synced again");
        primary = 1 - primary;
    }
    let mut watcher_times = Vec::new();
    for trial in 0..TRIALS {
        let name = format!("after-watcher-{trial}");
        stack.set_endpoints(&name, &["node-1"]).await.expect("endpoints");
        let leader = stack.leading_watcher().await.expect("a leader");
        stack.watchers[leader].kill().expect("killed");
        let killed = Instant::now();
        stack.create_load_balancer(&name, TrafficPolicy::Cluster).await.expect("created");
        ingress_ip(stack, &name).await;
        watcher_times.push(killed.elapsed());
        stack.restart_watcher(leader).expect("restarted");
        stack.watchers[leader].wait_ready().await.expect("standing by");
    }
    println!(
        "SIGKILL of the primary allocator, then a new Service: IP in its status after {}",
        summary(&mut allocator_times)
    );
    println!(
        "SIGKILL of the leading watcher, then a new Service: IP in its status after {}",
        summary(&mut watcher_times)
    );
}

#[tokio::main]
async fn main() {
    let mut stack =
        Stack::start(StackOptions { replicas: 2, ..Default::default() }).await.expect("started");
    stack.apply_yaml(&resources(&stack)).await.expect("configuration applied");
    stack.wait_for_sessions().await.expect("sessions up");
    let routes = RouteMonitor::follow(&stack.lab.router).expect("ip monitor starts");
    delete_to_withdraw(&stack, &routes).await;
    restarted_allocator_ready(&mut stack).await;
    failover(&mut stack).await;
}
