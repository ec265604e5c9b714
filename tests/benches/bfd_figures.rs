//! How long a router keeps black-holing traffic towards a node whose link died: from cutting
//! the node's link (the router's side stays up, as behind a switch) to the router's kernel
//! dropping the route, as `ip monitor` reports it. With BFD (MetalLB's default profile, 300 ms
//! x 3) against BIRD and FRR over `CUTS` cuts, and without BFD, where only the BGP hold time
//! (`SHORT_HOLD_TIME`, far below the usual 90 s) can tell.
//!
//! `cargo bench -p metallb-tests --bench bfd_figures`

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use metallb_tests::{
    bgp_routers::{Neighbor, Router, RouterConfig, RouterKind},
    child::ChildProcess,
    lab::{Lab, ROUTER_V4, in_namespace},
    route_monitor::RouteMonitor,
    tools::our_binary,
};

const CUTS: usize = 10;
const HOLD_CUTS: usize = 3;
const SHORT_HOLD_TIME: u16 = 9;
const PREFIX: &str = "203.0.113.9/32";
// BIRD waits 60 s after a hold-timer error before taking the session again.
const WAIT: Duration = Duration::from_secs(120);

/// Cut-to-withdrawal times over `cuts` cuts, each after the route is back.
fn withdrawals(kind: RouterKind, bfd: bool, hold_time: u16, cuts: usize) -> Vec<Duration> {
    let logs = tempfile::tempdir().unwrap();
    let lab = Lab::new(1).unwrap();
    let node = lab.nodes[0].clone();
    let neighbor = Neighbor { bfd, ..Neighbor::new(IpAddr::V4(node.v4), 64512) };
    let config = RouterConfig { asn: 64500, router_id: ROUTER_V4, neighbors: vec![neighbor] };
    let router = Router::start(kind, &lab.router, &config).unwrap();
    let monitor = RouteMonitor::follow(&lab.router).unwrap();
    let mut command = in_namespace(&node.namespace, &our_binary("metallb-bgp-announce"));
    command.args(["--peer", &ROUTER_V4.to_string(), "--local-asn", "64512", "--peer-asn", "64500"]);
    command.args(["--router-id", &node.v4.to_string(), "--route", PREFIX]);
    command.args(["--hold-time", &hold_time.to_string()]);
    if bfd {
        command.arg("--bfd");
    }
    let _speaker = ChildProcess::spawn("announce", command, logs.path()).unwrap();
    let destination: IpAddr = PREFIX.trim_end_matches("/32").parse().unwrap();
    let mut times = Vec::new();
    for _ in 0..cuts {
        let held_since = Instant::now();
        let deadline = held_since + WAIT;
        // The route is back (added after the last removal) and, with BFD, so is BFD.
        loop {
            let changes = monitor.changes(destination);
            let held = changes.added.is_some_and(|added| changes.removed.is_none_or(|r| added > r));
            let bfd_ready = !bfd || router.bfd_up(IpAddr::V4(node.v4)).unwrap_or(false);
            if held && bfd_ready {
                break;
            }
            assert!(Instant::now() < deadline, "{kind:?}: route not back:\n{}", router.describe());
            std::thread::sleep(Duration::from_millis(50));
        }
        let cut = Instant::now();
        lab.cut_node_link(0).unwrap();
        let removed = loop {
            if let Some(removed) = monitor.changes(destination).removed.filter(|r| *r > cut) {
                break removed;
            }
            assert!(Instant::now() < cut + WAIT, "{kind:?}: route never withdrawn");
            std::thread::sleep(Duration::from_millis(10));
        };
        times.push(removed - cut);
        lab.restore_node_link(0).unwrap();
    }
    times
}

fn report(what: &str, mut times: Vec<Duration>) {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{what}: cut to withdrawal over {} cuts: p50 {:.0} ms, max {:.0} ms (min {:.0} ms)",
        times.len(),
        ms(times[times.len() / 2]),
        ms(*times.last().unwrap()),
        ms(times[0])
    );
}

fn main() {
    for kind in [RouterKind::Bird, RouterKind::Frr] {
        report(&format!("{kind:?} with BFD 300 ms x 3"), withdrawals(kind, true, 90, CUTS));
    }
    report(
        &format!("Bird without BFD, hold time {SHORT_HOLD_TIME} s"),
        withdrawals(RouterKind::Bird, false, SHORT_HOLD_TIME, HOLD_CUTS),
    );
}
