//! Watcher figures (a bench binary that prints them, not a timed test), against a real
//! kube-apiserver and allocator: creation-to-status latency of 1,000 Services created one after
//! another and of 1,000 created in a burst (p50, p99, total),
//! the initial sync with 10,000 existing Services (`METALLB_WATCHER_SERVICES` sets the count),
//! the watcher's RSS, and one Service change while all of them exist: the change's API call to
//! the allocator holding its result.
//!
//! Run: `cargo build --bins --release && cargo bench -p metallb-tests --bench watcher_figures`
//! (issue 17's 20,000: `METALLB_WATCHER_SERVICES=20000 cargo bench ... --bench watcher_figures`)

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
use metallb_process::{AllocatorClientArgs, AllocatorConnector};
use metallb_proto::pb;
use metallb_tests::{
    daemons::{Allocator, Daemon},
    kube_control_plane::ControlPlane,
    trust::{self, READER_ACCOUNT, Trust},
};

const FIRST: usize = 1_000;
/// Services at the initial sync, unless `METALLB_WATCHER_SERVICES` says otherwise.
const TOTAL: usize = 10_000;
const CREATORS: usize = 16;
/// Single Service changes timed while all the others exist.
const CHANGES: usize = 20;

fn service(n: usize) -> Service {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": format!("svc-{n}"), "namespace": "default"},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80}], "allocateLoadBalancerNodePorts": false},
    }))
    .unwrap()
}

/// Creates Services `svc-<n>` for `range`, `creators` at a time, noting in `created` when
/// each create call started; returns how long each call took.
async fn create(
    client: &Client,
    range: std::ops::Range<usize>,
    creators: usize,
    created: &Arc<Mutex<HashMap<String, Instant>>>,
) -> Vec<Duration> {
    let api: Api<Service> = Api::namespaced(client.clone(), "default");
    futures::stream::iter(range)
        .map(|n| {
            let api = api.clone();
            let created = created.clone();
            async move {
                let started = Instant::now();
                // Noted before the call: the status may be written before the call returns.
                created.lock().unwrap().insert(format!("svc-{n}"), started);
                api.create(&PostParams::default(), &service(n)).await.expect("create");
                started.elapsed()
            }
        })
        .buffer_unordered(creators)
        .collect()
        .await
}

/// p50, p99 and max of `durations`, in milliseconds.
fn percentiles(mut durations: Vec<Duration>) -> (f64, f64, f64) {
    durations.sort();
    let at = |q: f64| {
        durations[((durations.len() as f64 * q) as usize).min(durations.len() - 1)].as_secs_f64()
            * 1e3
    };
    (at(0.5), at(0.99), at(1.0))
}

/// Waits until every Service of `range` has shown an IP; returns their latencies.
async fn wait_for_statuses(
    range: std::ops::Range<usize>,
    latencies: &Arc<Mutex<HashMap<String, Duration>>>,
) -> Vec<Duration> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let done: Vec<Duration> = {
            let seen = latencies.lock().unwrap();
            range.clone().filter_map(|n| seen.get(&format!("svc-{n}")).copied()).collect()
        };
        if done.len() == range.len() {
            return done;
        }
        assert!(Instant::now() < deadline, "only {} of {range:?} got an IP", done.len());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The watcher, presenting `client_args` (the CA bundle and its token, made beforehand so
/// that issuing a token is not counted in its start time).
fn watcher_daemon(
    control_plane: &ControlPlane,
    client_args: &[String],
    allocator: &Allocator,
    logs: &std::path::Path,
) -> Daemon {
    let mut args: Vec<String> = [
        "--kubeconfig",
        &control_plane.kubeconfig_path().to_string_lossy(),
        "--allocator-endpoint",
        &allocator.grpc_url(),
        "--log-filter",
        "warn",
        // The Trust stands in for the Secret and ConfigMap the watcher would issue.
        "--manage-allocator-tls=false",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(client_args.iter().cloned());
    Daemon::start("metallb-watcher", &args, &[], logs).unwrap()
}

/// Status write-backs the watcher has handled (written or found already shown).
fn status_writes(metrics: &str) -> u64 {
    metrics
        .lines()
        .filter(|line| line.starts_with("metallb_watcher_writeback_duration_seconds_count{"))
        .filter(|line| line.contains("write=\"status\""))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
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

/// A client of `allocator` as a reader.
async fn reader(trust: &Trust, allocator: &Allocator) -> metallb_process::allocator_client::Client {
    let token = trust.token_file(READER_ACCOUNT, None).await.unwrap();
    let connector = AllocatorConnector::new(&AllocatorClientArgs {
        allocator_endpoint: vec![allocator.grpc_url()],
        allocator_ca_file: trust.ca_file(),
        allocator_server_name: Some(trust::SERVER_NAME.into()),
        allocator_token_file: token,
        insecure: false,
    })
    .unwrap();
    connector.connect(Duration::from_secs(10)).await.unwrap()
}

/// Addresses the allocator's pools hold.
async fn addresses_in_use(reader: &mut metallb_process::allocator_client::Client) -> u64 {
    let pools = reader.list_pools(pb::ListPoolsRequest {}).await.unwrap().into_inner().pools;
    pools.iter().flat_map(|pool| &pool.families).map(|family| family.used).sum()
}

/// One Service change at a time while `total` exist: each of `CHANGES` Services is given an
/// IP of its own by annotation (`metallb.io/loadBalancerIPs`), and the allocator is asked
/// (GetLease, as a reader, every millisecond) until it holds that IP. Prints the latency from
/// the patch call's start, and the patch call's own share.
async fn one_change_among(
    client: &Client,
    reader: &mut metallb_process::allocator_client::Client,
    total: usize,
) {
    let api: Api<Service> = Api::namespaced(client.clone(), "default");
    let (mut to_lease, mut calls) = (Vec::new(), Vec::new());
    for n in 0..CHANGES {
        let name = format!("svc-{n}");
        // Free addresses: the Services hold the first ones of 198.18.0.0/15.
        let ip = format!("198.19.200.{}", n + 1);
        let patch =
            serde_json::json!({"metadata": {"annotations": {"metallb.io/loadBalancerIPs": ip}}});
        let started = Instant::now();
        api.patch(&name, &Default::default(), &kube::api::Patch::Merge(&patch)).await.unwrap();
        calls.push(started.elapsed());
        let deadline = started + Duration::from_secs(30);
        let key = pb::ServiceKey { namespace: "default".into(), name: name.clone() };
        loop {
            let request = pb::GetLeaseRequest { service: Some(key.clone()) };
            if let Ok(lease) = reader.get_lease(request).await
                && lease.into_inner().ips.contains(&ip)
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the allocator did not give {name} {ip} within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        to_lease.push(started.elapsed());
    }
    // In order too: an outlier's place says whether it is the first change after the sync
    // (a warm-up) or one that met periodic work.
    let in_order: Vec<String> =
        to_lease.iter().map(|d| format!("{:.1}", d.as_secs_f64() * 1e3)).collect();
    let (p50, p99, max) = percentiles(to_lease);
    let (call_p50, call_p99, _) = percentiles(calls);
    println!(
        "one Service change while {total} exist ({CHANGES} changes, one at a time: an IP asked for by annotation): \
         patch call start to the allocator holding the IP p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms \
         (of which the patch call itself: p50 {call_p50:.1} ms, p99 {call_p99:.1} ms); in order, ms: {}",
        in_order.join(", ")
    );
}

#[tokio::main]
async fn main() {
    let total: usize = std::env::var("METALLB_WATCHER_SERVICES")
        .map(|value| value.parse().expect("METALLB_WATCHER_SERVICES is a number"))
        .unwrap_or(TOTAL);
    assert!(total >= 2 * FIRST, "METALLB_WATCHER_SERVICES must be at least {}", 2 * FIRST);
    let logs = tempfile::tempdir().unwrap();
    let control_plane = ControlPlane::start().await.unwrap();
    control_plane.kubectl(&["create", "namespace", "metallb-system"]).await.unwrap();
    control_plane
        .apply_yaml("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: config, namespace: metallb-system}\ndata:\n  config: |\n    address-pools:\n    - name: bench\n      cidr: [198.18.0.0/15]\n")
        .await
        .unwrap();
    let client = control_plane.client().await;
    // After the namespace: the Trust puts its ServiceAccounts there.
    let trust = Trust::new(&control_plane, &[]).await.unwrap();
    let watcher_args = trust.watcher_args().await.unwrap();
    let allocator = Allocator::start(&trust, &[], logs.path()).await.unwrap();
    let mut daemon = watcher_daemon(&control_plane, &watcher_args, &allocator, logs.path());
    daemon.wait_ready().await.unwrap();

    // Creation to status: a watch of our own notes when each Service first shows an IP.
    let created: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let latencies: Arc<Mutex<HashMap<String, Duration>>> = Arc::default();
    let observer = {
        let (created, latencies) = (created.clone(), latencies.clone());
        let api: Api<Service> = Api::namespaced(client.clone(), "default");
        tokio::spawn(async move {
            let mut stream = watcher(api, watcher::Config::default()).applied_objects().boxed();
            while let Ok(Some(service)) = stream.try_next().await {
                let name = service.metadata.name.clone().unwrap_or_default();
                if metallb_watcher::translate::ingress_ips(&service).is_empty() {
                    continue;
                }
                let Some(started) = created.lock().unwrap().get(&name).copied() else { continue };
                latencies.lock().unwrap().entry(name).or_insert_with(|| started.elapsed());
            }
        })
    };

    // One client creating one Service after another, as the count grows to 1,000: the
    // watcher's own latency, with the API server not saturated.
    let started = Instant::now();
    create(&client, 0..FIRST, 1, &created).await;
    let (p50, p99, max) = percentiles(wait_for_statuses(0..FIRST, &latencies).await);
    println!(
        "{FIRST} Services created one after another by one client: creation-to-status p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms; all with an IP after {:.2} s",
        started.elapsed().as_secs_f64()
    );

    // A burst: 1,000 more from 16 clients at once, as fast as the API server takes them.
    let burst = FIRST..2 * FIRST;
    let started = Instant::now();
    let calls = create(&client, burst.clone(), CREATORS, &created).await;
    let (p50, p99, max) = percentiles(wait_for_statuses(burst, &latencies).await);
    let burst_took = started.elapsed();
    let (call_p50, call_p99, _) = percentiles(calls);
    observer.abort();
    println!(
        "{FIRST} Services created by {CREATORS} concurrent clients: creation-to-status p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms (of which the create call itself: p50 {call_p50:.1} ms, p99 {call_p99:.1} ms); all with an IP after {:.2} s; watcher RSS {:.1} MiB",
        burst_took.as_secs_f64(),
        rss_mib(daemon.pid())
    );

    // Initial sync: `total` (10,000) Services with their IPs exist when a fresh watcher and
    // allocator start (a restart of both), which must adopt every IP before it is ready.
    create(&client, 2 * FIRST..total, CREATORS, &created).await;
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
        if ours.len() == total
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
    let allocator = Allocator::start(&trust, &[], logs.path()).await.unwrap();
    // Connected beforehand, so that the token and the handshake are not counted.
    let mut reader = reader(&trust, &allocator).await;
    let started = Instant::now();
    let mut daemon = watcher_daemon(&control_plane, &watcher_args, &allocator, logs.path());
    daemon.wait_ready().await.unwrap();
    let ready = started.elapsed();
    // Ready is not synced: a watcher is ready while it stands by for the leader election, which
    // it wins only after that. Synced is when the allocator holds every Service's IP.
    let deadline = started + Duration::from_secs(120);
    loop {
        let in_use = addresses_in_use(&mut reader).await;
        if in_use >= total as u64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the allocator holds {in_use} of {total} IPs after 120 s"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let synced = started.elapsed();
    // The allocator holds every IP before the watcher has taken in its answer: the watcher's
    // sync pass is over when every outcome has been handed to the write queue and checked
    // against the Service (nothing to write here). Changes are timed only from then on, so that
    // the first does not wait for the end of the sync.
    loop {
        let (_, metrics) = daemon.admin_get("/metrics").await.unwrap();
        if status_writes(&metrics) >= total as u64 {
            break;
        }
        assert!(Instant::now() < deadline, "the watcher's sync pass is not over after 120 s");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let settled = started.elapsed();
    println!(
        "initial sync of {total} existing Services after a restart of watcher and allocator (watcher start to \
         the allocator holding every IP: lists, leader election, configuration, nodes, full sync): {:.2} s \
         (ready after {:.2} s; the watcher's sync pass over, every outcome checked for write-back, after {:.2} s); \
         watcher RSS {:.1} MiB",
        synced.as_secs_f64(),
        ready.as_secs_f64(),
        settled.as_secs_f64(),
        rss_mib(daemon.pid()),
    );
    one_change_among(&client, &mut reader, total).await;
    println!("watcher RSS after the changes: {:.1} MiB", rss_mib(daemon.pid()));
}
