//! Watcher figures (a bench binary that prints them, not a timed test), against a real
//! kube-apiserver and allocator: creation-to-status latency of 1,000 Services (p50, p99, total),
//! the initial sync with 10,000 existing Services, and the watcher's RSS.
//!
//! Run: `cargo build --bins --release && cargo bench -p metallb-tests --bench watcher_figures`

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Service;
use kube::{
    Api, Client,
    api::PostParams,
    runtime::{WatchStreamExt, watcher},
};
use metallb_tests::{
    daemons::{Allocator, Daemon},
    kube_control_plane::ControlPlane,
};

const FIRST: usize = 1_000;
const TOTAL: usize = 10_000;
const CREATORS: usize = 16;

fn service(n: usize) -> Service {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": format!("svc-{n}"), "namespace": "default"},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80}], "allocateLoadBalancerNodePorts": false},
    }))
    .unwrap()
}

async fn create(
    client: &Client,
    range: std::ops::Range<usize>,
    created: &Arc<Mutex<HashMap<String, Instant>>>,
) {
    let api: Api<Service> = Api::namespaced(client.clone(), "default");
    futures::stream::iter(range)
        .map(|n| {
            let api = api.clone();
            let created = created.clone();
            async move {
                let started = Instant::now();
                api.create(&PostParams::default(), &service(n)).await.expect("create");
                created.lock().unwrap().insert(format!("svc-{n}"), started);
            }
        })
        .buffer_unordered(CREATORS)
        .collect::<Vec<_>>()
        .await;
}

fn watcher_daemon(
    control_plane: &ControlPlane,
    allocator: &Allocator,
    logs: &std::path::Path,
) -> Daemon {
    let args: Vec<String> = [
        "--kubeconfig",
        &control_plane.kubeconfig_path().to_string_lossy(),
        "--allocator-endpoint",
        &allocator.grpc_url(),
        "--log-filter",
        "warn",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    Daemon::start("metallb-watcher", &args, &[], logs).unwrap()
}

fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

#[tokio::main]
async fn main() {
    let logs = tempfile::tempdir().unwrap();
    let control_plane = ControlPlane::start().await.unwrap();
    control_plane.kubectl(&["create", "namespace", "metallb-system"]).await.unwrap();
    control_plane
        .apply_yaml("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: config, namespace: metallb-system}\ndata:\n  config: |\n    address-pools:\n    - name: bench\n      cidr: [198.18.0.0/15]\n")
        .await
        .unwrap();
    let client = control_plane.client().await;
    let allocator = Allocator::start(&[], logs.path()).await.unwrap();
    let mut daemon = watcher_daemon(&control_plane, &allocator, logs.path());
    daemon.wait_ready().await.unwrap();

    // Creation to status: a watch of our own notes when each Service first shows an IP.
    let created: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let latencies: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let observer = {
        let (created, latencies) = (created.clone(), latencies.clone());
        let api: Api<Service> = Api::namespaced(client.clone(), "default");
        tokio::spawn(async move {
            let mut seen = std::collections::HashSet::new();
            let mut stream = watcher(api, watcher::Config::default()).applied_objects().boxed();
            while let Ok(Some(service)) = stream.try_next().await {
                let name = service.metadata.name.clone().unwrap_or_default();
                if metallb_watcher::translate::ingress_ips(&service).is_empty()
                    || !seen.insert(name.clone())
                {
                    continue;
                }
                if let Some(started) = created.lock().unwrap().get(&name) {
                    latencies.lock().unwrap().push(started.elapsed());
                }
            }
        })
    };
    let started = Instant::now();
    create(&client, 0..FIRST, &created).await;
    let deadline = Instant::now() + Duration::from_secs(300);
    while latencies.lock().unwrap().len() < FIRST {
        assert!(Instant::now() < deadline, "not every Service got an IP");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let total = started.elapsed();
    observer.abort();
    let mut sorted = latencies.lock().unwrap().clone();
    sorted.sort();
    let at = |q: f64| {
        sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)].as_secs_f64() * 1e3
    };
    println!(
        "{FIRST} Services created by {CREATORS} concurrent clients: creation-to-status p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; all with an IP after {:.2} s; watcher RSS {:.1} MiB",
        at(0.5),
        at(0.99),
        at(1.0),
        total.as_secs_f64(),
        rss_mib(daemon.pid())
    );

    // Initial sync: 10,000 Services with their IPs exist when a fresh watcher and allocator
    // start (a restart of both), which must adopt every IP before it is ready.
    create(&client, FIRST..TOTAL, &created).await;
    let api: Api<Service> = Api::namespaced(client.clone(), "default");
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let list = api.list(&Default::default()).await.unwrap();
        // Ours only: the namespace also holds the API's own `kubernetes` Service.
        let ours: Vec<&Service> = list
            .items
            .iter()
            .filter(|s| s.metadata.name.as_deref().is_some_and(|n| n.starts_with("svc-")))
            .collect();
        if ours.len() == TOTAL
            && ours.iter().all(|s| !metallb_watcher::translate::ingress_ips(s).is_empty())
        {
            break;
        }
        let with_ip = list
            .items
            .iter()
            .filter(|s| !metallb_watcher::translate::ingress_ips(s).is_empty())
            .count();
        let log = daemon.log();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        assert!(
            Instant::now() < deadline,
            "{with_ip} of {} Services have an IP; watcher log tail:\n{tail:#?}",
            list.items.len()
        );
        // Listing 10,000 objects loads the API server: not too often.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    daemon.terminate(Duration::from_secs(15)).unwrap();
    let mut allocator = allocator;
    allocator.daemon.terminate(Duration::from_secs(15)).unwrap();
    let allocator = Allocator::start(&[], logs.path()).await.unwrap();
    let started = Instant::now();
    let mut daemon = watcher_daemon(&control_plane, &allocator, logs.path());
    daemon.wait_ready().await.unwrap();
    let synced = started.elapsed();
    let leases = metallb_tests::grpcurl::grpcurl(
        allocator.grpc_addr(),
        Some("{}"),
        &["metallb.v1.Allocator/ListPools"],
    )
    .unwrap();
    println!(
        "initial sync of {TOTAL} existing Services after a restart of watcher and allocator (watcher start to ready: \
         lists, configuration, nodes, full sync): {:.2} s; watcher RSS {:.1} MiB; allocator pools: {}",
        synced.as_secs_f64(),
        rss_mib(daemon.pid()),
        leases.stdout.split_whitespace().collect::<String>()
    );
}
