//! The node's BGP speaker: one session per peer the allocator assigns, each handed the routes
//! for that peer. Applying new assignments is declarative: sessions whose peer settings are
//! unchanged keep running and only get the new route set; changed peers are restarted; gone
//! peers are stopped with a Cease.

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use ipnetwork::IpNetwork;
use metallb_proto::pb;

use crate::{
    assignments::Assignments,
    bfd::{BfdPeer, BfdRegistry, BfdStatus, BfdWatch, session::BfdConfig, socket::Hops},
    bgp::{
        advertise::{RouteAttributes, Routes, parse_community, parse_large_community},
        fsm::{PeerAs, SessionConfig, State},
        session::{Desired, PeerEndpoint, Session, SessionStatus},
    },
};

/// Default first delay between connection attempts.
const DEFAULT_CONNECT_RETRY: Duration = Duration::from_secs(2);
/// Longest delay between attempts.
const MAX_CONNECT_RETRY: Duration = Duration::from_secs(60);
/// Restart time advertised with graceful restart: how long routers keep our routes while we
/// come back.
pub const GRACEFUL_RESTART_TIME: u16 = 120;

/// The sessions of this node.
pub struct Speaker {
    node_address: Option<IpAddr>,
    sessions: BTreeMap<String, RunningSession>,
    problems: BTreeMap<String, String>,
    bfd: BfdRegistry,
}

struct RunningSession {
    peer: pb::BgpPeer,
    address: SocketAddr,
    session: Session,
    /// The BFD session watching the path to the peer; kept for as long as this session.
    bfd: Option<BfdWatch>,
}

impl Speaker {
    /// A speaker for a node whose own address (the router ID fallback) is `node_address`.
    pub fn new(node_address: Option<IpAddr>) -> Self {
        Self::with_bfd(node_address, BfdRegistry::default())
    }

    /// A speaker whose BFD sessions run in `bfd`.
    pub fn with_bfd(node_address: Option<IpAddr>, bfd: BfdRegistry) -> Self {
        Self { node_address, sessions: BTreeMap::new(), problems: BTreeMap::new(), bfd }
    }

    /// Makes the sessions match `assignments`.
    pub async fn apply(&mut self, assignments: &Assignments) {
        let mut routes_by_peer = routes_by_peer(assignments);
        let wanted: BTreeMap<&String, &pb::BgpPeer> = assignments.peers().iter().collect();
        let gone: Vec<String> = self
            .sessions
            .iter()
            .filter(|(name, running)| wanted.get(name).is_none_or(|peer| **peer != running.peer))
            .map(|(name, _)| name.clone())
            .collect();
        for name in gone {
            if let Some(running) = self.sessions.remove(&name) {
                tracing::info!(peer = name, "stopping BGP session");
                running.session.stop().await;
            }
        }
        self.problems.clear();
        for (name, peer) in wanted {
            let desired = Desired {
                routes: Arc::new(routes_by_peer.remove(name).unwrap_or_default()),
                cause: assignments.cause().cloned(),
            };
            if let Some(running) = self.sessions.get(name) {
                running.session.set_routes(desired);
                continue;
            }
            match session_settings(peer, self.node_address) {
                Ok((endpoint, config)) => {
                    tracing::info!(peer = name, address = %endpoint.address, "starting BGP session");
                    let address = endpoint.address;
                    let bfd = bfd_peer(peer, &endpoint).map(|bfd| self.bfd.watch(&bfd));
                    let session = match &bfd {
                        Some(bfd) => {
                            Session::spawn_with_bfd(endpoint, config, desired, bfd.status())
                        }
                        None => Session::spawn(endpoint, config, desired),
                    };
                    self.sessions.insert(
                        name.clone(),
                        RunningSession { peer: peer.clone(), address, session, bfd },
                    );
                }
                Err(problem) => {
                    tracing::warn!(peer = name, problem, "cannot start BGP session");
                    self.problems.insert(name.clone(), problem);
                }
            }
        }
    }

    /// Every session's status, by peer name, with its address and port.
    pub fn statuses(&self) -> Vec<(String, SocketAddr, SessionStatus)> {
        self.sessions
            .iter()
            .map(|(name, running)| (name.clone(), running.address, running.session.status()))
            .collect()
    }

    /// The BFD sessions, by peer address (one per address, whatever the BGP sessions to it).
    pub fn bfd_statuses(&self) -> BTreeMap<IpAddr, BfdStatus> {
        self.sessions
            .values()
            .filter_map(|running| {
                running.bfd.as_ref().map(|bfd| (running.address.ip(), bfd.current()))
            })
            .collect()
    }

    /// Session reports for the allocator, including peers that could not be started.
    pub fn reports(&self, node: &str) -> Vec<pb::SessionState> {
        let now = Some(prost_types::Timestamp::from(std::time::SystemTime::now()));
        let mut reports: Vec<pb::SessionState> = self
            .statuses()
            .into_iter()
            .map(|(peer, address, status)| pb::SessionState {
                node_name: node.to_string(),
                peer,
                peer_address: address.ip().to_string(),
                state: state_to_pb(status.state) as i32,
                established_since: status.established_since.map(prost_types::Timestamp::from),
                prefixes_sent: status.prefixes_sent,
                prefixes_received: status.prefixes_received,
                prefixes_pending: status.prefixes_pending,
                pending_reason: status.pending_reason.clone().unwrap_or_default(),
                bfd_state: status.bfd.clone().unwrap_or_default(),
                last_error: status.last_error.unwrap_or_default(),
                reported_at: now,
            })
            .collect();
        reports.extend(self.problems.iter().map(|(peer, problem)| pb::SessionState {
            node_name: node.to_string(),
            peer: peer.clone(),
            state: pb::BgpState::Idle as i32,
            last_error: problem.clone(),
            reported_at: now,
            ..Default::default()
        }));
        reports
    }

    /// Stops every session with a Cease (and AdminDown for BFD).
    pub async fn shutdown(&mut self) {
        for (_, running) in std::mem::take(&mut self.sessions) {
            running.session.stop().await;
        }
        // Every BFD session was dropped with its BGP session: let the peers hear AdminDown.
        self.bfd.stopped().await;
    }
}

fn state_to_pb(state: State) -> pb::BgpState {
    match state {
        State::Idle => pb::BgpState::Idle,
        State::Connect => pb::BgpState::Connect,
        State::Active => pb::BgpState::Active,
        State::OpenSent => pb::BgpState::OpenSent,
        State::OpenConfirm => pb::BgpState::OpenConfirm,
        State::Established => pb::BgpState::Established,
    }
}

/// The allocator's routes grouped per peer, parsed into what sessions advertise.
fn routes_by_peer(assignments: &Assignments) -> BTreeMap<String, Routes> {
    let mut by_peer: BTreeMap<String, Routes> = BTreeMap::new();
    // One shared copy per distinct attribute set, however many routes carry it.
    let mut interned: BTreeMap<RouteAttributes, Arc<RouteAttributes>> = BTreeMap::new();
    for ((peer, prefix), route) in assignments.routes() {
        let Ok(prefix) = prefix.parse::<IpNetwork>() else {
            tracing::warn!(peer, prefix, "ignoring a route with an unparseable prefix");
            continue;
        };
        let attributes = RouteAttributes {
            local_pref: route.local_pref,
            communities: route.communities.iter().filter_map(|c| parse_community(c).ok()).collect(),
            large_communities: route
                .large_communities
                .iter()
                .filter_map(|c| parse_large_community(c).ok())
                .collect(),
        };
        let attributes =
            interned.entry(attributes.clone()).or_insert_with(|| Arc::new(attributes)).clone();
        by_peer.entry(peer.clone()).or_default().insert(prefix, attributes);
    }
    by_peer
}

/// The BFD session `peer`'s profile asks for, if any: single hop unless the peer is an eBGP
/// multihop one (RFC 5883), the allocator having filled in MetalLB's defaults.
fn bfd_peer(peer: &pb::BgpPeer, endpoint: &PeerEndpoint) -> Option<BfdPeer> {
    let profile = peer.bfd.as_ref()?;
    let defaults = BfdConfig::default();
    let millis = |value: Option<u32>, default: Duration| {
        value.map_or(default, |ms| Duration::from_millis(u64::from(ms)))
    };
    let config = BfdConfig {
        desired_min_tx: millis(profile.transmit_interval_ms, defaults.desired_min_tx),
        required_min_rx: millis(profile.receive_interval_ms, defaults.required_min_rx),
        detect_mult: profile
            .detect_multiplier
            .map_or(defaults.detect_mult, |m| u8::try_from(m.max(1)).unwrap_or(u8::MAX)),
        passive: profile.passive_mode,
    };
    Some(BfdPeer {
        address: endpoint.address.ip(),
        source: endpoint.source,
        hops: if peer.ebgp_multihop { Hops::Multi } else { Hops::Single },
        config,
        minimum_ttl: profile.minimum_ttl.and_then(|ttl| u8::try_from(ttl).ok()).unwrap_or(254),
    })
}

/// Endpoint and FSM settings for `peer`, or why the session cannot start.
pub fn session_settings(
    peer: &pb::BgpPeer,
    node_address: Option<IpAddr>,
) -> Result<(PeerEndpoint, SessionConfig), String> {
    let address: IpAddr = peer
        .peer_address
        .parse()
        .map_err(|_| format!("peer address {:?} is not an IP address", peer.peer_address))?;
    let port = if peer.peer_port == 0 {
        179
    } else {
        u16::try_from(peer.peer_port).map_err(|_| "peer port is not a port")?
    };
    let source: Option<IpAddr> = if peer.source_address.is_empty() {
        None
    } else {
        Some(peer.source_address.parse().map_err(|_| {
            format!("source address {:?} is not an IP address", peer.source_address)
        })?)
    };
    let router_id =
        if !peer.router_id.is_empty() {
            peer.router_id
                .parse::<Ipv4Addr>()
                .map_err(|_| format!("router ID {:?} is not an IPv4 address", peer.router_id))?
        } else {
            match (source, node_address) {
                (Some(IpAddr::V4(source)), _) => source,
                (_, Some(IpAddr::V4(node))) => node,
                _ => return Err(
                    "no router ID: set routerID on the peer or give the announcer --node-address"
                        .into(),
                ),
            }
        };
    // localASN replaces our AS on this session (FRR's local-as ... replace-as).
    let local_asn = if peer.local_asn != 0 { peer.local_asn } else { peer.my_asn };
    let peer_as = match peer.dynamic_asn.as_str() {
        "" => PeerAs::Fixed(peer.peer_asn),
        "internal" => PeerAs::Internal,
        "external" => PeerAs::External,
        other => return Err(format!("dynamicASN {other:?} is neither internal nor external")),
    };
    let external = match peer_as {
        PeerAs::Fixed(asn) => asn != local_asn,
        PeerAs::Internal => false,
        PeerAs::External => true,
    };
    let ttl = match (external, peer.ebgp_multihop) {
        // A directly connected eBGP peer: one hop, as routers expect (RFC 4271 section 5.1.3).
        (true, false) => Some(1),
        (true, true) => Some(255),
        (false, _) => None,
    };
    let hold_time = u16::try_from(peer.hold_time_seconds.unwrap_or(90))
        .map_err(|_| "hold time above 65535 s")?;
    let keepalive = peer.keepalive_time_seconds.and_then(|k| u16::try_from(k).ok());
    let endpoint = PeerEndpoint {
        address: SocketAddr::new(address, port),
        source,
        password: (!peer.password.is_empty()).then(|| peer.password.clone()),
        ttl,
    };
    // Only the session's own family, unless the peer takes both (dualStackAddressFamily).
    let both = peer.dual_stack_address_family && !peer.disable_mp;
    let families = match address {
        _ if both => vec![(1, 1), (2, 1)],
        IpAddr::V4(_) => vec![(1, 1)],
        IpAddr::V6(_) => vec![(2, 1)],
    };
    let config = SessionConfig {
        local_asn,
        peer_asn: peer_as,
        router_id,
        hold_time,
        keepalive,
        connect_retry: peer
            .connect_time_seconds
            .map(|s| Duration::from_secs(u64::from(s)))
            .unwrap_or(DEFAULT_CONNECT_RETRY),
        max_retry: MAX_CONNECT_RETRY,
        families,
        graceful_restart: peer.enable_graceful_restart.then_some(GRACEFUL_RESTART_TIME),
        // Every session of a fresh process follows a restart as far as the peer can tell.
        restarting: peer.enable_graceful_restart,
    };
    Ok((endpoint, config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> pb::BgpPeer {
        pb::BgpPeer {
            name: "r".into(),
            my_asn: 64512,
            peer_asn: 64500,
            peer_address: "192.0.2.254".into(),
            ..Default::default()
        }
    }

    #[test]
    fn settings_follow_the_peer() {
        let (endpoint, config) =
            session_settings(&peer(), Some("192.0.2.1".parse().unwrap())).unwrap();
        assert_eq!(endpoint.address, "192.0.2.254:179".parse().unwrap());
        assert_eq!(endpoint.ttl, Some(1), "eBGP, directly connected");
        assert_eq!(config.router_id, Ipv4Addr::new(192, 0, 2, 1));
        let multihop =
            pb::BgpPeer { ebgp_multihop: true, password: "pw".into(), peer_port: 1179, ..peer() };
        let (endpoint, _) =
            session_settings(&multihop, Some("192.0.2.1".parse().unwrap())).unwrap();
        assert_eq!(
            (endpoint.ttl, endpoint.password.as_deref(), endpoint.address.port()),
            (Some(255), Some("pw"), 1179)
        );
        let ibgp = pb::BgpPeer { peer_asn: 64512, router_id: "10.0.0.1".into(), ..peer() };
        let (endpoint, config) = session_settings(&ibgp, None).unwrap();
        assert_eq!((endpoint.ttl, config.router_id), (None, Ipv4Addr::new(10, 0, 0, 1)));
    }

    #[test]
    fn local_asn_dynamic_asn_and_families_follow_the_peer() {
        let node = Some("192.0.2.1".parse().unwrap());
        let (_, config) = session_settings(&peer(), node).unwrap();
        assert_eq!(config.families, [(1, 1)], "only the session's own family by default");
        assert_eq!((config.local_asn, config.peer_asn), (64512, PeerAs::Fixed(64500)));
        let dual = pb::BgpPeer { dual_stack_address_family: true, ..peer() };
        assert_eq!(session_settings(&dual, node).unwrap().1.families, [(1, 1), (2, 1)]);
        let not_mp = pb::BgpPeer { disable_mp: true, ..dual };
        assert_eq!(session_settings(&not_mp, node).unwrap().1.families, [(1, 1)]);
        let v6 = pb::BgpPeer { peer_address: "2001:db8::1".into(), ..peer() };
        assert_eq!(session_settings(&v6, node).unwrap().1.families, [(2, 1)]);
        // localASN replaces our AS on the session; with it equal to the peer's, it is iBGP.
        let local = pb::BgpPeer { local_asn: 64500, ..peer() };
        let (endpoint, config) = session_settings(&local, node).unwrap();
        assert_eq!((config.local_asn, endpoint.ttl), (64500, None));
        let internal = pb::BgpPeer { peer_asn: 0, dynamic_asn: "internal".into(), ..peer() };
        let (endpoint, config) = session_settings(&internal, node).unwrap();
        assert_eq!((config.peer_asn, endpoint.ttl), (PeerAs::Internal, None));
        let external = pb::BgpPeer { peer_asn: 0, dynamic_asn: "external".into(), ..peer() };
        let (endpoint, config) = session_settings(&external, node).unwrap();
        assert_eq!((config.peer_asn, endpoint.ttl), (PeerAs::External, Some(1)));
    }

    #[test]
    fn a_bfd_profile_becomes_the_peers_bfd_session() {
        let node = Some("192.0.2.1".parse().unwrap());
        let (endpoint, _) = session_settings(&peer(), node).unwrap();
        assert_eq!(bfd_peer(&peer(), &endpoint), None, "no profile, no BFD");
        let profile = pb::BfdProfile {
            name: "fast".into(),
            receive_interval_ms: Some(100),
            transmit_interval_ms: Some(200),
            detect_multiplier: Some(5),
            passive_mode: true,
            minimum_ttl: Some(250),
            ..Default::default()
        };
        let with_bfd = pb::BgpPeer { bfd: Some(profile), ..peer() };
        let bfd = bfd_peer(&with_bfd, &endpoint).unwrap();
        assert_eq!(bfd.address, endpoint.address.ip());
        assert_eq!(bfd.hops, Hops::Single, "a directly connected eBGP peer");
        assert_eq!(
            bfd.config,
            BfdConfig {
                desired_min_tx: Duration::from_millis(200),
                required_min_rx: Duration::from_millis(100),
                detect_mult: 5,
                passive: true,
            }
        );
        let multihop = pb::BgpPeer { ebgp_multihop: true, ..with_bfd };
        let bfd = bfd_peer(&multihop, &endpoint).unwrap();
        assert_eq!((bfd.hops, bfd.minimum_ttl), (Hops::Multi, 250), "RFC 5883 with its TTL");
    }

    #[test]
    fn a_peer_without_a_router_id_source_is_reported() {
        let problem = session_settings(&peer(), None).unwrap_err();
        assert!(problem.contains("--node-address"), "{problem}");
    }

    #[test]
    fn routes_are_grouped_per_peer_with_parsed_communities() {
        let route = |peer: &str, prefix: &str| pb::Route {
            key: Some(pb::RouteKey { peer: peer.into(), prefix: prefix.into() }),
            local_pref: Some(100),
            communities: vec!["65535:65281".into()],
            large_communities: vec!["1:2:3".into()],
            services: vec![],
        };
        let assignments = Assignments::from_snapshot(pb::NodeAssignments {
            peers: vec![],
            routes: vec![
                route("a", "192.0.2.1/32"),
                route("b", "192.0.2.1/32"),
                route("a", "2001:db8::1/128"),
            ],
            ..Default::default()
        });
        let grouped = routes_by_peer(&assignments);
        assert_eq!(grouped["a"].len(), 2);
        let attributes = grouped["b"].values().next().unwrap();
        assert_eq!(attributes.communities, [0xffff_ff01]);
        assert_eq!(attributes.large_communities, [(1, 2, 3)]);
    }
}
