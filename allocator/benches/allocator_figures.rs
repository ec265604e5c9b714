//! Allocator figures (a bench binary that prints them, not a timed test):
//! in-process allocate/release throughput, 100k services from an IPv4 and an IPv6 pool,
//! memory per lease, UpsertService RPC throughput and latency over loopback with many
//! concurrent clients (plaintext, and with TLS and token verification on), and the cost of a
//! new announcer connection.
//!
//! Run: `cargo bench -p metallb-allocator --bench allocator_figures`

use std::time::{Duration, Instant, SystemTime};

use metallb_allocator::{
    core::Core,
    leases::{Lease, Leases},
    metrics::Metrics,
    server::{Security, serve_grpc},
    service_spec::{ServiceKey, ServiceSpec},
    state::AllocatorState,
};
use metallb_process::{
    AllocatorClientArgs, AllocatorConnector, Readiness, allocator_client::Client,
};
use metallb_proto::pb;
use secured_client::{CONNECT_TIMEOUT, Secured};

#[path = "support/secured_client.rs"]
mod secured_client;
use prometheus_client::registry::Registry;

const SERVICES: usize = 100_000;
const RPC_CLIENTS: usize = 64;
const RPC_CALLS_PER_CLIENT: usize = 500;

fn config() -> pb::Config {
    pb::Config {
        pools: vec![
            pb::AddressPool {
                name: "v4".into(),
                addresses: vec!["198.18.0.0/15".into()],
                auto_assign: true,
                ..Default::default()
            },
            pb::AddressPool {
                name: "v6".into(),
                addresses: vec!["2001:db8::/64".into()],
                auto_assign: false,
                ..Default::default()
            },
        ],
        ..Default::default()
    }
}

fn service(n: usize, v6: bool) -> pb::Service {
    pb::Service {
        key: Some(pb::ServiceKey { namespace: format!("ns{}", n % 100), name: format!("svc-{n}") }),
        pool: if v6 { "v6".into() } else { String::new() },
        ip_families: vec![if v6 { pb::IpFamily::Ipv6 } else { pb::IpFamily::Ipv4 } as i32],
        ports: vec![pb::ServicePort { port: 80, protocol: pb::Protocol::Tcp as i32 }],
        has_ready_endpoints: true,
        ..Default::default()
    }
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    pages * 4096
}

fn per_second(count: usize, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64()
}

fn in_process(v6: bool) {
    let family = if v6 { "IPv6 /64" } else { "IPv4 /15" };
    let specs: Vec<ServiceSpec> =
        (0..SERVICES).map(|n| ServiceSpec::from_pb(&service(n, v6)).unwrap()).collect();
    let keys: Vec<_> = specs.iter().map(|spec| spec.key.clone()).collect();
    let now = SystemTime::now();
    let mut state = AllocatorState::default();
    assert!(state.apply_config(&config(), "bench", now).accepted);
    state.sync(vec![], now);

    // The specs move into the state, so the growth counts what the state keeps per service.
    let rss_before = rss_bytes();
    let started = Instant::now();
    for spec in specs {
        state.upsert(spec, now).result.expect("allocation");
    }
    let allocate = started.elapsed();
    let rss_after = rss_bytes();
    assert_eq!(state.leases().len(), SERVICES);

    let started = Instant::now();
    for key in &keys {
        state.delete(key, now);
    }
    let release = started.elapsed();
    assert!(state.leases().is_empty());

    println!(
        "in-process {family}: {SERVICES} allocations in {:.3} s ({:.0}/s), {SERVICES} releases in {:.3} s \
         ({:.0}/s), allocate+release {:.0} ops/s; RSS growth {:.0} bytes per service (lease, indexes, service record)",
        allocate.as_secs_f64(),
        per_second(SERVICES, allocate),
        release.as_secs_f64(),
        per_second(SERVICES, release),
        per_second(2 * SERVICES, allocate + release),
        rss_after.saturating_sub(rss_before) as f64 / SERVICES as f64,
    );
}

/// How the bench's clients reach the allocator.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// `--insecure`: plaintext, no token.
    Plaintext,
    /// TLS, every call with a token verified against the issuer's key.
    Secured,
}

/// A served allocator with its configuration applied and its first sync done.
struct Served {
    endpoint: String,
    secured: Option<Secured>,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Served {
    async fn start(mode: Mode) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut registry = Registry::default();
        let (health, health_service) = tonic_health::server::health_reporter();
        let core =
            Core::new(Metrics::register(&mut registry), Readiness::new("bench"), health).await;
        let (security, secured, endpoint) = match mode {
            Mode::Plaintext => (Security::insecure(), None, format!("http://{addr}")),
            Mode::Secured => {
                let secured = Secured::create();
                (secured.security().await, Some(secured), format!("https://{addr}"))
            }
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server =
            tokio::spawn(serve_grpc(listener, core, health_service, security, async move {
                let _ = stopped.await;
            }));
        let served = Self { endpoint, secured, stop, server };
        let mut setup = served.client("metallb-watcher", None).await;
        let request = pb::ApplyConfigRequest { config: Some(config()), ..Default::default() };
        assert!(setup.apply_config(request).await.unwrap().into_inner().accepted);
        setup.sync_services(pb::SyncServicesRequest::default()).await.unwrap();
        let node = pb::Node { name: "bench-node".into(), ..Default::default() };
        let request = pb::UpdateNodeRequest { node: Some(node), ..Default::default() };
        setup.update_node(request).await.unwrap();
        served
    }

    fn connector(&self, account: &str, node: Option<&str>) -> AllocatorConnector {
        match &self.secured {
            Some(secured) => secured.connector(&self.endpoint, &secured.token_file(account, node)),
            None => AllocatorConnector::new(&AllocatorClientArgs {
                allocator_endpoint: vec![self.endpoint.clone()],
                allocator_ca_file: Default::default(),
                allocator_server_name: None,
                allocator_token_file: Default::default(),
                insecure: true,
            })
            .unwrap(),
        }
    }

    async fn client(&self, account: &str, node: Option<&str>) -> Client {
        self.connector(account, node).connect(CONNECT_TIMEOUT).await.unwrap()
    }

    async fn stop(self) {
        self.stop.send(()).unwrap();
        self.server.await.unwrap().unwrap();
    }
}

fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Plaintext => "plaintext, no token",
        Mode::Secured => "TLS + token verified",
    }
}

async fn rpc(mode: Mode) {
    let served = Served::start(mode).await;
    // A few HTTP/2 connections shared by many concurrent callers.
    let mut clients = Vec::new();
    for _ in 0..8 {
        clients.push(served.client("metallb-watcher", None).await);
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client in 0..RPC_CLIENTS {
        let mut stub = clients[client % clients.len()].clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(RPC_CALLS_PER_CLIENT);
            for call in 0..RPC_CALLS_PER_CLIENT {
                let n = client * RPC_CALLS_PER_CLIENT + call;
                let request =
                    pb::UpsertServiceRequest { service: Some(service(n, n % 2 == 1)), trace: None };
                let sent = Instant::now();
                let response = stub.upsert_service(request).await.expect("UpsertService");
                latencies.push(sent.elapsed());
                assert!(matches!(
                    response.into_inner().outcome.and_then(|o| o.outcome),
                    Some(pb::service_outcome::Outcome::Lease(_))
                ));
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let quantile =
        |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    println!(
        "UpsertService over loopback ({}): {} calls from {RPC_CLIENTS} concurrent clients on 8 connections in {:.2} s: \
         {:.0} RPC/s, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        mode_name(mode),
        latencies.len(),
        elapsed.as_secs_f64(),
        per_second(latencies.len(), elapsed),
        quantile(0.50).as_secs_f64() * 1e3,
        quantile(0.99).as_secs_f64() * 1e3,
        latencies.last().unwrap().as_secs_f64() * 1e3,
    );
    served.stop().await;
}

/// What a new announcer connection costs: connect (TCP, and TLS handshake when secured),
/// open WatchAssignments (token verified) and receive the first snapshot, one after another.
async fn announcer_connections(mode: Mode) {
    const CONNECTIONS: usize = 200;
    let served = Served::start(mode).await;
    let connector = served.connector("metallb-announcer", Some("bench-node"));
    let mut costs = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        let started = Instant::now();
        let mut client = connector.connect(CONNECT_TIMEOUT).await.unwrap();
        let request = pb::WatchAssignmentsRequest { node_name: "bench-node".into() };
        let mut stream = client.watch_assignments(request).await.unwrap().into_inner();
        stream.message().await.unwrap().expect("a snapshot");
        costs.push(started.elapsed());
    }
    costs.sort();
    let mean = costs.iter().sum::<Duration>() / CONNECTIONS as u32;
    println!(
        "new announcer connection ({}), connect to first snapshot, {CONNECTIONS} in a row: mean {:.2} ms, p99 {:.2} ms",
        mode_name(mode),
        mean.as_secs_f64() * 1e3,
        costs[CONNECTIONS * 99 / 100].as_secs_f64() * 1e3,
    );
    served.stop().await;
}

/// Bytes the lease table costs per lease: everything a lease allocates, measured in a fresh
/// heap before anything else runs.
fn lease_table_memory() {
    let before = rss_bytes();
    let mut leases = Leases::default();
    for n in 0..SERVICES {
        let ip = std::net::Ipv4Addr::from(0xc612_0000u32 + n as u32);
        leases.insert(Lease {
            service: ServiceKey {
                namespace: format!("ns{}", n % 100).into(),
                name: format!("svc-{n}").into(),
            },
            ips: vec![ip.into()],
            pool: "v4".to_string(),
            sharing: None,
            assigned_at: SystemTime::now(),
        });
    }
    let growth = rss_bytes().saturating_sub(before);
    println!(
        "lease table: {} leases, RSS growth {:.0} bytes per lease (lease, service index, address index, runs)",
        leases.len(),
        growth as f64 / SERVICES as f64
    );
}

fn main() {
    lease_table_memory();
    in_process(false);
    in_process(true);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        for mode in [Mode::Plaintext, Mode::Secured] {
            rpc(mode).await;
        }
        for mode in [Mode::Plaintext, Mode::Secured] {
            announcer_connections(mode).await;
        }
    });
}
