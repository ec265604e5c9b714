//! `metallb-bgp-announce`: runs the announcer's BGP speaker against one peer with a static set
//! of routes, without an allocator. For interoperability tests and benchmarks against real
//! routers, and for checking a router's configuration by hand.
//!
//! It prints the session status as one JSON object per line whenever it changes. SIGUSR1
//! withdraws every route; SIGTERM stops with a Cease; SIGKILL leaves graceful restart to the
//! router.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    process::ExitCode,
    sync::Arc,
    time::Duration,
};

use clap::Parser;
use ipnetwork::IpNetwork;
use metallb_announcer::{
    bfd::{BfdPeer, BfdRegistry, session::BfdConfig, socket::Hops},
    bgp::{
        advertise::{RouteAttributes, Routes, parse_community, parse_large_community},
        fsm::SessionConfig,
        session::{PeerEndpoint, Session},
    },
    speaker::GRACEFUL_RESTART_TIME,
};
use tokio::signal::unix::{SignalKind, signal};

/// Announces static routes to one BGP peer.
#[derive(Parser, Debug)]
#[command(name = "metallb-bgp-announce", version)]
struct Args {
    /// The peer's address; repeat for one session per address, each announcing the same routes.
    #[arg(long = "peer", required = true)]
    peers: Vec<IpAddr>,
    /// The peer's port.
    #[arg(long, default_value_t = 179)]
    port: u16,
    /// Our AS.
    #[arg(long)]
    local_asn: u32,
    /// The peer's AS.
    #[arg(long)]
    peer_asn: u32,
    /// Our BGP identifier.
    #[arg(long)]
    router_id: Ipv4Addr,
    /// Local address to connect from.
    #[arg(long)]
    source: Option<IpAddr>,
    /// Hold time in seconds.
    #[arg(long, default_value_t = 90)]
    hold_time: u16,
    /// TCP MD5 password.
    #[arg(long)]
    password: Option<String>,
    /// Advertise graceful restart.
    #[arg(long)]
    graceful_restart: bool,
    /// A prefix to announce; repeat for more.
    #[arg(long = "route")]
    routes: Vec<IpNetwork>,
    /// Also announce this many consecutive /32s (or /128s) starting at --generate-from.
    #[arg(long, default_value_t = 0)]
    generate: u32,
    /// First address of the generated prefixes.
    #[arg(long, default_value = "100.64.0.0")]
    generate_from: IpAddr,
    /// LOCAL_PREF (sent on iBGP sessions).
    #[arg(long)]
    local_pref: Option<u32>,
    /// A standard community "A:B"; repeat for more.
    #[arg(long = "community")]
    communities: Vec<String>,
    /// A large community "A:B:C"; repeat for more.
    #[arg(long = "large-community")]
    large_communities: Vec<String>,
    /// Run a BFD session with each peer (single hop, port 3784) and drop the BGP session as
    /// soon as it goes down.
    #[arg(long)]
    bfd: bool,
    /// BFD transmit and receive interval, milliseconds.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u32).range(10..=60_000))]
    bfd_interval_ms: u32,
    /// BFD detect multiplier.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(2..))]
    bfd_multiplier: u8,
}

/// The BFD session each peer gets, when asked for.
fn bfd_peer(args: &Args, peer: IpAddr) -> Option<BfdPeer> {
    let interval = Duration::from_millis(u64::from(args.bfd_interval_ms));
    args.bfd.then_some(BfdPeer {
        address: peer,
        source: args.source,
        hops: Hops::Single,
        config: BfdConfig {
            desired_min_tx: interval,
            required_min_rx: interval,
            detect_mult: args.bfd_multiplier,
            passive: false,
        },
        minimum_ttl: 255,
    })
}

fn routes(args: &Args) -> Result<Routes, String> {
    let attributes = Arc::new(RouteAttributes {
        local_pref: args.local_pref,
        communities: args
            .communities
            .iter()
            .map(|c| parse_community(c))
            .collect::<Result<_, _>>()?,
        large_communities: args
            .large_communities
            .iter()
            .map(|c| parse_large_community(c))
            .collect::<Result<_, _>>()?,
    });
    let mut routes: Routes = args.routes.iter().map(|p| (*p, attributes.clone())).collect();
    for n in 0..args.generate {
        let prefix = match args.generate_from {
            IpAddr::V4(base) => IpNetwork::new(IpAddr::V4(Ipv4Addr::from(u32::from(base) + n)), 32),
            IpAddr::V6(base) => {
                IpNetwork::new(IpAddr::V6((u128::from(base) + u128::from(n)).into()), 128)
            }
        }
        .map_err(|err| err.to_string())?;
        routes.insert(prefix, attributes.clone());
    }
    Ok(routes)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Args = metallb_process::parse_args_or_exit();
    let routes = match routes(&args) {
        Ok(routes) => Arc::new(routes),
        Err(message) => metallb_process::usage_error(&message),
    };
    let config = SessionConfig {
        local_asn: args.local_asn,
        peer_asn: args.peer_asn.into(),
        router_id: args.router_id,
        hold_time: args.hold_time,
        keepalive: None,
        connect_retry: Duration::from_millis(500),
        max_retry: Duration::from_secs(5),
        families: vec![(1, 1), (2, 1)],
        graceful_restart: args.graceful_restart.then_some(GRACEFUL_RESTART_TIME),
        restarting: args.graceful_restart,
    };
    let bfd = BfdRegistry::default();
    let mut bfd_watches = Vec::new();
    let sessions: Vec<Session> = args
        .peers
        .iter()
        .map(|peer| {
            let endpoint = PeerEndpoint {
                address: SocketAddr::new(*peer, args.port),
                source: args.source,
                password: args.password.clone(),
                ttl: None,
            };
            let desired = routes.clone().into();
            match bfd_peer(&args, *peer) {
                Some(peer) => {
                    let watch = bfd.watch(&peer);
                    let status = watch.status();
                    bfd_watches.push(watch);
                    Session::spawn_with_bfd(endpoint, config.clone(), desired, status)
                }
                None => Session::spawn(endpoint, config.clone(), desired),
            }
        })
        .collect();
    // Status lines follow the first session; the others mirror it.
    let mut status = sessions[0].watch_status();
    let (Ok(mut term), Ok(mut withdraw)) =
        (signal(SignalKind::terminate()), signal(SignalKind::user_defined1()))
    else {
        eprintln!("cannot install signal handlers");
        return ExitCode::FAILURE;
    };
    loop {
        tokio::select! {
            changed = status.changed() => {
                if changed.is_err() {
                    return ExitCode::FAILURE;
                }
                let s = status.borrow_and_update().clone();
                let peer_open: String = s.peer_open.unwrap_or_default().iter().map(|b| format!("{b:02x}")).collect();
                println!(
                    "{{\"state\":\"{:?}\",\"prefixes_sent\":{},\"prefixes_pending\":{},\"prefixes_received\":{},\"updates_sent\":{},\"last_error\":{:?},\"bfd\":{:?},\"peer_open\":\"{peer_open}\"}}",
                    s.state, s.prefixes_sent, s.prefixes_pending, s.prefixes_received, s.updates_sent,
                    s.last_error.unwrap_or_default(), s.bfd.unwrap_or_default()
                );
            }
            _ = withdraw.recv() => sessions.iter().for_each(|s| s.set_routes(Arc::new(Routes::new()).into())),
            _ = term.recv() => {
                for session in sessions {
                    session.stop().await;
                }
                // AdminDown to the BFD peers: a stop, not a failure.
                drop(bfd_watches);
                bfd.stopped().await;
                return ExitCode::SUCCESS;
            }
        }
    }
}
