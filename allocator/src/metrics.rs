//! The allocator's Prometheus metrics: the pool series under the names MetalLB's controller
//! uses so existing dashboards keep working, and our own (gRPC calls, assignment streams) in
//! the same style. `docs/metrics.md` lists them all.

use std::{sync::atomic::AtomicU64, time::Duration};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

use crate::{
    address::Family as IpFamily,
    state::{AllocatorState, family_size_and_use},
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    pool: String,
}

type PoolGauge = Family<PoolLabels, Gauge<f64, AtomicU64>>;

/// Gauges refreshed after every change, and the gRPC and stream metrics.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    addresses_total: PoolGauge,
    addresses_in_use: PoolGauge,
    ipv4_addresses_total: PoolGauge,
    ipv4_addresses_in_use: PoolGauge,
    ipv6_addresses_total: PoolGauge,
    ipv6_addresses_in_use: PoolGauge,
    services_allocated: Family<PoolLabels, Gauge>,
    config_loaded: Gauge,
    config_stale: Gauge,
    grpc: GrpcMetrics,
    streams: StreamMetrics,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GrpcLabels {
    method: String,
    code: String,
}

/// Buckets from 100 µs to about 26 s, for gRPC calls and stream lag alike.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 4.0, 10))
}

/// Every gRPC call the server answered, by method and status code.
#[derive(Clone, Debug)]
pub struct GrpcMetrics {
    duration: Family<GrpcLabels, Histogram>,
    errors: Family<GrpcLabels, Counter>,
}

impl Default for GrpcMetrics {
    fn default() -> Self {
        Self {
            duration: Family::new_with_constructor(latency_histogram),
            errors: Family::default(),
        }
    }
}

impl GrpcMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "metallb_allocator_grpc_request_duration_seconds",
            "Time from a gRPC call's arrival to its response headers (for a stream: to its \
             start), by method and status code",
            self.duration.clone(),
        );
        // prometheus-client appends _total to counters.
        registry.register(
            "metallb_allocator_grpc_errors",
            "gRPC calls answered with a status other than OK, by method and status code",
            self.errors.clone(),
        );
    }

    /// Records one call of `method` (the last part of the path) answered with `code` (the
    /// gRPC status code's name) after `elapsed`.
    pub fn observe(&self, method: &str, code: tonic::Code, elapsed: Duration) {
        let labels = GrpcLabels { method: method.to_string(), code: code_name(code).to_string() };
        self.duration.get_or_create(&labels).observe(elapsed.as_secs_f64());
        if code != tonic::Code::Ok {
            self.errors.get_or_create(&labels).inc();
        }
    }
}

/// The status code's name as gRPC spells it (`NOT_FOUND`), as other gRPC metrics label it.
fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

/// The announcers' assignment streams: how many are open, and how long a change takes to go
/// out on them.
#[derive(Clone, Debug)]
pub struct StreamMetrics {
    open: Gauge,
    lag: Histogram,
}

impl Default for StreamMetrics {
    fn default() -> Self {
        Self { open: Gauge::default(), lag: latency_histogram() }
    }
}

impl StreamMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "metallb_allocator_assignment_streams",
            "Assignment streams open to announcers",
            self.open.clone(),
        );
        registry.register(
            "metallb_allocator_assignment_stream_lag_seconds",
            "Time from a change of the allocator's state to the update it caused being handed \
             to a node's assignment stream",
            self.lag.clone(),
        );
    }

    /// Counts a stream as open until the returned guard is dropped.
    pub fn opened(&self) -> OpenStream {
        self.open.inc();
        OpenStream { open: self.open.clone() }
    }

    /// Records that an update caused by a change `elapsed` ago was handed to a stream.
    pub fn sent(&self, elapsed: Duration) {
        self.lag.observe(elapsed.as_secs_f64());
    }
}

/// One open stream, counted in `metallb_allocator_assignment_streams` while it lives.
#[derive(Debug)]
pub struct OpenStream {
    open: Gauge,
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.open.dec();
    }
}

impl Metrics {
    /// Creates the metrics and registers them.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "metallb_allocator_addresses_total",
            "Number of usable IP addresses, per pool",
            metrics.addresses_total.clone(),
        );
        registry.register(
            "metallb_allocator_addresses_in_use_total",
            "Number of IP addresses in use, per pool",
            metrics.addresses_in_use.clone(),
        );
        let per_family = [
            (
                "metallb_allocator_ipv4_addresses_total",
                "Number of usable IPv4 addresses, per pool",
                &metrics.ipv4_addresses_total,
            ),
            (
                "metallb_allocator_ipv4_addresses_in_use_total",
                "Number of IPv4 addresses in use, per pool",
                &metrics.ipv4_addresses_in_use,
            ),
            (
                "metallb_allocator_ipv6_addresses_total",
                "Number of usable IPv6 addresses, per pool",
                &metrics.ipv6_addresses_total,
            ),
            (
                "metallb_allocator_ipv6_addresses_in_use_total",
                "Number of IPv6 addresses in use, per pool",
                &metrics.ipv6_addresses_in_use,
            ),
        ];
        for (name, help, family) in per_family {
            registry.register(name, help, family.clone());
        }
        registry.register(
            "metallb_allocator_services_allocated_total",
            "Number of services given IPs from the pool (services sharing an IP each count)",
            metrics.services_allocated.clone(),
        );
        registry.register(
            "metallb_k8s_client_config_loaded_bool",
            "1 if a configuration has been loaded and is in force",
            metrics.config_loaded.clone(),
        );
        registry.register(
            "metallb_k8s_client_config_stale_bool",
            "1 if the configuration in force is not the last one offered (it was rejected or waits)",
            metrics.config_stale.clone(),
        );
        metrics.grpc.register(registry);
        metrics.streams.register(registry);
        metrics
    }

    /// The gRPC call metrics, for the server's layer.
    pub fn grpc(&self) -> GrpcMetrics {
        self.grpc.clone()
    }

    /// The assignment stream metrics.
    pub fn streams(&self) -> StreamMetrics {
        self.streams.clone()
    }

    /// Sets every gauge from `state`. A pool no longer configured loses its series.
    pub fn update(&self, state: &AllocatorState) {
        let pool_gauges = [
            &self.addresses_total,
            &self.addresses_in_use,
            &self.ipv4_addresses_total,
            &self.ipv4_addresses_in_use,
            &self.ipv6_addresses_total,
            &self.ipv6_addresses_in_use,
        ];
        for family in pool_gauges {
            family.clear();
        }
        self.services_allocated.clear();
        if let Some(config) = state.config() {
            // Every figure here is kept by the leases (held addresses by run, leases by pool):
            // this runs on every change, and must not walk every lease.
            for pool in config.pools.values() {
                let labels = PoolLabels { pool: pool.name.clone() };
                let (v4_size, v4_used) = family_size_and_use(pool, IpFamily::V4, state.leases());
                let (v6_size, v6_used) = family_size_and_use(pool, IpFamily::V6, state.leases());
                // Floats: an IPv6 pool easily holds more than 2^53 addresses.
                let set = |family: &PoolGauge, value: u128| {
                    family.get_or_create(&labels).set(value as f64);
                };
                set(&self.addresses_total, v4_size.saturating_add(v6_size));
                set(&self.addresses_in_use, v4_used + v6_used);
                set(&self.ipv4_addresses_total, v4_size);
                set(&self.ipv4_addresses_in_use, v4_used);
                set(&self.ipv6_addresses_total, v6_size);
                set(&self.ipv6_addresses_in_use, v6_used);
                let allocated = state.leases().count_in_pool(&pool.name);
                self.services_allocated.get_or_create(&labels).set(allocated as i64);
            }
        }
        self.config_loaded.set(i64::from(state.config().is_some()));
        self.config_stale.set(i64::from(state.config_is_stale()));
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use metallb_proto::pb;

    use super::*;
    use crate::service_spec::ServiceSpec;

    fn scrape(registry: &Registry) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
        text
    }

    fn service(name: &str, families: &[pb::IpFamily]) -> ServiceSpec {
        ServiceSpec::from_pb(&pb::Service {
            key: Some(pb::ServiceKey { namespace: "default".into(), name: name.into() }),
            ip_families: families.iter().map(|family| *family as i32).collect(),
            ip_family_policy: if families.len() > 1 {
                pb::IpFamilyPolicy::RequireDualStack as i32
            } else {
                pb::IpFamilyPolicy::SingleStack as i32
            },
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn pool_series_per_family_and_services_follow_the_leases() {
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        let mut state = AllocatorState::default();
        let config = pb::Config {
            pools: vec![pb::AddressPool {
                name: "dual".into(),
                addresses: vec!["192.0.2.0/28".into(), "2001:db8::/124".into()],
                auto_assign: true,
                ..Default::default()
            }],
            ..Default::default()
        };
        assert!(state.apply_config(&config, "test", SystemTime::now()).accepted);
        state.sync(vec![], SystemTime::now());
        metrics.update(&state);
        let text = scrape(&registry);
        for expected in [
            r#"metallb_allocator_addresses_total{pool="dual"} 32.0"#,
            r#"metallb_allocator_ipv4_addresses_total{pool="dual"} 16.0"#,
            r#"metallb_allocator_ipv6_addresses_total{pool="dual"} 16.0"#,
            r#"metallb_allocator_ipv4_addresses_in_use_total{pool="dual"} 0.0"#,
            r#"metallb_allocator_services_allocated_total{pool="dual"} 0"#,
            "metallb_k8s_client_config_loaded_bool 1",
            "metallb_k8s_client_config_stale_bool 0",
        ] {
            assert!(text.contains(expected), "{expected} missing:\n{text}");
        }

        let both = [pb::IpFamily::Ipv4, pb::IpFamily::Ipv6];
        state.upsert(service("dual-stack", &both), SystemTime::now()).result.unwrap();
        state.upsert(service("v6", &[pb::IpFamily::Ipv6]), SystemTime::now()).result.unwrap();
        metrics.update(&state);
        let text = scrape(&registry);
        for expected in [
            r#"metallb_allocator_addresses_in_use_total{pool="dual"} 3.0"#,
            r#"metallb_allocator_ipv4_addresses_in_use_total{pool="dual"} 1.0"#,
            r#"metallb_allocator_ipv6_addresses_in_use_total{pool="dual"} 2.0"#,
            r#"metallb_allocator_services_allocated_total{pool="dual"} 2"#,
        ] {
            assert!(text.contains(expected), "{expected} missing:\n{text}");
        }
    }

    #[test]
    fn grpc_calls_and_streams_are_counted() {
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        let grpc = metrics.grpc();
        grpc.observe("ListPools", tonic::Code::Ok, Duration::from_millis(2));
        grpc.observe("GetNodeAssignments", tonic::Code::NotFound, Duration::from_millis(1));
        grpc.observe("GetNodeAssignments", tonic::Code::NotFound, Duration::from_millis(1));
        let streams = metrics.streams();
        let first = streams.opened();
        let second = streams.opened();
        streams.sent(Duration::from_millis(30));
        drop(first);
        let text = scrape(&registry);
        for expected in [
            r#"metallb_allocator_grpc_request_duration_seconds_count{method="ListPools",code="OK"} 1"#,
            r#"metallb_allocator_grpc_request_duration_seconds_count{method="GetNodeAssignments",code="NOT_FOUND"} 2"#,
            r#"metallb_allocator_grpc_errors_total{method="GetNodeAssignments",code="NOT_FOUND"} 2"#,
            "metallb_allocator_assignment_streams 1",
            "metallb_allocator_assignment_stream_lag_seconds_count 1",
        ] {
            assert!(text.contains(expected), "{expected} missing:\n{text}");
        }
        assert!(!text.contains(r#"errors_total{method="ListPools""#), "{text}");
        drop(second);
        assert!(scrape(&registry).contains("metallb_allocator_assignment_streams 0"));
    }
}
