//! BFD against the routers that have it, BIRD 2 (its `bfd` protocol) and FRR (`bfdd`), each in
//! a router namespace with the speaker in a node namespace: the BFD session comes up beside
//! the BGP session; when the node's link is cut (the router's side stays up, as behind a
//! switch) the router drops the speaker's route after the BFD detection time (0.9 s), long
//! before the 90 s hold time, and the speaker ends its BGP session for the same reason; when
//! the link returns, BFD and BGP come back and the route is announced again.

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use metallb_tests::{
    bgp_routers::{Neighbor, Router, RouterConfig, RouterKind},
    child::ChildProcess,
    lab::{Lab, ROUTER_V4, in_namespace},
    tools::our_binary,
};

const PREFIX: &str = "203.0.113.9/32";
const WAIT: Duration = Duration::from_secs(30);
/// Far above the detection time: a route gone before this went because of BFD.
const HOLD_TIME_SECONDS: u64 = 90;

fn route_in_kernel(lab: &Lab) -> anyhow::Result<bool> {
    let destination = PREFIX.trim_end_matches("/32");
    Ok(Lab::kernel_routes(&lab.router, "-4")?.iter().any(|route| route.destination == destination))
}

fn bfd_cut_and_recovery(kind: RouterKind) {
    let logs = tempfile::tempdir().unwrap();
    let lab = Lab::new(1).unwrap();
    let node = lab.nodes[0].clone();
    let node_address = IpAddr::V4(node.v4);
    let neighbor = Neighbor { bfd: true, ..Neighbor::new(node_address, 64512) };
    let config = RouterConfig { asn: 64500, router_id: ROUTER_V4, neighbors: vec![neighbor] };
    let router = Router::start(kind, &lab.router, &config).unwrap();
    let mut command = in_namespace(&node.namespace, &our_binary("metallb-bgp-announce"));
    command.args(["--peer", &ROUTER_V4.to_string(), "--local-asn", "64512", "--peer-asn", "64500"]);
    command.args(["--router-id", &node.v4.to_string(), "--route", PREFIX]);
    command.args(["--hold-time", &HOLD_TIME_SECONDS.to_string(), "--bfd"]);
    let speaker = ChildProcess::spawn("announce", command, logs.path()).unwrap();
    let context = |what: &str| format!("{kind:?}: {what}\nspeaker:\n{}", speaker.log());

    router
        .wait_until("BFD Up", WAIT, |r| r.bfd_up(node_address))
        .unwrap_or_else(|err| panic!("{}", context(&err.to_string())));
    router
        .wait_until("holding the route", WAIT, |_| route_in_kernel(&lab))
        .unwrap_or_else(|err| panic!("{}", context(&err.to_string())));
    assert!(speaker.log().contains(r#""bfd":"up""#), "{}", context("our side sees BFD up"));

    let cut = Instant::now();
    lab.cut_node_link(0).unwrap();
    router
        .wait_until("without the route", Duration::from_secs(10), |_| Ok(!route_in_kernel(&lab)?))
        .unwrap_or_else(|err| panic!("{}", context(&err.to_string())));
    let withdrawn_after = cut.elapsed();
    assert!(
        withdrawn_after < Duration::from_secs(HOLD_TIME_SECONDS / 3),
        "{}",
        context(&format!("withdrawn after {withdrawn_after:?}: the hold time, not BFD"))
    );
    assert!(!router.bfd_up(node_address).unwrap(), "{}", router.describe());
    // Our side reads the silence the same way and drops its BGP session at once.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !speaker.log().contains("BFD session down: down: control detection time expired") {
        assert!(Instant::now() < deadline, "{}", context("our session did not end on BFD down"));
        std::thread::sleep(Duration::from_millis(100));
    }

    lab.restore_node_link(0).unwrap();
    router
        .wait_until("BFD Up again", WAIT, |r| r.bfd_up(node_address))
        .unwrap_or_else(|err| panic!("{}", context(&err.to_string())));
    router
        .wait_until("holding the route again", WAIT, |_| route_in_kernel(&lab))
        .unwrap_or_else(|err| panic!("{}", context(&err.to_string())));
}

#[test]
fn bird_drops_the_route_on_bfd_down_and_takes_it_back() {
    bfd_cut_and_recovery(RouterKind::Bird);
}

#[test]
fn frr_drops_the_route_on_bfd_down_and_takes_it_back() {
    bfd_cut_and_recovery(RouterKind::Frr);
}
