//! The watcher's Prometheus metrics. The watcher is metallb-rs's Kubernetes client, so it
//! exports MetalLB's `metallb_k8s_client_*` series with their meaning there (MetalLB's
//! controller and speakers export them); the write-back series are ours. `docs/metrics.md`
//! lists them all.
//!
//! Only the leading watcher reads the configuration and has the allocator judge it, so only
//! the leader exports the two `config_*` gauges: a standby replica showing "not loaded" would
//! set off every alert on them, and a former leader would show a stale word.

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicI64, Ordering},
    },
    time::Duration,
};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::ConstGauge,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WriteLabels {
    write: &'static str,
}

/// Cheap to clone; all clones share the series.
#[derive(Clone, Debug)]
pub struct WatcherMetrics {
    updates: Counter,
    update_errors: Counter,
    config: Arc<ConfigGauges>,
    write_duration: Family<WriteLabels, Histogram>,
    write_queue_depth: Gauge,
}

impl Default for WatcherMetrics {
    fn default() -> Self {
        Self {
            updates: Counter::default(),
            update_errors: Counter::default(),
            config: Arc::default(),
            // 1 ms to about 65 s: one patch, or one throttled by the API server.
            write_duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.001, 4.0, 9))
            }),
            write_queue_depth: Gauge::default(),
        }
    }
}

impl WatcherMetrics {
    /// Creates the metrics and registers them.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        // prometheus-client appends _total to counters.
        registry.register(
            "metallb_k8s_client_updates",
            "Number of Kubernetes object updates (added, changed, deleted, listed) processed",
            metrics.updates.clone(),
        );
        registry.register(
            "metallb_k8s_client_update_errors",
            "Number of Kubernetes updates that failed: watch errors, failed reconcile passes \
             and failed write-backs",
            metrics.update_errors.clone(),
        );
        registry.register_collector(Box::new(metrics.config.clone()));
        registry.register(
            "metallb_watcher_writeback_duration_seconds",
            "Time to write one outcome back to Kubernetes, by write (status, details, clear)",
            metrics.write_duration.clone(),
        );
        registry.register(
            "metallb_watcher_write_queue_depth",
            "Write-backs waiting to start (a Service's status, or its annotation and Event)",
            metrics.write_queue_depth.clone(),
        );
        metrics
    }

    /// Counts one object update from a watch.
    pub fn update(&self) {
        self.updates.inc();
    }

    /// Counts one failure.
    pub fn update_error(&self) {
        self.update_errors.inc();
    }

    /// Records what became of the latest configuration: in force (`valid`), or not, which
    /// leaves the previous one in force.
    pub fn config_outcome(&self, valid: bool) {
        if valid {
            self.config.loaded.store(1, Ordering::Relaxed);
        }
        self.config.stale.store(i64::from(!valid), Ordering::Relaxed);
        self.config.shown.store(true, Ordering::Relaxed);
    }

    /// This watcher stopped leading: its word on the configuration is no longer the one that
    /// counts, so the `config_*` gauges go until it leads again and hears of it afresh.
    pub fn standing_by(&self) {
        self.config.shown.store(false, Ordering::Relaxed);
        self.config.loaded.store(0, Ordering::Relaxed);
        self.config.stale.store(0, Ordering::Relaxed);
    }

    /// Records one write-back of kind `write` that took `elapsed`.
    pub fn wrote(&self, write: &'static str, elapsed: Duration) {
        self.write_duration.get_or_create(&WriteLabels { write }).observe(elapsed.as_secs_f64());
    }

    /// Sets the number of write-backs waiting.
    pub fn queue_depth(&self, depth: usize) {
        self.write_queue_depth.set(i64::try_from(depth).unwrap_or(i64::MAX));
    }
}

/// `metallb_k8s_client_config_loaded_bool` and `_stale_bool`, exported only while shown.
#[derive(Debug, Default)]
struct ConfigGauges {
    shown: AtomicBool,
    loaded: AtomicI64,
    stale: AtomicI64,
}

impl Collector for ConfigGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        if !self.shown.load(Ordering::Relaxed) {
            return Ok(());
        }
        let gauges = [
            (
                "metallb_k8s_client_config_loaded_bool",
                "1 if the MetalLB configuration was loaded (read and accepted by the allocator) \
                 at least once since this watcher became the leader",
                &self.loaded,
            ),
            (
                "metallb_k8s_client_config_stale_bool",
                "1 if running on a stale configuration, because the latest one could not be \
                 read or was rejected",
                &self.stale,
            ),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(value.load(Ordering::Relaxed));
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrape(registry: &Registry) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
        text
    }

    #[test]
    fn the_k8s_client_series_follow_updates_and_the_configuration() {
        let mut registry = Registry::default();
        let metrics = WatcherMetrics::register(&mut registry);
        let text = scrape(&registry);
        for expected in [
            "metallb_k8s_client_updates_total 0",
            "metallb_k8s_client_update_errors_total 0",
            "metallb_watcher_write_queue_depth 0",
        ] {
            assert!(text.contains(expected), "{expected} missing:\n{text}");
        }
        assert!(!text.contains("metallb_k8s_client_config"), "not before leading: {text}");
        metrics.update();
        metrics.update();
        metrics.update_error();
        metrics.config_outcome(false);
        let text = scrape(&registry);
        assert!(text.contains("metallb_k8s_client_updates_total 2"), "{text}");
        assert!(text.contains("metallb_k8s_client_update_errors_total 1"), "{text}");
        assert!(text.contains("metallb_k8s_client_config_loaded_bool 0"), "{text}");
        assert!(text.contains("metallb_k8s_client_config_stale_bool 1"), "{text}");
        metrics.config_outcome(true);
        metrics.config_outcome(false);
        let text = scrape(&registry);
        assert!(text.contains("metallb_k8s_client_config_loaded_bool 1"), "loaded once: {text}");
        assert!(text.contains("metallb_k8s_client_config_stale_bool 1"), "{text}");
        metrics.config_outcome(true);
        assert!(scrape(&registry).contains("metallb_k8s_client_config_stale_bool 0"));
        metrics.standing_by();
        assert!(!scrape(&registry).contains("metallb_k8s_client_config"), "gone on standby");
        metrics.config_outcome(false);
        let text = scrape(&registry);
        assert!(text.contains("metallb_k8s_client_config_loaded_bool 0"), "afresh: {text}");
        assert!(text.contains("metallb_k8s_client_config_stale_bool 1"), "{text}");

        metrics.wrote("status", Duration::from_millis(3));
        metrics.queue_depth(7);
        let text = scrape(&registry);
        assert!(
            text.contains(r#"metallb_watcher_writeback_duration_seconds_count{write="status"} 1"#),
            "{text}"
        );
        assert!(text.contains("metallb_watcher_write_queue_depth 7"), "{text}");
    }
}
