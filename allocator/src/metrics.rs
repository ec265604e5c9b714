//! The allocator's Prometheus metrics, under the names MetalLB uses so existing dashboards
//! keep working.

use std::sync::atomic::AtomicU64;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{family::Family, gauge::Gauge},
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

/// Gauges refreshed after every change.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    addresses_total: Family<PoolLabels, Gauge<f64, AtomicU64>>,
    addresses_in_use: Family<PoolLabels, Gauge<f64, AtomicU64>>,
    config_loaded: Gauge,
    config_stale: Gauge,
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
        metrics
    }

    /// Sets every gauge from `state`.
    pub fn update(&self, state: &AllocatorState) {
        self.addresses_total.clear();
        self.addresses_in_use.clear();
        if let Some(config) = state.config() {
            for pool in config.pools.values() {
                let (mut size, mut used) = (0u128, 0u128);
                for family in [IpFamily::V4, IpFamily::V6] {
                    let (family_size, family_used) =
                        family_size_and_use(pool, family, state.leases());
                    size = size.saturating_add(family_size);
                    used += family_used;
                }
                let labels = PoolLabels { pool: pool.name.clone() };
                // Floats: an IPv6 pool easily holds more than 2^53 addresses.
                self.addresses_total.get_or_create(&labels).set(size as f64);
                self.addresses_in_use.get_or_create(&labels).set(used as f64);
            }
        }
        self.config_loaded.set(i64::from(state.config().is_some()));
        self.config_stale.set(i64::from(state.config_is_stale()));
    }
}
