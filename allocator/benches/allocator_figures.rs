//! Allocator figures (a bench binary that prints them, not a timed test):
//! in-process allocate/release throughput, 100k services from an IPv4 and an IPv6 pool,
//! memory per lease, and UpsertService RPC throughput and latency over loopback with many
//! concurrent clients.
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
use metallb_process::Readiness;
use metallb_proto::pb::{self, allocator_client::AllocatorClient};
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

async fn rpc() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut registry = Registry::default();
    let (health, health_service) = tonic_health::server::health_reporter();
    let core = Core::new(Metrics::register(&mut registry), Readiness::new("bench"), health).await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve_grpc(
        listener,
        core,
        health_service,
        Security::insecure(),
        async move {
            let _ = stopped.await;
        },
    ));

    let endpoint = format!("http://{addr}");
    let mut setup = AllocatorClient::connect(endpoint.clone()).await.unwrap();
    let request = pb::ApplyConfigRequest { config: Some(config()), ..Default::default() };
    assert!(setup.apply_config(request).await.unwrap().into_inner().accepted);
    setup.sync_services(pb::SyncServicesRequest::default()).await.unwrap();

    // A few HTTP/2 connections shared by many concurrent callers.
    let mut channels = Vec::new();
    for _ in 0..8 {
        let endpoint = tonic::transport::Endpoint::from_shared(endpoint.clone()).unwrap();
        channels.push(endpoint.connect().await.unwrap());
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client in 0..RPC_CLIENTS {
        let mut stub = AllocatorClient::new(channels[client % channels.len()].clone());
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
        "UpsertService over loopback: {} calls from {RPC_CLIENTS} concurrent clients on 8 connections in {:.2} s: \
         {:.0} RPC/s, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        latencies.len(),
        elapsed.as_secs_f64(),
        per_second(latencies.len(), elapsed),
        quantile(0.50).as_secs_f64() * 1e3,
        quantile(0.99).as_secs_f64() * 1e3,
        latencies.last().unwrap().as_secs_f64() * 1e3,
    );
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
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
    tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(rpc());
}
