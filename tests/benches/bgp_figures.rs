//! BGP speaker figures (a bench binary that prints them, not a timed test): UPDATE encoding
//! throughput; time until GoBGP and BIRD hold 100k prefixes announced over one session, with
//! the UPDATEs and bytes it took; the speaker's RSS with 100k routes and 4 peers; the speaker's
//! RSS while a peer floods it with 1,000,000 prefixes and withdraws them.
//!
//! Run as root: `cargo build --bins --release && cargo bench -p metallb-tests --bench bgp_figures`

use std::{
    io::{Read, Write},
    net::{IpAddr, Ipv4Addr, TcpListener, TcpStream},
    time::{Duration, Instant},
};

use bytes::BytesMut;
use ipnetwork::IpNetwork;
use metallb_announcer::bgp::{
    advertise::{PathContext, RouteAttributes, Routes, updates},
    packet::{
        MAX_LEN, Message, WireContext,
        attribute::{Attribute, Origin, Segment},
        capability::Capability,
        open::Open,
        update::Update,
    },
};
use metallb_tests::{
    bgp_routers::{Neighbor, Router, RouterConfig, RouterKind},
    child::ChildProcess,
    lab::{Lab, ROUTER_V4, in_namespace},
    tools::our_binary,
};

const PREFIXES: u32 = 100_000;
const OUR_AS: u32 = 64512;
const ROUTER_AS: u32 = 64500;

fn routes() -> Routes {
    let attributes = std::sync::Arc::new(RouteAttributes {
        local_pref: Some(100),
        communities: vec![0xfc00_0001],
        large_communities: vec![],
    });
    (0..PREFIXES)
        .map(|n| {
            (
                IpNetwork::new(IpAddr::V4(Ipv4Addr::from(0x6440_0000 + n)), 32).unwrap(),
                attributes.clone(),
            )
        })
        .collect()
}

fn encoding() {
    let routes = routes();
    let context = PathContext {
        local_asn: OUR_AS,
        internal: false,
        two_octet_peer: false,
        next_hop_v4: Some(Ipv4Addr::new(192, 0, 2, 11)),
        next_hop_v6: None,
        max_len: MAX_LEN,
    };
    let started = Instant::now();
    let messages = updates(&routes, &[], &context);
    let mut wire = BytesMut::new();
    for update in &messages {
        Message::Update(update.clone()).encode(WireContext::default(), &mut wire);
    }
    let elapsed = started.elapsed();
    println!(
        "encoding: {PREFIXES} prefixes into {} UPDATEs ({:.0} NLRI per UPDATE), {} bytes, in {:.1} ms ({:.0} prefixes/s)",
        messages.len(),
        f64::from(PREFIXES) / messages.len() as f64,
        wire.len(),
        elapsed.as_secs_f64() * 1e3,
        f64::from(PREFIXES) / elapsed.as_secs_f64()
    );
}

fn speaker(
    namespace: &str,
    peers: &[IpAddr],
    router_id: Ipv4Addr,
    logs: &std::path::Path,
) -> ChildProcess {
    let mut command = in_namespace(namespace, &our_binary("metallb-bgp-announce"));
    for peer in peers {
        command.args(["--peer", &peer.to_string()]);
    }
    command.args(["--local-asn", &OUR_AS.to_string(), "--peer-asn", &ROUTER_AS.to_string()]);
    command.args([
        "--router-id",
        &router_id.to_string(),
        "--generate",
        &PREFIXES.to_string(),
        "--generate-from",
        "100.64.0.0",
    ]);
    command.args(["--local-pref", "100", "--community", "64512:1"]);
    ChildProcess::spawn(&format!("speaker-{namespace}"), command, logs).unwrap()
}

fn last_status(speaker: &ChildProcess) -> serde_json::Value {
    speaker.log().lines().rev().find_map(|line| serde_json::from_str(line).ok()).unwrap_or_default()
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn wait_for_prefixes(router: &Router, started: Instant) -> Duration {
    router
        .wait_until("holding every prefix", Duration::from_secs(300), |r| {
            Ok(r.prefix_count()? >= PREFIXES as usize)
        })
        .unwrap();
    started.elapsed()
}

fn one_session(kind: RouterKind) {
    let logs = tempfile::tempdir().unwrap();
    let lab = Lab::new(1).unwrap();
    let node = lab.nodes[0].clone();
    let config = RouterConfig {
        asn: ROUTER_AS,
        router_id: ROUTER_V4,
        neighbors: vec![Neighbor::new(IpAddr::V4(node.v4), OUR_AS)],
    };
    let router = Router::start(kind, &lab.router, &config).unwrap();
    let started = Instant::now();
    let speaker = speaker(&node.namespace, &[IpAddr::V4(ROUTER_V4)], node.v4, logs.path());
    let elapsed = wait_for_prefixes(&router, started);
    let status = last_status(&speaker);
    println!(
        "{kind:?}: {PREFIXES} prefixes held {:.2} s after the speaker started (connect and OPEN included); \
         {} UPDATEs sent (End-of-RIB included); speaker RSS {} KiB",
        elapsed.as_secs_f64(),
        status["updates_sent"],
        rss_kib(speaker.pid())
    );
}

fn four_peers() {
    let logs = tempfile::tempdir().unwrap();
    let lab = Lab::new(5).unwrap();
    let speaker_node = lab.nodes[0].clone();
    let mut routers = Vec::new();
    for node in &lab.nodes[1..] {
        let config = RouterConfig {
            asn: ROUTER_AS,
            router_id: node.v4,
            neighbors: vec![Neighbor::new(IpAddr::V4(speaker_node.v4), OUR_AS)],
        };
        routers.push(Router::start(RouterKind::Gobgp, &node.namespace, &config).unwrap());
    }
    let peers: Vec<IpAddr> = lab.nodes[1..].iter().map(|node| IpAddr::V4(node.v4)).collect();
    let started = Instant::now();
    let speaker = speaker(&speaker_node.namespace, &peers, speaker_node.v4, logs.path());
    for router in &routers {
        wait_for_prefixes(router, started);
    }
    println!(
        "4 GoBGP peers: all hold {PREFIXES} prefixes after {:.2} s; speaker RSS {} KiB ({:.1} MiB)",
        started.elapsed().as_secs_f64(),
        rss_kib(speaker.pid()),
        rss_kib(speaker.pid()) as f64 / 1024.0
    );
}

/// Prefixes a flooding peer sends.
const FLOOD: u32 = 1_000_000;
/// /32 prefixes per UPDATE (5 bytes each, well within 4096 bytes).
const PER_UPDATE: u32 = 700;

fn write_message(stream: &mut TcpStream, message: Message) {
    let mut bytes = BytesMut::new();
    message.encode(WireContext::default(), &mut bytes);
    stream.write_all(&bytes).unwrap();
}

fn read_message(stream: &mut TcpStream, buffer: &mut BytesMut) -> Message {
    loop {
        if let Some(message) = Message::decode_frame(buffer, WireContext::default()).unwrap() {
            return message;
        }
        let mut chunk = [0u8; 4096];
        let read = stream.read(&mut chunk).unwrap();
        assert!(read > 0, "the speaker closed the connection");
        buffer.extend_from_slice(&chunk[..read]);
    }
}

/// Waits until the speaker's status says `received` prefixes.
fn wait_for_received(speaker: &ChildProcess, received: u32) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while last_status(speaker)["prefixes_received"] != received {
        assert!(Instant::now() < deadline, "received: {}", last_status(speaker));
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A peer on loopback that floods the speaker with `FLOOD` prefixes, then withdraws them.
fn flood() {
    let logs = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut command = std::process::Command::new(our_binary("metallb-bgp-announce"));
    command.args([
        "--peer",
        "127.0.0.1",
        "--port",
        &listener.local_addr().unwrap().port().to_string(),
    ]);
    command.args(["--local-asn", &OUR_AS.to_string(), "--peer-asn", &ROUTER_AS.to_string()]);
    command.args(["--router-id", "192.0.2.1", "--route", "198.51.100.1/32"]);
    let speaker = ChildProcess::spawn("speaker-flooded", command, logs.path()).unwrap();
    let (mut stream, _) = listener.accept().unwrap();
    let mut buffer = BytesMut::new();
    let Message::Open(_) = read_message(&mut stream, &mut buffer) else { panic!("OPEN first") };
    write_message(
        &mut stream,
        Message::Open(Open {
            version: 4,
            my_as: ROUTER_AS as u16,
            hold_time: 90,
            identifier: ROUTER_V4,
            capabilities: vec![
                Capability::Multiprotocol((1, 1)),
                Capability::FourOctetAs(ROUTER_AS),
            ],
        }),
    );
    write_message(&mut stream, Message::Keepalive);
    while read_message(&mut stream, &mut buffer) != Message::Keepalive {}
    // What the speaker sends from here (its table, KEEPALIVEs) is drained on the side.
    let mut drain = stream.try_clone().unwrap();
    std::thread::spawn(move || {
        let mut sink = [0u8; 65536];
        while matches!(drain.read(&mut sink), Ok(n) if n > 0) {}
    });
    std::thread::sleep(Duration::from_millis(500));
    let before = rss_kib(speaker.pid());
    let prefix = |n: u32| IpNetwork::new(IpAddr::V4(Ipv4Addr::from(0x0b00_0000 + n)), 32).unwrap();
    let attributes = vec![
        Attribute::Origin(Origin::Igp),
        Attribute::AsPath(vec![Segment::Sequence(vec![ROUTER_AS])]),
        Attribute::NextHop(ROUTER_V4),
    ];
    let mut peak = before;
    let started = Instant::now();
    for first in (0..FLOOD).step_by(PER_UPDATE as usize) {
        let nlri = (first..(first + PER_UPDATE).min(FLOOD)).map(prefix).collect();
        write_message(
            &mut stream,
            Message::Update(Update { withdrawn: vec![], attributes: attributes.clone(), nlri }),
        );
        if first % 50_000 < PER_UPDATE {
            peak = peak.max(rss_kib(speaker.pid()));
        }
    }
    wait_for_received(&speaker, FLOOD);
    let flooded_in = started.elapsed();
    let full = rss_kib(speaker.pid());
    peak = peak.max(full);
    for first in (0..FLOOD).step_by(PER_UPDATE as usize) {
        let withdrawn = (first..(first + PER_UPDATE).min(FLOOD)).map(prefix).collect();
        write_message(&mut stream, Message::Update(Update { withdrawn, ..Update::default() }));
    }
    wait_for_received(&speaker, 0);
    let after = rss_kib(speaker.pid());
    println!(
        "a peer flooding {FLOOD} prefixes (counted in {:.2} s): speaker RSS {before} KiB before, \
         {full} KiB holding them, peak {peak} KiB ({:.1} MiB), {after} KiB after they were withdrawn",
        flooded_in.as_secs_f64(),
        peak as f64 / 1024.0
    );
}

fn main() {
    if std::env::args().any(|arg| arg == "flood") {
        return flood();
    }
    flood();
    encoding();
    one_session(RouterKind::Gobgp);
    one_session(RouterKind::Bird);
    four_peers();
}
