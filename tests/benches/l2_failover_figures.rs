//! Layer 2 failover as a client on the segment sees it: from the owner's death to the first TCP
//! connection answered by the new owner. The whole system as processes (tests/src/stack.rs:
//! kube-apiserver, the watcher, the allocator, three announcers, BIRD) plus a client on the
//! nodes' segment; one Service from a layer 2 pool with endpoints on every node, whose IP every
//! node serves with its own name, so an answer says which node took the traffic.
//!
//! Each trial finds the owner (the node a connection from the client reaches), then either
//! SIGKILLs its announcer (`KILLS` trials) or sets its link down (`CUTS` trials), and times until
//! `metallb-test-echo until-not` (connections one after another, each cut off after 100 ms) is
//! answered by another node. The killed announcer is started again, or the link restored and
//! its announcer's new snapshot awaited, and the IP left `SETTLE` before the next trial (it does
//! not move back). Prints the figures; asserts only that every failover happened.
//!
//! `cargo build --release --bins && cargo bench -p metallb-tests --bench l2_failover_figures`

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use metallb_tests::stack::{Stack, StackOptions, kube_objects::TrafficPolicy, traffic};

const KILLS: usize = 20;
const CUTS: usize = 5;
const SERVICE: &str = "web";
const IP: &str = "192.0.2.200";
/// Longest a failover may take before the bench gives up (MetalLB's own take 5 s to minutes).
const LIMIT: Duration = Duration::from_secs(30);
/// Pause after the old owner is back, before the next trial.
const SETTLE: Duration = Duration::from_secs(2);

/// A pool on the segment's own subnet, announced by layer 2 only.
const RESOURCES: &str = "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata:\n  name: segment\n  namespace: metallb-system\nspec:\n  addresses:\n  - 192.0.2.200-192.0.2.209\n---\napiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata:\n  name: segment\n  namespace: metallb-system\n";

fn node_index(name: &str) -> usize {
    name.trim_start_matches("node-").parse::<usize>().expect("a node-N name") - 1
}

/// The node a TCP connection from the segment client reaches now.
async fn owner(stack: &Stack, addr: SocketAddr) -> String {
    stack
        .eventually("a node answering on the service IP", || async {
            stack.connect_from_segment(addr).ok()
        })
        .await
        .expect("an owner")
}

/// From the owner's death to another node answering; `how` names the death.
fn failover(stack: &Stack, addr: SocketAddr, old: &str, died: Instant, how: &str) -> Duration {
    let client = stack.segment_client().expect("a segment client");
    let new = traffic::until_not(client, addr, old, LIMIT)
        .unwrap_or_else(|err| panic!("{how} {old}: {err:#}\n{}", stack.diagnostics()));
    let took = died.elapsed();
    eprintln!("{how} {old}: {new} answered after {} ms", took.as_millis());
    took
}

async fn kills(stack: &mut Stack, addr: SocketAddr) -> Vec<Duration> {
    let mut times = Vec::new();
    for _ in 0..KILLS {
        let old = owner(stack, addr).await;
        let index = node_index(&old);
        let killed = Instant::now();
        stack.announcers[index].kill().expect("killed");
        times.push(failover(stack, addr, &old, killed, "SIGKILL of the announcer of"));
        stack.restart_announcer(index).expect("restarted");
        stack.announcers[index].wait_ready().await.expect("ready again");
        tokio::time::sleep(SETTLE).await;
    }
    times
}

async fn cuts(stack: &mut Stack, addr: SocketAddr) -> Vec<Duration> {
    let mut times = Vec::new();
    for _ in 0..CUTS {
        let old = owner(stack, addr).await;
        let index = node_index(&old);
        let snapshots =
            |stack: &Stack| stack.announcers[index].log().matches("snapshot applied").count();
        let before = snapshots(stack);
        let cut = Instant::now();
        stack.lab.cut_node_link(index).expect("link down");
        times.push(failover(stack, addr, &old, cut, "link down on"));
        stack.lab.restore_node_link(index).expect("link up");
        // The announcer's stream died with the link; it is back once a new snapshot arrived.
        stack
            .eventually("the announcer's stream back after the link", || async {
                (snapshots(stack) > before).then_some(())
            })
            .await
            .expect("stream back");
        tokio::time::sleep(SETTLE).await;
    }
    times
}

fn report(what: &str, mut times: Vec<Duration>) {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{what}: death to the first TCP connection answered by the new owner over {} trials: p50 {:.0} ms, max {:.0} ms (min {:.0} ms)",
        times.len(),
        ms(times[times.len() / 2]),
        ms(*times.last().unwrap()),
        ms(times[0])
    );
}

#[tokio::main]
async fn main() {
    let options = StackOptions { segment_client: true, ..Default::default() };
    let mut stack = Stack::start(options).await.expect("started");
    stack.apply_yaml(RESOURCES).await.expect("configuration applied");
    stack.set_endpoints(SERVICE, &["node-1", "node-2", "node-3"]).await.expect("endpoints");
    stack.create_load_balancer(SERVICE, TrafficPolicy::Cluster).await.expect("created");
    stack.wait_for_ingress(SERVICE, IP).await.expect("an IP");
    let addr = SocketAddr::new(IP.parse().unwrap(), 80);
    let _servers: Vec<_> =
        stack.nodes().iter().map(|node| stack.serve(&node.name, addr).expect("serving")).collect();

    let killed = kills(&mut stack, addr).await;
    let cut = cuts(&mut stack, addr).await;
    report("SIGKILL of the owner's announcer", killed);
    report("the owner's link down", cut);
}
