//! Two registries on loopback, each listening where the other sends: real sockets, real
//! timers.

use std::{
    net::{IpAddr, Ipv4Addr, UdpSocket as StdUdpSocket},
    time::Duration,
};

use super::*;
use crate::bfd::packet::{Diagnostic, State};

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn free_udp_port() -> u16 {
    StdUdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap().local_addr().unwrap().port()
}

fn fast() -> BfdConfig {
    BfdConfig {
        desired_min_tx: Duration::from_millis(50),
        required_min_rx: Duration::from_millis(50),
        detect_mult: 3,
        passive: false,
    }
}

fn peer(config: BfdConfig) -> BfdPeer {
    BfdPeer { address: LOOPBACK, source: None, hops: Hops::Single, config, minimum_ttl: 254 }
}

/// Two registries whose single-hop sessions talk to each other over loopback.
fn pair() -> (BfdRegistry, BfdRegistry, u16) {
    let (a, b) = (free_udp_port(), free_udp_port());
    let unused = Ports { listen: free_udp_port(), peer: free_udp_port() };
    let first = BfdRegistry::with_ports(Ports { listen: a, peer: b }, unused);
    let second = BfdRegistry::with_ports(Ports { listen: b, peer: a }, unused);
    (first, second, a)
}

/// A valid Down packet naming nobody, as a peer starting its session sends.
fn starting_packet() -> ControlPacket {
    ControlPacket {
        diagnostic: Diagnostic::None,
        state: State::Down,
        poll: false,
        final_: false,
        detect_mult: 3,
        my_discriminator: 42,
        your_discriminator: 0,
        desired_min_tx: Duration::from_secs(1),
        required_min_rx: Duration::from_millis(50),
        required_min_echo_rx: Duration::ZERO,
    }
}

async fn wait_for(
    watch: &BfdWatch,
    what: &str,
    mut check: impl FnMut(&BfdStatus) -> bool,
) -> BfdStatus {
    let mut status = watch.status();
    // State changes wake the receiver; counters do not, so they are polled.
    let waited = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let now = status.borrow_and_update().clone();
            if check(&now) {
                return now;
            }
            let _ = tokio::time::timeout(Duration::from_millis(20), status.changed()).await;
        }
    })
    .await;
    waited.unwrap_or_else(|_| panic!("not {what} within 10 s: {:?}", watch.current()))
}

#[tokio::test]
async fn two_sessions_come_up_and_an_admin_down_reaches_the_peer() {
    let (first, second, _) = pair();
    let ours = first.watch(&peer(fast()));
    let theirs = second.watch(&peer(fast()));
    let up = wait_for(&ours, "Up", BfdStatus::is_up).await;
    assert_eq!(up.up_events, 1);
    wait_for(&theirs, "Up", BfdStatus::is_up).await;
    assert!(ours.current().packets_received > 0 && ours.current().packets_sent > 0);

    // The last watcher going stops the session with AdminDown, which the peer reads as its
    // neighbor signalling down (RFC 5880 section 6.8.6), at once rather than after detection.
    drop(theirs);
    let down = wait_for(&ours, "Down", |s| s.state == State::Down).await;
    assert_eq!(down.diagnostic, Diagnostic::NeighborSignaledDown, "{}", down.describe());
    assert_eq!(down.down_events, 1);
    assert_eq!(down.describe(), "down: neighbor signaled session down");
}

#[tokio::test]
async fn a_peer_that_falls_silent_is_declared_down_by_detection() {
    // The peer is scripted on a plain socket where our session sends: it answers until our
    // session is Up, then says nothing more, as a cut link would.
    let (ours_port, peer_port) = (free_udp_port(), free_udp_port());
    let unused = Ports { listen: free_udp_port(), peer: free_udp_port() };
    let registry = BfdRegistry::with_ports(Ports { listen: ours_port, peer: peer_port }, unused);
    let scripted = tokio::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, peer_port)).await.unwrap();
    scripted.set_ttl(255).unwrap();
    let ours = registry.watch(&peer(fast()));
    let mut buffer = [0u8; 64];
    for _ in 0..20 {
        if ours.current().is_up() {
            break;
        }
        let received =
            tokio::time::timeout(Duration::from_secs(3), scripted.recv_from(&mut buffer)).await;
        let (len, _) = received.expect("our session sends").unwrap();
        let theirs = ControlPacket::decode(&buffer[..len]).unwrap();
        let state = match theirs.state {
            State::Down => State::Init,
            _ => State::Up,
        };
        let answer = ControlPacket {
            diagnostic: Diagnostic::None,
            state,
            poll: false,
            final_: theirs.poll,
            detect_mult: 3,
            my_discriminator: 7,
            your_discriminator: theirs.my_discriminator,
            desired_min_tx: Duration::from_millis(50),
            required_min_rx: Duration::from_millis(50),
            required_min_echo_rx: Duration::ZERO,
        };
        scripted.send_to(&answer.encode(), (Ipv4Addr::LOCALHOST, ours_port)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_for(&ours, "Up", BfdStatus::is_up).await;
    let down = wait_for(&ours, "Down", |s| s.state == State::Down).await;
    assert_eq!(down.diagnostic, Diagnostic::DetectionTimeExpired, "{}", down.describe());
}

#[tokio::test]
async fn watchers_of_one_address_share_a_session() {
    let (first, second, _) = pair();
    let one = first.watch(&peer(fast()));
    let two = first.watch(&peer(fast()));
    let theirs = second.watch(&peer(fast()));
    wait_for(&one, "Up", BfdStatus::is_up).await;
    assert!(two.current().is_up(), "the second watcher sees the same session");
    drop(one);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(two.current().is_up(), "still watched: still running");
    assert!(theirs.current().is_up());
}

#[tokio::test]
async fn a_packet_that_crossed_a_router_is_discarded() {
    let (first, _second, listen) = pair();
    let ours = first.watch(&peer(fast()));
    // A peer starting its session, but with TTL 64.
    let packet = starting_packet();
    let sender = StdUdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    sender.set_ttl(64).unwrap();
    sender.send_to(&packet.encode(), (Ipv4Addr::LOCALHOST, listen)).unwrap();
    wait_for(&ours, "discarding it", |s| s.packets_discarded == 1).await;
    assert_eq!(ours.current().state, State::Down, "not moved to Init by a routed packet");
    // The same packet with TTL 255 is accepted and moves the session to Init.
    sender.set_ttl(255).unwrap();
    sender.send_to(&packet.encode(), (Ipv4Addr::LOCALHOST, listen)).unwrap();
    wait_for(&ours, "Init", |s| s.state == State::Init).await;
}

#[tokio::test]
async fn a_port_already_taken_is_reported_in_the_status() {
    let taken = StdUdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
    let port = taken.local_addr().unwrap().port();
    let registry = BfdRegistry::with_ports(
        Ports { listen: port, peer: port },
        Ports { listen: port, peer: port },
    );
    let watch = registry.watch(&peer(fast()));
    let problem = watch.current().problem.expect("the bind failure");
    assert!(problem.contains(&format!("UDP port {port}")), "{problem}");
    // Packets go out (to the port taken, here) every second: sending works, yet the session
    // still cannot hear its peer, and says so.
    wait_for(&watch, "a packet sent", |s| s.packets_sent > 0).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let still = watch.current().problem.expect("still unable to receive");
    assert!(still.contains(&format!("UDP port {port}")), "{still}");
}

#[tokio::test]
async fn a_multihop_session_accepts_packets_down_to_its_minimum_ttl() {
    let single = Ports { listen: free_udp_port(), peer: free_udp_port() };
    let multi = Ports { listen: free_udp_port(), peer: free_udp_port() };
    let registry = BfdRegistry::with_ports(single, multi);
    let multihop = BfdPeer { hops: Hops::Multi, minimum_ttl: 250, ..peer(fast()) };
    let ours = registry.watch(&multihop);
    let sender = StdUdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let packet = starting_packet();
    // One hop more than the profile allows (TTL below its minimum): discarded.
    sender.set_ttl(249).unwrap();
    sender.send_to(&packet.encode(), (Ipv4Addr::LOCALHOST, multi.listen)).unwrap();
    wait_for(&ours, "discarding it", |s| s.packets_discarded == 1).await;
    // At the minimum: accepted, and the session moves to Init.
    sender.set_ttl(250).unwrap();
    sender.send_to(&packet.encode(), (Ipv4Addr::LOCALHOST, multi.listen)).unwrap();
    let init = wait_for(&ours, "Init", |s| s.state == State::Init).await;
    assert_eq!(init.packets_received, 1);
}
