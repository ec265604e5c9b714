//! The announcer's Prometheus metrics, under the names MetalLB's speaker uses.

use std::{collections::HashMap, sync::atomic::AtomicU64};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

use crate::bgp::{fsm::State, session::SessionStatus};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerLabels {
    peer: String,
}

/// BGP session metrics, per peer `ip:port` (`[ip]:port` for IPv6), as MetalLB labels them: two
/// peers on one router address (different ports) are two series.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    session_up: Family<PeerLabels, Gauge>,
    updates: Family<PeerLabels, Counter<u64, AtomicU64>>,
    announced: Family<PeerLabels, Gauge>,
    pending: Family<PeerLabels, Gauge>,
    failures: Family<PeerLabels, Counter<u64, AtomicU64>>,
    /// The totals last seen per peer, (UPDATEs, failures): counters advance by the difference.
    seen: std::sync::Arc<std::sync::Mutex<HashMap<String, (u64, u64)>>>,
}

impl Metrics {
    /// Creates and registers the metrics.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "metallb_bgp_session_up",
            "1 while the BGP session with the peer is established",
            metrics.session_up.clone(),
        );
        // prometheus-client appends _total to counters.
        registry.register(
            "metallb_bgp_updates",
            "BGP UPDATE messages sent to the peer",
            metrics.updates.clone(),
        );
        registry.register(
            "metallb_bgp_announced_prefixes_total",
            "Prefixes currently advertised to the peer",
            metrics.announced.clone(),
        );
        registry.register(
            "metallb_bgp_session_failures",
            "Failed connection attempts and sessions lost (the reason is in ListSessions and the log)",
            metrics.failures.clone(),
        );
        registry.register(
            "metallb_bgp_pending_prefixes_total",
            "Prefixes that should be advertised to the peer but are not (session down, no next hop)",
            metrics.pending.clone(),
        );
        metrics
    }

    /// Records the statuses of every session.
    pub fn update(&self, statuses: &[(String, std::net::SocketAddr, SessionStatus)]) {
        let mut seen = self.seen.lock().expect("metrics lock poisoned");
        for (_, address, status) in statuses {
            let labels = PeerLabels { peer: address.to_string() };
            self.session_up
                .get_or_create(&labels)
                .set(i64::from(status.state == State::Established));
            self.announced.get_or_create(&labels).set(status.prefixes_sent as i64);
            self.pending.get_or_create(&labels).set(status.prefixes_pending as i64);
            let totals = (status.updates_sent, status.failures_total);
            let previous = seen.insert(labels.peer.clone(), totals).unwrap_or_default();
            self.updates.get_or_create(&labels).inc_by(totals.0.saturating_sub(previous.0));
            self.failures.get_or_create(&labels).inc_by(totals.1.saturating_sub(previous.1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_carry_metallbs_names_and_follow_the_sessions() {
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        // Two peers on one router address, on different ports; and an IPv6 peer.
        let first: std::net::SocketAddr = "192.0.2.1:179".parse().unwrap();
        let second: std::net::SocketAddr = "192.0.2.1:1179".parse().unwrap();
        let v6: std::net::SocketAddr = "[2001:db8::1]:179".parse().unwrap();
        let mut status = SessionStatus {
            state: State::Established,
            prefixes_sent: 3,
            prefixes_pending: 1,
            updates_sent: 2,
            ..Default::default()
        };
        let quiet = SessionStatus { state: State::Established, ..Default::default() };
        metrics.update(&[
            ("router".into(), first, status.clone()),
            ("router-b".into(), second, quiet.clone()),
            ("router-6".into(), v6, quiet.clone()),
        ]);
        status.updates_sent = 5;
        status.state = State::Idle;
        metrics.update(&[
            ("router".into(), first, status),
            ("router-b".into(), second, quiet.clone()),
            ("router-6".into(), v6, quiet),
        ]);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for expected in [
            r#"metallb_bgp_session_up{peer="192.0.2.1:179"} 0"#,
            r#"metallb_bgp_updates_total{peer="192.0.2.1:179"} 5"#,
            r#"metallb_bgp_announced_prefixes_total{peer="192.0.2.1:179"} 3"#,
            r#"metallb_bgp_pending_prefixes_total{peer="192.0.2.1:179"} 1"#,
            r#"metallb_bgp_session_up{peer="192.0.2.1:1179"} 1"#,
            r#"metallb_bgp_updates_total{peer="192.0.2.1:1179"} 0"#,
            r#"metallb_bgp_session_up{peer="[2001:db8::1]:179"} 1"#,
            r#"metallb_bgp_session_failures_total{peer="192.0.2.1:179"} 0"#,
        ] {
            assert!(text.contains(expected), "{expected} missing:\n{text}");
        }
    }
}
