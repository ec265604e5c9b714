use std::net::Ipv4Addr;

use proptest::prelude::*;

use super::*;

const FENCE: Duration = Duration::from_millis(1000);

fn ip(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, n))
}

fn key(name: &str) -> ServiceKey {
    ServiceKey::from_pb(Some(&pb::ServiceKey { namespace: "default".into(), name: name.into() }))
        .unwrap()
}

fn candidates(nodes: &[&str]) -> Candidates {
    Candidates {
        services: BTreeSet::from([key("web")]),
        nodes: nodes.iter().map(|node| (node.to_string(), BTreeSet::new())).collect(),
    }
}

fn one_ip(nodes: &[&str]) -> BTreeMap<IpAddr, Candidates> {
    BTreeMap::from([(ip(10), candidates(nodes))])
}

/// Owners with every one of `nodes` connected, started at `t0`.
fn started(nodes: &[&str], t0: Instant) -> L2Owners {
    let mut owners = L2Owners::new(L2Fencing::new(FENCE), t0);
    for node in nodes {
        owners.stream_opened(node);
    }
    owners
}

fn owner(owners: &L2Owners) -> Option<&str> {
    owners.owners().get(&ip(10)).map(|owner| owner.node.as_str())
}

fn g() -> Duration {
    L2Fencing::new(FENCE).reassign_after()
}

#[test]
fn nobody_owns_anything_until_a_previous_instances_word_has_run_out() {
    let t0 = Instant::now();
    let mut owners = started(&["a", "b"], t0);
    let eligible = one_ip(&["a", "b"]);
    assert!(!owners.refresh(&eligible, t0));
    assert_eq!(owner(&owners), None);
    assert_eq!(owners.next_deadline(t0), Some(t0 + g()));
    assert!(owners.refresh(&eligible, t0 + g()));
    assert!(owner(&owners).is_some());
    assert_eq!(owners.announcements_of(owner(&owners).unwrap()).len(), 1);
}

#[test]
fn an_owner_keeps_its_ip_when_others_join_and_while_it_reconnects() {
    let t0 = Instant::now();
    let mut owners = started(&["a"], t0);
    owners.refresh(&one_ip(&["a"]), t0 + g());
    assert_eq!(owner(&owners), Some("a"));
    owners.stream_opened("b");
    owners.stream_opened("c");
    assert!(!owners.refresh(&one_ip(&["a", "b", "c"]), t0 + g()));
    assert_eq!(owner(&owners), Some("a"), "a joining node takes nothing");

    let lost = t0 + g() * 2;
    owners.stream_closed("a", lost);
    owners.refresh(&one_ip(&["a", "b", "c"]), lost + g() / 2);
    assert_eq!(owner(&owners), Some("a"), "a stream lost for less than the interval");
    owners.stream_opened("a");
    owners.refresh(&one_ip(&["a", "b", "c"]), lost + g() * 2);
    assert_eq!(owner(&owners), Some("a"), "back in time: kept");
}

#[test]
fn a_dead_owners_ip_moves_exactly_when_it_has_certainly_stopped_answering() {
    let t0 = Instant::now();
    let mut owners = started(&["a", "b"], t0);
    let eligible = one_ip(&["a", "b"]);
    owners.refresh(&eligible, t0 + g());
    let first = owner(&owners).unwrap().to_string();
    let other = if first == "a" { "b" } else { "a" };
    let lost = t0 + g() * 3;
    owners.stream_closed(&first, lost);
    owners.refresh(&eligible, lost);
    assert_eq!(owners.next_deadline(lost), Some(lost + g()));
    owners.refresh(&eligible, lost + g() - Duration::from_millis(1));
    assert_eq!(owner(&owners), Some(first.as_str()), "not before the interval");
    assert!(owners.refresh(&eligible, lost + g()));
    assert_eq!(owner(&owners), Some(other), "at once after it");
}

#[test]
fn an_ip_taken_from_a_live_owner_waits_for_it_to_stop() {
    let t0 = Instant::now();
    let mut owners = started(&["a", "b"], t0);
    owners.refresh(&one_ip(&["a"]), t0 + g());
    assert_eq!(owner(&owners), Some("a"));
    // Its endpoint moved to b: a still answers until it reads the withdrawal.
    let moved = t0 + g() * 2;
    assert!(owners.refresh(&one_ip(&["b"]), moved));
    assert_eq!(owner(&owners), None);
    assert_eq!(owners.next_deadline(moved), Some(moved + g()));
    owners.refresh(&one_ip(&["b"]), moved + g() - Duration::from_millis(1));
    assert_eq!(owner(&owners), None);
    owners.refresh(&one_ip(&["b"]), moved + g());
    assert_eq!(owner(&owners), Some("b"));

    // An IP that leaves layer 2 and comes back at once is quarantined the same way.
    let left = moved + g() * 2;
    owners.refresh(&BTreeMap::new(), left);
    owners.refresh(&one_ip(&["a", "b"]), left + Duration::from_millis(10));
    assert_eq!(owner(&owners), None);
}

#[test]
fn only_connected_candidates_get_new_ips() {
    let t0 = Instant::now();
    let mut owners = started(&["a"], t0);
    owners.refresh(&one_ip(&["b", "c"]), t0 + g());
    assert_eq!(owner(&owners), None, "b and c have no stream");
    owners.stream_opened("c");
    owners.refresh(&one_ip(&["b", "c"]), t0 + g());
    assert_eq!(owner(&owners), Some("c"));
}

#[derive(Clone, Debug)]
enum Step {
    Open(usize),
    Close(usize),
    Eligible(Vec<bool>),
    Wait(u64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0usize..3).prop_map(Step::Open),
        (0usize..3).prop_map(Step::Close),
        proptest::collection::vec(any::<bool>(), 3).prop_map(Step::Eligible),
        (0u64..2500).prop_map(Step::Wait),
    ]
}

proptest! {
    /// Announcers modelled as the fencing contract has them: one told it owns the IP answers
    /// until told otherwise while it has a stream (messages arrive at once), and until
    /// `fence_after` past losing its stream otherwise. Whatever happens, no node starts answering
    /// while another still may.
    #[test]
    fn two_nodes_never_answer_for_one_ip(steps in proptest::collection::vec(step(), 1..60)) {
        let names = ["a", "b", "c"];
        let t0 = Instant::now();
        let mut owners = L2Owners::new(L2Fencing::new(FENCE), t0);
        let mut now = t0;
        let mut open = [0usize; 3];
        let mut lost_at: [Option<Instant>; 3] = [None; 3];
        let mut eligible_nodes = vec![true; 3];
        // When each node stops answering: `None` while it answers with no end in sight.
        let mut answering: BTreeMap<&str, Option<Instant>> = BTreeMap::new();
        for step in steps {
            match step {
                Step::Open(n) => {
                    owners.stream_opened(names[n]);
                    open[n] += 1;
                    lost_at[n] = None;
                    // Back on its stream, an owner answers again.
                    if owner(&owners) == Some(names[n]) {
                        answering.insert(names[n], None);
                    }
                }
                Step::Close(n) if open[n] > 0 => {
                    owners.stream_closed(names[n], now);
                    open[n] -= 1;
                    if open[n] == 0 {
                        lost_at[n] = Some(now);
                        // Fenced: whatever it owns, it stops answering fence_after from now.
                        if let Some(stop) = answering.get_mut(names[n]) && stop.is_none() {
                            *stop = Some(now + FENCE);
                        }
                    }
                }
                Step::Close(_) => {}
                Step::Eligible(flags) => eligible_nodes = flags,
                Step::Wait(ms) => now += Duration::from_millis(ms),
            }
            let on: Vec<&str> = names.iter().zip(&eligible_nodes).filter(|(_, e)| **e).map(|(n, _)| *n).collect();
            let before = owner(&owners).map(str::to_string);
            owners.refresh(&one_ip(&on), now);
            let after = owner(&owners).map(str::to_string);
            if before != after {
                if let Some(old) = &before {
                    let index = names.iter().position(|n| n == old).unwrap();
                    let stop = if open[index] > 0 { now } else { lost_at[index].unwrap() + FENCE };
                    let entry = answering.entry(names[index]).or_insert(Some(stop));
                    *entry = Some(entry.map_or(stop, |s| s.min(stop)));
                }
                if let Some(new) = &after {
                    for (node, stop) in &answering {
                        if node != new {
                            prop_assert!(stop.is_some_and(|stop| stop <= now),
                                "{new} starts at {:?} while {node} answers until {:?}",
                                now - t0, stop.map(|s| s - t0));
                        }
                    }
                    let index = names.iter().position(|n| n == new).unwrap();
                    prop_assert!(open[index] > 0, "a new owner has a stream");
                    answering.insert(names[index], None);
                }
            }
            answering.retain(|_, stop| stop.is_none_or(|stop| stop > now));
        }
    }
}
