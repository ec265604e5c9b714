//! The announcer's Prometheus metrics, under the names MetalLB's speaker uses.

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
    sync::atomic::AtomicU64,
};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

use crate::{
    bfd::BfdStatus,
    bgp::{fsm::State, session::SessionStatus},
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerLabels {
    peer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IpLabels {
    ip: String,
}

/// A session's (UPDATEs, failures, flaps) since the process started.
type Totals = (u64, u64, u64);

/// BGP session metrics, per peer `ip:port` (`[ip]:port` for IPv6), as MetalLB labels them: two
/// peers on one router address (different ports) are two series.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    session_up: Family<PeerLabels, Gauge>,
    updates: Family<PeerLabels, Counter<u64, AtomicU64>>,
    announced: Family<PeerLabels, Gauge>,
    pending: Family<PeerLabels, Gauge>,
    failures: Family<PeerLabels, Counter<u64, AtomicU64>>,
    flaps: Family<PeerLabels, Counter<u64, AtomicU64>>,
    /// The totals last seen per peer, (UPDATEs, failures, flaps): counters advance by the
    /// difference.
    seen: std::sync::Arc<std::sync::Mutex<HashMap<String, Totals>>>,
    stream_connected: Gauge,
    bfd: BfdMetrics,
    l2: L2Metrics,
}

/// Layer 2 mode's counts per IP, under MetalLB's names. MetalLB's are counters named without
/// `_total`, which prometheus-client would append to a counter; like the BFD totals they are
/// exported as gauges so that the names match exactly. They only ever go up.
#[derive(Clone, Debug, Default)]
pub struct L2Metrics {
    requests_received: Family<IpLabels, Gauge>,
    responses_sent: Family<IpLabels, Gauge>,
    gratuitous_sent: Family<IpLabels, Gauge>,
}

impl L2Metrics {
    /// Creates and registers the metrics; the announcer gets them from `Metrics::l2` instead
    /// (registering twice would export every series twice).
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        metrics.register_into(registry);
        metrics
    }

    fn register_into(&self, registry: &mut Registry) {
        let metrics = [
            (
                "metallb_layer2_requests_received",
                "ARP requests and neighbor solicitations received for an IP this node answers for",
                &self.requests_received,
            ),
            (
                "metallb_layer2_responses_sent",
                "ARP replies and neighbor advertisements sent in answer to them",
                &self.responses_sent,
            ),
            (
                "metallb_layer2_gratuitous_sent",
                "Gratuitous ARP and unsolicited neighbor advertisements sent for the IP",
                &self.gratuitous_sent,
            ),
        ];
        for (name, help, family) in metrics {
            registry.register(name, help, family.clone());
        }
    }

    /// Counts an ARP request or neighbor solicitation for owned `ip`.
    pub fn request_received(&self, ip: IpAddr) {
        self.requests_received.get_or_create(&IpLabels { ip: ip.to_string() }).inc();
    }

    /// Counts an answer sent for `ip`.
    pub fn response_sent(&self, ip: IpAddr) {
        self.responses_sent.get_or_create(&IpLabels { ip: ip.to_string() }).inc();
    }

    /// Counts a gratuitous ARP or unsolicited neighbor advertisement sent for `ip`.
    pub fn gratuitous_sent(&self, ip: IpAddr) {
        self.gratuitous_sent.get_or_create(&IpLabels { ip: ip.to_string() }).inc();
    }
}

/// BFD session metrics per peer address, under MetalLB's names (its FRR exporter's): totals
/// are exported as gauges so that the names match MetalLB's exactly, without `_total`.
#[derive(Clone, Debug, Default)]
struct BfdMetrics {
    session_up: Family<PeerLabels, Gauge>,
    control_packet_input: Family<PeerLabels, Gauge>,
    control_packet_output: Family<PeerLabels, Gauge>,
    session_up_events: Family<PeerLabels, Gauge>,
    session_down_events: Family<PeerLabels, Gauge>,
}

impl BfdMetrics {
    fn register(&self, registry: &mut Registry) {
        let metrics = [
            (
                "metallb_bfd_session_up",
                "1 while the BFD session with the peer is up",
                &self.session_up,
            ),
            (
                "metallb_bfd_control_packet_input",
                "BFD control packets received from the peer",
                &self.control_packet_input,
            ),
            (
                "metallb_bfd_control_packet_output",
                "BFD control packets sent to the peer",
                &self.control_packet_output,
            ),
            (
                "metallb_bfd_session_up_events",
                "Times the BFD session with the peer came up",
                &self.session_up_events,
            ),
            (
                "metallb_bfd_session_down_events",
                "Times the BFD session with the peer went down from up",
                &self.session_down_events,
            ),
        ];
        for (name, help, family) in metrics {
            registry.register(name, help, family.clone());
        }
    }

    fn update(&self, statuses: &BTreeMap<IpAddr, BfdStatus>) {
        let gauge = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
        for (address, status) in statuses {
            let labels = PeerLabels { peer: address.to_string() };
            self.session_up.get_or_create(&labels).set(i64::from(status.is_up()));
            self.control_packet_input.get_or_create(&labels).set(gauge(status.packets_received));
            self.control_packet_output.get_or_create(&labels).set(gauge(status.packets_sent));
            self.session_up_events.get_or_create(&labels).set(gauge(status.up_events));
            self.session_down_events.get_or_create(&labels).set(gauge(status.down_events));
        }
    }
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
            "metallb_bgp_session_flaps",
            "Established BGP sessions with the peer that went down",
            metrics.flaps.clone(),
        );
        registry.register(
            "metallb_announcer_allocator_stream_connected",
            "1 while the assignment stream from the allocator is open, else 0",
            metrics.stream_connected.clone(),
        );
        registry.register(
            "metallb_bgp_pending_prefixes_total",
            "Prefixes that should be advertised to the peer but are not (session down, no next hop)",
            metrics.pending.clone(),
        );
        metrics.bfd.register(registry);
        metrics.l2.register_into(registry);
        metrics
    }

    /// The gauge that says whether the assignment stream is open, for the subscription.
    pub fn stream_connected(&self) -> Gauge {
        self.stream_connected.clone()
    }

    /// The layer 2 counters, registered with the others.
    pub fn l2(&self) -> L2Metrics {
        self.l2.clone()
    }

    /// Records the statuses of the BFD sessions, by peer address.
    pub fn update_bfd(&self, statuses: &BTreeMap<IpAddr, BfdStatus>) {
        self.bfd.update(statuses);
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
            let totals = (status.updates_sent, status.failures_total, status.flaps_total);
            let previous = seen.insert(labels.peer.clone(), totals).unwrap_or_default();
            self.updates.get_or_create(&labels).inc_by(totals.0.saturating_sub(previous.0));
            self.failures.get_or_create(&labels).inc_by(totals.1.saturating_sub(previous.1));
            self.flaps.get_or_create(&labels).inc_by(totals.2.saturating_sub(previous.2));
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
        status.flaps_total = 1;
        metrics.update(&[
            ("router".into(), first, status),
            ("router-b".into(), second, quiet.clone()),
            ("router-6".into(), v6, quiet),
        ]);
        let bfd_up = BfdStatus {
            state: crate::bfd::packet::State::Up,
            packets_received: 7,
            packets_sent: 9,
            up_events: 1,
            ..Default::default()
        };
        metrics.update_bfd(&BTreeMap::from([("192.0.2.1".parse().unwrap(), bfd_up)]));
        let l2 = metrics.l2();
        let service: IpAddr = "192.0.2.100".parse().unwrap();
        let service_v6: IpAddr = "2001:db8::100".parse().unwrap();
        for _ in 0..3 {
            l2.request_received(service);
            l2.gratuitous_sent(service_v6);
        }
        l2.response_sent(service);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for expected in [
            r#"metallb_bfd_session_up{peer="192.0.2.1"} 1"#,
            r#"metallb_bfd_control_packet_input{peer="192.0.2.1"} 7"#,
            r#"metallb_bfd_control_packet_output{peer="192.0.2.1"} 9"#,
            r#"metallb_bfd_session_up_events{peer="192.0.2.1"} 1"#,
            r#"metallb_bfd_session_down_events{peer="192.0.2.1"} 0"#,
            r#"metallb_bgp_session_up{peer="192.0.2.1:179"} 0"#,
            r#"metallb_bgp_updates_total{peer="192.0.2.1:179"} 5"#,
            r#"metallb_bgp_announced_prefixes_total{peer="192.0.2.1:179"} 3"#,
            r#"metallb_bgp_pending_prefixes_total{peer="192.0.2.1:179"} 1"#,
            r#"metallb_bgp_session_up{peer="192.0.2.1:1179"} 1"#,
            r#"metallb_bgp_updates_total{peer="192.0.2.1:1179"} 0"#,
            r#"metallb_bgp_session_up{peer="[2001:db8::1]:179"} 1"#,
            r#"metallb_bgp_session_failures_total{peer="192.0.2.1:179"} 0"#,
            r#"metallb_bgp_session_flaps_total{peer="192.0.2.1:179"} 1"#,
            r#"metallb_bgp_session_flaps_total{peer="192.0.2.1:1179"} 0"#,
            "metallb_announcer_allocator_stream_connected 0",
            r#"metallb_layer2_requests_received{ip="192.0.2.100"} 3"#,
            r#"metallb_layer2_responses_sent{ip="192.0.2.100"} 1"#,
            r#"metallb_layer2_gratuitous_sent{ip="2001:db8::100"} 3"#,
        ] {
            assert!(text.contains(expected), "{expected} missing:\n{text}");
        }
    }
}
