//! Scale figures (issue 17: 1,000 nodes and 20,000 Services, with cost that follows the
//! change, not the cluster), a bench binary that prints them. The real allocator (release
//! build, secured as deployed) with N authenticated assignment streams opened by this process,
//! one per simulated node, each on its own connection with its own announcer token issued by
//! kube-apiserver; this process also plays the watcher through the writer RPCs (configuration
//! with a BGP peer every node has and an advertisement of the pool, the nodes, a full sync of
//! S Services). Most Services have `externalTrafficPolicy: Local` with ready endpoints on three
//! nodes; one in `METALLB_SCALE_CLUSTER_EVERY` is `Cluster`, announced by every node.
//!
//! For each node count it prints: one Service change to the delta on every affected stream
//! (p50/p99/max), the allocator's CPU per change (less its idle CPU: heartbeats), its RSS,
//! a new configuration to every stream updated, and a reconnect storm to every stream holding
//! a snapshot. Every wait is bounded; a figure that cannot be measured ends the bench with a
//! non-zero exit and the reason.
//!
//! Run: `cargo build --release --bins && cargo bench -p metallb-tests --bench scale_figures`
//! Environment: `METALLB_SCALE_NODES` (node counts, comma-separated; default `100,1000`),
//! `METALLB_SCALE_SERVICES` (default 20000), `METALLB_SCALE_CHANGES` (Service changes per kind
//! and node count; default 50), `METALLB_SCALE_CLUSTER_EVERY` (default 10),
//! `METALLB_SCALE_KEEPALIVE_MS` (the allocator's HTTP/2 ping interval and timeout; default
//! 10000, the allocator's own default being 1000).

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::StreamExt;
use metallb_process::{AllocatorClientArgs, AllocatorConnector, allocator_client::Client};
use metallb_proto::pb::{self, assignment_update::Update};
use metallb_tests::{
    daemons::Allocator,
    kube_control_plane::ControlPlane,
    trust::{self, Trust, WATCHER_ACCOUNT},
};
use tokio::sync::Notify;

/// The longest any single wait of the bench may take.
const WAIT: Duration = Duration::from_secs(300);
/// Connections opened at once when the streams first start (the storm opens all at once).
const OPENERS: usize = 64;
/// Pause after each measured change: longer than the allocator's publication interval
/// (20 ms), so that each change is published as a lone change is, at once.
const SETTLE: Duration = Duration::from_millis(100);
/// How long the allocator's idle CPU (heartbeats, timers) is sampled.
const IDLE_SAMPLE: Duration = Duration::from_secs(5);
/// A Local Service's endpoints: on this many consecutive nodes.
const ENDPOINT_NODES: usize = 3;
/// Largest request the allocator takes (`--max-message-bytes`): the full sync of 20,000
/// Services is one request, as the watcher sends it.
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

fn env_number(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(value) => value.trim().parse().unwrap_or_else(|_| fail(&format!("{name}={value:?}"))),
        Err(_) => default,
    }
}

fn node_counts() -> Vec<usize> {
    let text = std::env::var("METALLB_SCALE_NODES").unwrap_or_else(|_| "100,1000".into());
    text.split(',')
        .map(|n| {
            n.trim().parse().unwrap_or_else(|_| fail(&format!("METALLB_SCALE_NODES={text:?}")))
        })
        .collect()
}

/// Ends the bench: a figure could not be measured. A panic of the main task, so that the
/// control plane and the allocator are stopped on the way out (exit code 101).
fn fail(why: &str) -> ! {
    panic!("scale_figures: {why}")
}

fn node_name(n: usize) -> String {
    format!("node-{n:04}")
}

/// The configuration: one pool, one iBGP peer for every node, one advertisement of the pool
/// with `local_pref` (changing it changes every route of every node).
fn config(local_pref: u32) -> pb::Config {
    pb::Config {
        pools: vec![pb::AddressPool {
            name: "bench".into(),
            addresses: vec!["198.18.0.0/15".into()],
            auto_assign: true,
            ..Default::default()
        }],
        peers: vec![pb::BgpPeer {
            name: "router".into(),
            my_asn: 64500,
            peer_asn: 64500,
            peer_address: "192.0.2.1".into(),
            ..Default::default()
        }],
        advertisements: vec![pb::BgpAdvertisement {
            name: "bench".into(),
            ip_address_pools: vec!["bench".into()],
            local_pref: Some(local_pref),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// How Service `n` is spread over `nodes` nodes.
struct Layout {
    nodes: usize,
    cluster_every: usize,
}

impl Layout {
    fn is_cluster(&self, n: usize) -> bool {
        n.is_multiple_of(self.cluster_every)
    }

    /// Service `n` with its endpoints starting at node `first` (Local), or on every node
    /// (Cluster: has_ready_endpoints is what counts).
    fn service(&self, n: usize, first: usize, ready: bool) -> pb::Service {
        let cluster = self.is_cluster(n);
        let policy = if cluster { pb::TrafficPolicy::Cluster } else { pb::TrafficPolicy::Local };
        let endpoints = if cluster { 1 } else { ENDPOINT_NODES };
        pb::Service {
            key: Some(pb::ServiceKey {
                namespace: format!("ns-{}", n % 50),
                name: format!("svc-{n}"),
            }),
            ip_families: vec![pb::IpFamily::Ipv4 as i32],
            ports: vec![pb::ServicePort { port: 80, protocol: pb::Protocol::Tcp as i32 }],
            external_traffic_policy: policy as i32,
            ready_endpoint_nodes: if ready {
                (0..endpoints).map(|i| node_name((first + i) % self.nodes)).collect()
            } else {
                vec![]
            },
            has_ready_endpoints: ready,
            ..Default::default()
        }
    }

    /// The first endpoint node of Service `n` at the start.
    fn first_node(&self, n: usize) -> usize {
        (n * 7) % self.nodes
    }
}

/// What one stream has received.
#[derive(Clone, Copy, Default)]
struct Stamp {
    /// When the last snapshot or delta arrived.
    last_update: Option<Instant>,
    /// Snapshots received on the current stream.
    snapshots: u32,
    /// Whether the stream ended (an error or the server closed it).
    ended: bool,
}

/// Every stream's stamp, and a wake-up for whoever waits on them.
#[derive(Default)]
struct Board {
    stamps: Mutex<Vec<Stamp>>,
    changed: Notify,
}

impl Board {
    fn new(nodes: usize) -> Arc<Self> {
        Arc::new(Self { stamps: Mutex::new(vec![Stamp::default(); nodes]), changed: Notify::new() })
    }

    fn record(&self, node: usize, update: impl FnOnce(&mut Stamp)) {
        update(&mut self.stamps.lock().unwrap()[node]);
        self.changed.notify_waiters();
    }

    /// Waits until `done` holds for the stamps, at most `WAIT`; fails the bench with `what`.
    async fn wait_until(&self, what: &str, done: impl Fn(&[Stamp]) -> bool) {
        let deadline = Instant::now() + WAIT;
        loop {
            let notified = self.changed.notified();
            let ended = {
                let stamps = self.stamps.lock().unwrap();
                if done(&stamps) {
                    return;
                }
                stamps.iter().position(|stamp| stamp.ended)
            };
            if let Some(node) = ended {
                fail(&format!("{what}: the stream of {} ended", node_name(node)));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if tokio::time::timeout(left, notified).await.is_err() {
                let stamps = self.stamps.lock().unwrap();
                fail(&format!(
                    "{what}: not within {WAIT:?} ({} streams with a snapshot of {})",
                    stamps.iter().filter(|s| s.snapshots > 0).count(),
                    stamps.len()
                ));
            }
        }
    }

    /// The latest update among `nodes` if each got one after `since`.
    fn updated_after(stamps: &[Stamp], nodes: &[usize], since: Instant) -> Option<Instant> {
        let each: Option<Vec<Instant>> =
            nodes.iter().map(|&node| stamps[node].last_update.filter(|at| *at >= since)).collect();
        each?.into_iter().max()
    }
}

/// The connector of the announcer on node `n`, presenting its token.
fn announcer_connector(
    allocator: &Allocator,
    trust: &Trust,
    token: &std::path::Path,
) -> AllocatorConnector {
    AllocatorConnector::new(&AllocatorClientArgs {
        allocator_endpoint: vec![allocator.grpc_url()],
        allocator_ca_file: trust.ca_file(),
        allocator_server_name: Some(trust::SERVER_NAME.into()),
        allocator_token_file: token.to_path_buf(),
        insecure: false,
    })
    .unwrap_or_else(|err| fail(&format!("announcer connector: {err:#}")))
}

/// Opens node `node`'s connection and stream and reads it into `board` until aborted.
async fn open_stream(
    connector: AllocatorConnector,
    node: usize,
    board: Arc<Board>,
) -> tokio::task::JoinHandle<()> {
    let mut client = connector
        .connect(Duration::from_secs(30))
        .await
        .unwrap_or_else(|err| fail(&format!("{} connects: {err:#}", node_name(node))));
    let request = pb::WatchAssignmentsRequest { node_name: node_name(node) };
    let mut stream = client
        .watch_assignments(request)
        .await
        .unwrap_or_else(|status| fail(&format!("{} WatchAssignments: {status}", node_name(node))))
        .into_inner();
    tokio::spawn(async move {
        // The client lives as long as its stream.
        let _client = client;
        loop {
            match stream.message().await {
                Ok(Some(message)) => match message.update {
                    Some(Update::Snapshot(_)) => board.record(node, |stamp| {
                        stamp.last_update = Some(Instant::now());
                        stamp.snapshots += 1;
                    }),
                    Some(Update::Delta(_)) => {
                        board.record(node, |stamp| stamp.last_update = Some(Instant::now()))
                    }
                    _ => {}
                },
                end => {
                    eprintln!("the stream of {} ended: {end:?}", node_name(node));
                    board.record(node, |stamp| stamp.ended = true);
                    return;
                }
            }
        }
    })
}

/// Opens the streams of `nodes` nodes, `at_once` at a time, and waits until each holds a
/// snapshot; returns the readers and how long that took.
async fn open_all(
    connectors: &[AllocatorConnector],
    board: &Arc<Board>,
    at_once: usize,
) -> (Vec<tokio::task::JoinHandle<()>>, Duration) {
    let started = Instant::now();
    let readers = futures::stream::iter(connectors.iter().cloned().enumerate())
        .map(|(node, connector)| open_stream(connector, node, board.clone()))
        .buffered(at_once)
        .collect::<Vec<_>>()
        .await;
    board
        .wait_until("every stream holds a snapshot", |stamps| {
            stamps.iter().all(|s| s.snapshots > 0)
        })
        .await;
    (readers, started.elapsed())
}

/// The allocator's CPU time so far (user + system), from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|err| fail(&format!("/proc/{pid}/stat: {err}")));
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("").split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or_else(|| fail("/proc stat fields"))
    };
    (ticks(11) + ticks(12)) / clock_ticks()
}

fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        let out = std::process::Command::new("getconf").arg("CLK_TCK").output();
        out.ok()
            .and_then(|out| String::from_utf8_lossy(&out.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or_else(|| fail("no VmRSS for the allocator"))
        / 1024.0
}

/// p50, p99 and max in milliseconds.
fn percentiles(mut durations: Vec<Duration>) -> (f64, f64, f64) {
    durations.sort();
    let at = |q: f64| {
        durations[((durations.len() as f64 * q) as usize).min(durations.len() - 1)].as_secs_f64()
            * 1e3
    };
    (at(0.5), at(0.99), at(1.0))
}

/// This process needs a descriptor per stream; so does the allocator, which inherits the
/// limit. Raises the soft limit to the hard one with `prlimit` when it is too low.
fn ensure_descriptors(needed: u64) {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let line = limits.lines().find(|line| line.starts_with("Max open files")).unwrap_or("");
    let numbers: Vec<u64> = line.split_whitespace().filter_map(|word| word.parse().ok()).collect();
    let (soft, hard) = match numbers[..] {
        [soft, hard, ..] => (soft, hard),
        _ => (u64::MAX, u64::MAX),
    };
    if soft >= needed {
        return;
    }
    if hard < needed {
        fail(&format!("{needed} file descriptors needed, the hard limit is {hard}"));
    }
    let status = std::process::Command::new("prlimit")
        .args(["--pid", &std::process::id().to_string(), &format!("--nofile={hard}:{hard}")])
        .status();
    if !status.is_ok_and(|status| status.success()) {
        fail(&format!(
            "{needed} file descriptors needed, the soft limit is {soft} and prlimit failed"
        ));
    }
}

/// Figures of one node count.
struct Figures {
    nodes: usize,
    first_open: Duration,
    local: (f64, f64, f64),
    local_cpu_ms: f64,
    local_cpu_raw_ms: f64,
    cluster: (f64, f64, f64),
    cluster_cpu_ms: f64,
    idle_cpu: f64,
    rss_mib: f64,
    new_config: Vec<Duration>,
    /// (allocator, simulated announcers) CPU seconds per new configuration.
    config_cpu: (f64, f64),
    storm: Duration,
    /// (allocator, simulated announcers) CPU seconds of the storm.
    storm_cpu: (f64, f64),
}

/// CPU seconds the allocator and this process (the simulated announcers, which share the
/// allocator's cores here where real ones have a node each) spend from `start` on.
struct CpuShare {
    pid: u32,
    allocator: f64,
    announcers: f64,
}

impl CpuShare {
    fn start(pid: u32) -> Self {
        Self { pid, allocator: cpu_seconds(pid), announcers: cpu_seconds(std::process::id()) }
    }

    /// (allocator, announcers) seconds since the start, per one of `count` events.
    fn per(&self, count: usize) -> (f64, f64) {
        let count = count.max(1) as f64;
        (
            (cpu_seconds(self.pid) - self.allocator) / count,
            (cpu_seconds(std::process::id()) - self.announcers) / count,
        )
    }
}

async fn writer_client(allocator: &Allocator, trust: &Trust) -> Client {
    let token = trust
        .token_file(WATCHER_ACCOUNT, None)
        .await
        .unwrap_or_else(|err| fail(&format!("writer token: {err:#}")));
    announcer_connector(allocator, trust, &token)
        .connect(Duration::from_secs(30))
        .await
        .unwrap_or_else(|err| fail(&format!("writer connects: {err:#}")))
}

/// A batch of Service changes, each waited for on the streams it affects: returns each
/// change's latency and the allocator's CPU seconds over the batch.
async fn changes(
    writer: &mut Client,
    board: &Board,
    pid: u32,
    what: &str,
    batch: impl IntoIterator<Item = (pb::Service, Vec<usize>)>,
) -> (Vec<Duration>, f64) {
    let cpu_before = cpu_seconds(pid);
    let mut latencies = Vec::new();
    for (service, affected) in batch {
        let started = Instant::now();
        let request = pb::UpsertServiceRequest { service: Some(service), ..Default::default() };
        let outcome = writer
            .upsert_service(request)
            .await
            .unwrap_or_else(|status| fail(&format!("{what}: {status}")));
        if !matches!(
            outcome.into_inner().outcome.and_then(|o| o.outcome),
            Some(pb::service_outcome::Outcome::Lease(_))
        ) {
            fail(&format!("{what}: the Service holds no lease"));
        }
        board
            .wait_until(what, |stamps| Board::updated_after(stamps, &affected, started).is_some())
            .await;
        let last = Board::updated_after(&board.stamps.lock().unwrap(), &affected, started);
        latencies.push(last.expect("waited for") - started);
        tokio::time::sleep(SETTLE).await;
    }
    (latencies, cpu_seconds(pid) - cpu_before)
}

async fn measure(
    nodes: usize,
    services: usize,
    change_count: usize,
    cluster_every: usize,
    trust: &Trust,
    tokens: &[PathBuf],
    logs: &std::path::Path,
) -> Figures {
    if nodes <= ENDPOINT_NODES {
        fail(&format!("{nodes} nodes: at least {} needed", ENDPOINT_NODES + 1));
    }
    let layout = Layout { nodes, cluster_every };
    // Keepalive: every simulated announcer shares this process and the allocator's two cores,
    // where a real one has a node of its own; with the default 1 s to answer a ping, streams
    // were closed while hundreds of snapshots were being sent (`METALLB_SCALE_KEEPALIVE_MS=1000`
    // shows it).
    let keepalive = env_number("METALLB_SCALE_KEEPALIVE_MS", 10_000).to_string();
    let extra = [
        "--max-message-bytes".to_string(),
        MAX_MESSAGE_BYTES.to_string(),
        "--keepalive-interval-ms".to_string(),
        keepalive.clone(),
        "--keepalive-timeout-ms".to_string(),
        keepalive,
    ];
    let allocator = Allocator::start_with(trust, &extra, &[], logs)
        .await
        .unwrap_or_else(|err| fail(&format!("the allocator starts: {err:#}")));
    let pid = allocator.daemon.pid();
    eprintln!("{nodes} nodes: allocator started, logs in {}", logs.display());
    let mut writer = writer_client(&allocator, trust).await;

    // The watcher's part: configuration, nodes, one full sync.
    let request = pb::ApplyConfigRequest {
        config: Some(config(100)),
        source: "bench".into(),
        ..Default::default()
    };
    let applied = writer
        .apply_config(request)
        .await
        .unwrap_or_else(|status| fail(&format!("ApplyConfig: {status}")));
    if !applied.into_inner().accepted {
        fail("the configuration was refused");
    }
    futures::stream::iter(0..nodes)
        .map(|n| {
            let mut writer = writer.clone();
            async move {
                let node = pb::Node {
                    name: node_name(n),
                    labels: [("kubernetes.io/hostname".to_string(), node_name(n))].into(),
                    addresses: vec![pb::NodeAddress {
                        r#type: "InternalIP".into(),
                        address: format!("10.{}.{}.1", n / 256, n % 256),
                    }],
                    conditions: vec![pb::NodeCondition {
                        r#type: "Ready".into(),
                        status: "True".into(),
                        reason: String::new(),
                    }],
                };
                let request = pb::UpdateNodeRequest { node: Some(node), ..Default::default() };
                writer
                    .update_node(request)
                    .await
                    .unwrap_or_else(|status| fail(&format!("UpdateNode: {status}")));
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<()>>()
        .await;
    let all: Vec<pb::Service> =
        (0..services).map(|n| layout.service(n, layout.first_node(n), true)).collect();
    let synced = writer
        .sync_services(pb::SyncServicesRequest { services: all, ..Default::default() })
        .await
        .unwrap_or_else(|status| fail(&format!("SyncServices of {services}: {status}")))
        .into_inner();
    eprintln!("{nodes} nodes: configuration, nodes and {services} Services sent");
    let leased = synced
        .outcomes
        .iter()
        .filter(|o| matches!(o.outcome, Some(pb::service_outcome::Outcome::Lease(_))))
        .count();
    if leased != services {
        fail(&format!("{leased} of {services} Services got an IP"));
    }

    // The announcers' part: every node's stream, each on its own connection and token.
    let connectors: Vec<AllocatorConnector> =
        tokens[..nodes].iter().map(|token| announcer_connector(&allocator, trust, token)).collect();
    let board = Board::new(nodes);
    let (readers, first_open) = open_all(&connectors, &board, OPENERS).await;
    eprintln!("{nodes} nodes: every stream holds a snapshot");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss = rss_mib(pid);

    // Idle: heartbeats to every stream, nothing changing.
    let cpu_before = cpu_seconds(pid);
    tokio::time::sleep(IDLE_SAMPLE).await;
    let idle_cpu = (cpu_seconds(pid) - cpu_before) / IDLE_SAMPLE.as_secs_f64();

    // A Local Service's endpoints move on by one node: its first node withdraws its route,
    // the node after its last announces it; no other node's view changes.
    let local: Vec<usize> = (0..services)
        .filter(|&n| !layout.is_cluster(n))
        .step_by(((services - services.div_ceil(cluster_every)) / change_count.max(1)).max(1))
        .take(change_count)
        .collect();
    if local.len() < change_count {
        fail("too few Local Services for the changes");
    }
    let batch = local.iter().map(|&n| {
        let first = layout.first_node(n);
        let affected = vec![first, (first + ENDPOINT_NODES) % nodes];
        (layout.service(n, first + 1, true), affected)
    });
    let started = Instant::now();
    let (local_latencies, local_cpu) =
        changes(&mut writer, &board, pid, "a Local Service's endpoints moved", batch).await;
    let local_elapsed = started.elapsed().as_secs_f64();

    eprintln!("{nodes} nodes: Local changes measured");
    // A Cluster Service loses its last ready endpoint: every node withdraws its route.
    let cluster: Vec<usize> =
        (0..services).filter(|&n| layout.is_cluster(n)).take(change_count).collect();
    let batch = cluster
        .iter()
        .map(|&n| (layout.service(n, layout.first_node(n), false), (0..nodes).collect()));
    let started = Instant::now();
    let (cluster_latencies, cluster_cpu) =
        changes(&mut writer, &board, pid, "a Cluster Service lost its endpoints", batch).await;
    let cluster_elapsed = started.elapsed().as_secs_f64();

    eprintln!("{nodes} nodes: Cluster changes measured");
    // A new configuration: LOCAL_PREF of every route changes, on every node.
    let mut new_config = Vec::new();
    let config_cpu = CpuShare::start(pid);
    for local_pref in [200, 100, 300] {
        let started = Instant::now();
        let request = pb::ApplyConfigRequest {
            config: Some(config(local_pref)),
            source: "bench".into(),
            ..Default::default()
        };
        let applied = writer
            .apply_config(request)
            .await
            .unwrap_or_else(|status| fail(&format!("ApplyConfig: {status}")));
        if !applied.into_inner().accepted {
            fail("the new configuration was refused");
        }
        let every: Vec<usize> = (0..nodes).collect();
        board
            .wait_until("every stream has the new configuration", |stamps| {
                Board::updated_after(stamps, &every, started).is_some()
            })
            .await;
        let last = Board::updated_after(&board.stamps.lock().unwrap(), &every, started);
        new_config.push(last.expect("waited for") - started);
        tokio::time::sleep(SETTLE).await;
    }
    let config_cpu = config_cpu.per(new_config.len());

    // Reconnect storm: every connection and stream dropped, then all reopened at once.
    for reader in &readers {
        reader.abort();
    }
    drop(readers);
    // Let the allocator see the streams end, as it would see a network blip.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let board = Board::new(nodes);
    let storm_cpu = CpuShare::start(pid);
    let (readers, storm) = open_all(&connectors, &board, nodes).await;
    let storm_cpu = storm_cpu.per(1);
    for reader in readers {
        reader.abort();
    }
    let mut allocator = allocator;
    let _ = allocator.daemon.terminate(Duration::from_secs(30));

    let per_change =
        |cpu: f64, elapsed: f64, count: usize| (cpu - idle_cpu * elapsed) / count as f64 * 1e3;
    Figures {
        nodes,
        first_open,
        local: percentiles(local_latencies),
        local_cpu_ms: per_change(local_cpu, local_elapsed, local.len()),
        local_cpu_raw_ms: local_cpu / local.len() as f64 * 1e3,
        cluster: percentiles(cluster_latencies),
        cluster_cpu_ms: per_change(cluster_cpu, cluster_elapsed, cluster.len()),
        idle_cpu,
        rss_mib: rss,
        new_config,
        config_cpu,
        storm,
        storm_cpu,
    }
}

#[tokio::main]
async fn main() {
    let counts = node_counts();
    let services = env_number("METALLB_SCALE_SERVICES", 20_000);
    let change_count = env_number("METALLB_SCALE_CHANGES", 50);
    let cluster_every = env_number("METALLB_SCALE_CLUSTER_EVERY", 10).max(1);
    let most = counts.iter().copied().max().unwrap_or_else(|| fail("no node counts"));
    // This process's connections, the allocator's, and some to spare.
    ensure_descriptors(2 * most as u64 + 256);

    let logs = tempfile::tempdir().unwrap();
    let control_plane =
        ControlPlane::start().await.unwrap_or_else(|err| fail(&format!("control plane: {err:#}")));
    let trust = Trust::new(&control_plane, &[])
        .await
        .unwrap_or_else(|err| fail(&format!("trust: {err:#}")));
    let client = control_plane.client().await;
    let names: Vec<String> = (0..most).map(node_name).collect();
    let started = Instant::now();
    let tokens = trust
        .announcer_token_files(&client, &names, 16)
        .await
        .unwrap_or_else(|err| fail(&format!("announcer tokens: {err:#}")));
    eprintln!("{most} announcer pods and tokens in {:.1} s", started.elapsed().as_secs_f64());

    let mut all = Vec::new();
    for &nodes in &counts {
        let f = measure(nodes, services, change_count, cluster_every, &trust, &tokens, logs.path())
            .await;
        let cluster_services = services.div_ceil(cluster_every);
        println!(
            "{nodes} nodes x {services} Services ({cluster_services} Cluster, the rest Local on {ENDPOINT_NODES} nodes each), one stream per node:"
        );
        println!(
            "  first connect of every stream, {OPENERS} at a time: all {nodes} hold a snapshot after {:.2} s",
            f.first_open.as_secs_f64()
        );
        println!(
            "  allocator RSS: {:.1} MiB; idle CPU (heartbeats): {:.1}% of a core",
            f.rss_mib,
            f.idle_cpu * 100.0
        );
        let (p50, p99, max) = f.local;
        println!(
            "  a Local Service's endpoint moves (2 streams affected), {change_count} changes: UpsertService to the last affected stream's delta p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms; allocator CPU {:.1} ms per change ({:.1} ms before subtracting idle)",
            f.local_cpu_ms, f.local_cpu_raw_ms
        );
        let (p50, p99, max) = f.cluster;
        println!(
            "  a Cluster Service loses its endpoints (all {nodes} streams affected), {change_count} changes: p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms; allocator CPU {:.1} ms per change",
            f.cluster_cpu_ms
        );
        let configs: Vec<String> =
            f.new_config.iter().map(|d| format!("{:.2} s", d.as_secs_f64())).collect();
        println!(
            "  a new configuration (LOCAL_PREF of every route): every stream updated after {}; CPU per configuration: allocator {:.2} s, simulated announcers {:.2} s",
            configs.join(", "),
            f.config_cpu.0,
            f.config_cpu.1
        );
        println!(
            "  reconnect storm: all {nodes} connections and streams reopened at once: every stream holds a snapshot after {:.2} s; CPU: allocator {:.2} s, simulated announcers {:.2} s",
            f.storm.as_secs_f64(),
            f.storm_cpu.0,
            f.storm_cpu.1
        );
        all.push(f);
    }
    if all.len() > 1 {
        let (few, many) = (&all[0], &all[all.len() - 1]);
        println!(
            "CPU per Local change: {:.1} ms at {} nodes, {:.1} ms at {} nodes ({:.1}x for {:.0}x the nodes, the affected streams the same 2)",
            few.local_cpu_ms,
            few.nodes,
            many.local_cpu_ms,
            many.nodes,
            many.local_cpu_ms / few.local_cpu_ms,
            many.nodes as f64 / few.nodes as f64
        );
    }
}
