//! Our BGP speaker against BIRD 2, FRR and GoBGP, each in its own network namespace, the
//! speaker in a node namespace joined to it: iBGP and eBGP, 2-octet and 4-octet AS, IPv4 and
//! IPv6. The route appears at the router with the expected next hop, AS path, local-pref,
//! communities and large communities, lands in the router namespace's kernel table (BIRD, FRR),
//! and a withdrawal removes it.

use std::{net::IpAddr, time::Duration};

use metallb_tests::{
    bgp_routers::{LearnedRoute, Neighbor, Router, RouterConfig, RouterKind},
    child::ChildProcess,
    lab::{Lab, Node, ROUTER_V4, ROUTER_V6, in_namespace},
    tools::our_binary,
};

const WAIT: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug)]
struct Case {
    ibgp: bool,
    four_octet: bool,
    ipv6: bool,
}

impl Case {
    fn all() -> Vec<Case> {
        let mut cases = Vec::new();
        for ibgp in [false, true] {
            for four_octet in [false, true] {
                for ipv6 in [false, true] {
                    cases.push(Case { ibgp, four_octet, ipv6 });
                }
            }
        }
        cases
    }

    /// (our AS, the router's AS).
    fn asns(self) -> (u32, u32) {
        match (self.ibgp, self.four_octet) {
            (true, false) => (64512, 64512),
            (true, true) => (4_200_000_001, 4_200_000_001),
            (false, false) => (64512, 64500),
            (false, true) => (4_200_000_001, 4_200_000_000),
        }
    }

    fn prefix(self) -> &'static str {
        if self.ipv6 { "2001:db8:5::7/128" } else { "203.0.113.7/32" }
    }
}

/// Starts the speaker in `node`'s namespace, announcing `prefix` to the router.
fn announce(
    node: &Node,
    case: Case,
    prefix: &str,
    extra: &[&str],
    logs: &std::path::Path,
) -> ChildProcess {
    let (ours, theirs) = case.asns();
    let peer = if case.ipv6 { IpAddr::V6(ROUTER_V6) } else { IpAddr::V4(ROUTER_V4) };
    let mut command = in_namespace(&node.namespace, &our_binary("metallb-bgp-announce"));
    command.args([
        "--peer",
        &peer.to_string(),
        "--local-asn",
        &ours.to_string(),
        "--peer-asn",
        &theirs.to_string(),
    ]);
    command.args(["--router-id", &node.v4.to_string(), "--route", prefix, "--hold-time", "9"]);
    command.args([
        "--local-pref",
        "150",
        "--community",
        "64512:100",
        "--large-community",
        "64512:1:2",
    ]);
    command.args(extra);
    ChildProcess::spawn(&format!("announce-{}", node.namespace), command, logs).unwrap()
}

fn start_router(
    kind: RouterKind,
    lab: &Lab,
    case: Case,
    password: Option<&str>,
    graceful_restart: bool,
) -> Router {
    let (ours, theirs) = case.asns();
    let node = &lab.nodes[0];
    let address = if case.ipv6 { IpAddr::V6(node.v6) } else { IpAddr::V4(node.v4) };
    let neighbor = Neighbor {
        password: password.map(String::from),
        graceful_restart,
        ..Neighbor::new(address, ours)
    };
    let config = RouterConfig { asn: theirs, router_id: ROUTER_V4, neighbors: vec![neighbor] };
    Router::start(kind, &lab.router, &config).unwrap()
}

fn route_of(router: &Router, prefix: &str) -> anyhow::Result<Option<LearnedRoute>> {
    Ok(router.routes()?.into_iter().find(|route| route.prefix == prefix))
}

fn kernel_has(lab: &Lab, case: Case, prefix: &str, via: IpAddr) -> anyhow::Result<bool> {
    let destination = prefix.trim_end_matches("/32").trim_end_matches("/128");
    let family = if case.ipv6 { "-6" } else { "-4" };
    Ok(Lab::kernel_routes(&lab.router, family)?
        .iter()
        .any(|route| route.destination == destination && route.next_hops.contains(&via)))
}

fn interop(kind: RouterKind, case: Case) {
    let logs = tempfile::tempdir().unwrap();
    let lab = Lab::new(1).unwrap();
    let node = lab.nodes[0].clone();
    let router = start_router(kind, &lab, case, None, false);
    let mut speaker = announce(&node, case, case.prefix(), &[], logs.path());
    let node_address = if case.ipv6 { IpAddr::V6(node.v6) } else { IpAddr::V4(node.v4) };
    let context = format!("{kind:?} {case:?}");

    router
        .wait_until("Established", WAIT, |r| r.established(node_address))
        .unwrap_or_else(|err| panic!("{context}: {err}\nspeaker:\n{}", speaker.log()));
    router
        .wait_until("holding the route", WAIT, |r| Ok(route_of(r, case.prefix())?.is_some()))
        .unwrap_or_else(|err| {
            panic!(
                "{context}: {err}\nrouter holds {:?}\nspeaker:\n{}",
                router.routes(),
                speaker.log()
            )
        });
    let route = route_of(&router, case.prefix()).unwrap().unwrap();
    assert!(route.next_hops.contains(&node_address), "{context}: next hop {:?}", route.next_hops);
    let (ours, _) = case.asns();
    let expected_path: Vec<u32> = if case.ibgp { vec![] } else { vec![ours] };
    assert_eq!(route.as_path, expected_path, "{context}");
    if case.ibgp {
        assert_eq!(route.local_pref, Some(150), "{context}: LOCAL_PREF on iBGP");
    }
    assert!(
        route.communities.contains(&"64512:100".to_string()),
        "{context}: {:?}",
        route.communities
    );
    assert_eq!(route.large_communities, ["64512:1:2"], "{context}");
    if kind.installs_routes() {
        router
            .wait_until("in the kernel table", WAIT, |_| {
                kernel_has(&lab, case, case.prefix(), node_address)
            })
            .unwrap_or_else(|err| panic!("{context}: {err}"));
    }

    // SIGUSR1: the speaker withdraws everything.
    speaker.signal_and_wait(10, Duration::from_millis(1)).ok();
    router
        .wait_until("without the route", WAIT, |r| Ok(route_of(r, case.prefix())?.is_none()))
        .unwrap_or_else(|err| panic!("{context}: {err}\nspeaker:\n{}", speaker.log()));
    if kind.installs_routes() {
        router
            .wait_until("without the kernel route", WAIT, |_| {
                Ok(!kernel_has(&lab, case, case.prefix(), node_address)?)
            })
            .unwrap_or_else(|err| panic!("{context}: {err}"));
    }
    speaker
        .ensure_running()
        .unwrap_or_else(|err| panic!("{context}: the speaker died on withdrawal: {err}"));
}

fn matrix(kind: RouterKind) {
    for case in Case::all() {
        interop(kind, case);
    }
}

#[test]
fn bird_interop_matrix() {
    matrix(RouterKind::Bird);
}

#[test]
fn frr_interop_matrix() {
    matrix(RouterKind::Frr);
}

#[test]
fn gobgp_interop_matrix() {
    matrix(RouterKind::Gobgp);
}

/// Starts a router of `kind` and the speaker with `speaker_args`, over IPv4 eBGP.
fn session(
    kind: RouterKind,
    password: Option<&str>,
    graceful_restart: bool,
    speaker_args: &[&str],
) -> (tempfile::TempDir, Lab, Router, ChildProcess) {
    let logs = tempfile::tempdir().unwrap();
    let lab = Lab::new(1).unwrap();
    let case = Case { ibgp: false, four_octet: false, ipv6: false };
    let router = start_router(kind, &lab, case, password, graceful_restart);
    let speaker = announce(&lab.nodes[0].clone(), case, case.prefix(), speaker_args, logs.path());
    (logs, lab, router, speaker)
}

fn graceful_restart_keeps_routes(kind: RouterKind) {
    let prefix = "203.0.113.7/32";
    let (_logs, lab, router, mut speaker) = session(kind, None, true, &["--graceful-restart"]);
    let node = IpAddr::V4(lab.nodes[0].v4);
    router.wait_until("holding the route", WAIT, |r| Ok(route_of(r, prefix)?.is_some())).unwrap();
    // Killed, not stopped: no Cease, the connection just drops, as in a crash.
    speaker.signal_and_wait(9, Duration::from_secs(5)).unwrap();
    router.wait_until("noticing the session is down", WAIT, |r| Ok(!r.established(node)?)).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        route_of(&router, prefix).unwrap().is_some(),
        "{kind:?} dropped the route despite graceful restart:\n{}",
        router.describe()
    );

    // Without graceful restart the same crash withdraws the route at once.
    let (_logs, _lab, router, mut speaker) = session(kind, None, false, &[]);
    router.wait_until("holding the route", WAIT, |r| Ok(route_of(r, prefix)?.is_some())).unwrap();
    speaker.signal_and_wait(9, Duration::from_secs(5)).unwrap();
    router.wait_until("dropping the route", WAIT, |r| Ok(route_of(r, prefix)?.is_none())).unwrap();
}

fn md5_passwords(kind: RouterKind) {
    let (_logs, lab, router, speaker) =
        session(kind, Some("s3cret"), false, &["--password", "s3cret"]);
    let node = IpAddr::V4(lab.nodes[0].v4);
    router
        .wait_until("Established with the right password", WAIT, |r| r.established(node))
        .unwrap_or_else(|err| panic!("{err}\n{}", speaker.log()));

    let (_logs, lab, router, speaker) =
        session(kind, Some("s3cret"), false, &["--password", "wrong"]);
    let node = IpAddr::V4(lab.nodes[0].v4);
    std::thread::sleep(Duration::from_secs(5));
    assert!(!router.established(node).unwrap(), "{kind:?} accepted a wrong MD5 password");
    assert!(!speaker.log().contains("Established"), "{}", speaker.log());
}

#[test]
fn bird_graceful_restart_and_md5() {
    graceful_restart_keeps_routes(RouterKind::Bird);
    md5_passwords(RouterKind::Bird);
}

#[test]
fn frr_graceful_restart_and_md5() {
    graceful_restart_keeps_routes(RouterKind::Frr);
    md5_passwords(RouterKind::Frr);
}

#[test]
fn gobgp_graceful_restart_and_md5() {
    graceful_restart_keeps_routes(RouterKind::Gobgp);
    md5_passwords(RouterKind::Gobgp);
}

/// The OPEN each router sends decodes with our codec and round-trips; with
/// METALLB_RS_WRITE_CAPTURES=1 the bytes are saved as the codec's fixtures.
fn capture_open(kind: RouterKind) {
    use metallb_announcer::bgp::packet::{Message, WireContext, capability::Capability};
    let (_logs, lab, router, speaker) = session(kind, None, false, &[]);
    let node = IpAddr::V4(lab.nodes[0].v4);
    router.wait_until("Established", WAIT, |r| r.established(node)).unwrap();
    let captured = || {
        speaker
            .log()
            .lines()
            .rev()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .find_map(|status| {
                status["peer_open"].as_str().filter(|h| !h.is_empty()).map(String::from)
            })
    };
    router.wait_until("captured by the speaker", WAIT, |_| Ok(captured().is_some())).unwrap();
    let hex = captured().unwrap();
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    let mut buffer = bytes::BytesMut::from(bytes.as_slice());
    let Some(Message::Open(open)) =
        Message::decode_frame(&mut buffer, WireContext::default()).unwrap()
    else {
        panic!("{kind:?} sent something else first")
    };
    let (_, router_asn) = Case { ibgp: false, four_octet: false, ipv6: false }.asns();
    assert!(open.capabilities.contains(&Capability::FourOctetAs(router_asn)), "{kind:?}: {open:?}");
    assert!(open.capabilities.contains(&Capability::Multiprotocol((1, 1))), "{kind:?}: {open:?}");
    let mut encoded = bytes::BytesMut::new();
    Message::Open(open.clone()).encode(WireContext::default(), &mut encoded);
    assert_eq!(
        Message::decode_frame(&mut encoded, WireContext::default()).unwrap(),
        Some(Message::Open(open))
    );
    if std::env::var_os("METALLB_RS_WRITE_CAPTURES").is_some() {
        let path = format!(
            "{}/../announcer/src/bgp/packet/captures/{kind:?}-open.hex",
            env!("CARGO_MANIFEST_DIR")
        )
        .to_lowercase();
        std::fs::write(path, format!("{hex}\n")).unwrap();
    }
}

#[test]
fn routers_opens_decode_and_round_trip() {
    for kind in RouterKind::ALL {
        capture_open(kind);
    }
}
