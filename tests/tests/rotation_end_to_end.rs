//! The allocator's serving certificate rotated under the whole system (tests/src/stack.rs):
//! while a Service is routed, the certificate file is replaced as the kubelet replaces a
//! mounted Secret; the allocator reloads it, new connections get it, and nothing already
//! running notices. Every BGP session at the router stays Established throughout, the first
//! Service's route never goes away, the announcers' assignment streams are not interrupted,
//! and a Service created after the rotation is routed through those same streams.

use std::{
    net::IpAddr,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use metallb_tests::stack::{Stack, StackOptions, kube_objects::TrafficPolicy};

const FIRST: &str = "first";
const SECOND: &str = "second";
/// The first address of the pool, which the first Service gets.
const FIRST_IP: &str = "203.0.113.0";
const NODES: [&str; 2] = ["node-1", "node-2"];
/// How often the router is looked at while the rotation happens.
const WATCH_INTERVAL: Duration = Duration::from_millis(200);

/// One pool, the router as peer, and an advertisement of every pool.
fn resources(stack: &Stack) -> String {
    format!(
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata:\n  name: public\n  namespace: metallb-system\nspec:\n  addresses:\n  - 203.0.113.0/24\n---\n{}---\napiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata:\n  name: everything\n  namespace: metallb-system\nspec: {{}}\n",
        stack.bgp_peer_resource()
    )
}

/// A BGP session as BIRD's `show protocols` summarises it.
#[derive(Debug)]
struct Session {
    /// Protocol name (peer0, ...), its state ("up") and its BGP state ("Established").
    name_and_states: String,
    /// When its state last changed, as shown ("19:14:41.093").
    since: String,
}

/// How far apart two showings of the same state change may be: BIRD keeps the time on its
/// monotonic clock and converts it to wall-clock time at each showing, so the milliseconds
/// shown jitter by one or two. A session that went down and came back would show a time later
/// by at least its reconnection (and the announcers would log it, which is checked too).
const SHOWN_TIME_JITTER_MS: i64 = 20;

impl Session {
    /// Milliseconds of the day of `since`, when shown as HH:MM:SS.mmm.
    fn since_ms(&self) -> Option<i64> {
        let (hms, ms) = self.since.split_once('.')?;
        let parts: Vec<i64> =
            hms.split(':').map(|part| part.parse().ok()).collect::<Option<_>>()?;
        let [h, m, s] = parts[..] else { return None };
        Some(((h * 60 + m) * 60 + s) * 1000 + ms.parse::<i64>().ok()?)
    }

    /// Whether `later` shows the same session with no state change since `self`.
    fn unchanged_in(&self, later: &Session) -> bool {
        self.name_and_states == later.name_and_states
            && match (self.since_ms(), later.since_ms()) {
                (Some(a), Some(b)) => (a - b).abs() <= SHOWN_TIME_JITTER_MS,
                _ => self.since == later.since,
            }
    }
}

/// Every BGP session at the router.
fn sessions(stack: &Stack) -> Vec<Session> {
    let described = stack.router.describe();
    // "peer0      BGP        ---        up     19:14:41.093  Established"
    let sessions: Vec<Session> = described
        .lines()
        .filter(|line| line.starts_with("peer") && line.contains(" BGP "))
        .filter_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            let [name, _, _, state, since, ref info @ ..] = words[..] else { return None };
            Some(Session {
                name_and_states: format!("{name} {state} {}", info.join(" ")),
                since: since.to_string(),
            })
        })
        .collect();
    assert_eq!(sessions.len(), NODES.len(), "{described}");
    sessions
}

/// What is wrong at the router now, if anything: a session not Established, or the first
/// Service's route not via every node.
fn trouble(stack: &Stack, expected_hops: &[IpAddr]) -> Option<String> {
    for node in stack.nodes() {
        if !stack.router.established(IpAddr::V4(node.address)).unwrap_or(false) {
            return Some(format!("the session with {} is not Established", node.name));
        }
    }
    match stack.router_next_hops(FIRST_IP) {
        Ok(hops) if hops == expected_hops => None,
        hops => Some(format!("{FIRST_IP} routed via {hops:?}, not {expected_hops:?}")),
    }
}

#[tokio::test]
async fn rotating_the_allocators_certificate_disturbs_no_session_route_or_stream() {
    let options = StackOptions { nodes: NODES.len(), ..Default::default() };
    let stack = Stack::start(options).await.unwrap();
    stack.apply_yaml(&resources(&stack)).await.unwrap();
    stack.wait_for_sessions().await.unwrap();

    stack.set_endpoints(FIRST, &NODES).await.unwrap();
    stack.create_load_balancer(FIRST, TrafficPolicy::Cluster).await.unwrap();
    stack.wait_for_ingress(FIRST, FIRST_IP).await.unwrap();
    stack.wait_for_router_next_hops(FIRST_IP, &NODES).await.unwrap();
    let expected_hops = stack.router_next_hops(FIRST_IP).unwrap();
    let sessions_before = sessions(&stack);
    assert!(
        sessions_before.iter().all(|session| session.name_and_states.ends_with("up Established")),
        "{sessions_before:?}"
    );
    let allocator_log = stack.allocator().daemon.log();
    assert!(!allocator_log.contains("serving certificate reloaded"), "{allocator_log}");
    let announcer_logs_before: Vec<usize> =
        stack.announcers.iter().map(|announcer| announcer.log().len()).collect();

    // The router is watched while the rest happens: the first thing wrong there is kept.
    let done = AtomicBool::new(false);
    let watch = async {
        let started = Instant::now();
        while !done.load(Ordering::Relaxed) {
            if let Some(trouble) = trouble(&stack, &expected_hops) {
                return Some(format!(
                    "{:?} after the rotation began: {trouble}",
                    started.elapsed()
                ));
            }
            tokio::time::sleep(WATCH_INTERVAL).await;
        }
        None
    };
    let rotate_and_add = async {
        stack.trust.issue_serving_certificate().unwrap();
        stack
            .eventually("the allocator reloading its certificate", || async {
                stack
                    .allocator()
                    .daemon
                    .log()
                    .contains("serving certificate reloaded")
                    .then_some(())
            })
            .await
            .unwrap();
        // New connections get the new certificate and are served.
        stack.allocator_call("ListPools", "{}").unwrap();

        // A Service created now reaches the router through the streams opened before.
        stack.set_endpoints(SECOND, &NODES).await.unwrap();
        stack.create_load_balancer(SECOND, TrafficPolicy::Cluster).await.unwrap();
        let second_ip = stack
            .eventually("the second Service given an IP", || stack.ingress(SECOND))
            .await
            .unwrap();
        assert_ne!(second_ip, FIRST_IP);
        stack.wait_for_router_next_hops(&second_ip, &NODES).await.unwrap();
        done.store(true, Ordering::Relaxed);
    };
    let (trouble, ()) = tokio::join!(watch, rotate_and_add);
    if let Some(trouble) = trouble {
        panic!("{trouble}\n{}", stack.diagnostics());
    }

    // No session went down and came back between the two looks either.
    let sessions_after = sessions(&stack);
    let unchanged = sessions_before.iter().zip(&sessions_after).all(|(a, b)| a.unchanged_in(b));
    assert!(unchanged, "{sessions_before:?} then {sessions_after:?}\n{}", stack.diagnostics());
    assert_eq!(stack.router_next_hops(FIRST_IP).unwrap(), expected_hops);
    for ((announcer, before), node) in stack.announcers.iter().zip(announcer_logs_before).zip(NODES)
    {
        let log = announcer.log();
        let since_rotation = &log[before..];
        for sign in [
            "assignment stream unavailable",
            "allocator closed the assignment stream",
            "BGP session down",
            "stopping BGP session",
            "BGP session established",
        ] {
            assert!(!since_rotation.contains(sign), "{node}'s announcer says {sign:?}:\n{log}");
        }
    }
}
