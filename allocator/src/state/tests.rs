//! The state's life: configuration changes, adoption, sync, deferred configurations.

use std::time::SystemTime;

use metallb_proto::pb;

use super::AllocatorState;
use crate::service_spec::{ServiceKey, ServiceSpec};

fn pool(name: &str, addresses: &[&str], avoid_buggy_ips: bool) -> pb::AddressPool {
    pb::AddressPool {
        name: name.into(),
        addresses: addresses.iter().map(|a| a.to_string()).collect(),
        auto_assign: true,
        avoid_buggy_ips,
        ..Default::default()
    }
}

fn config(pools: Vec<pb::AddressPool>) -> pb::Config {
    pb::Config { pools, ..Default::default() }
}

fn service(name: &str) -> pb::Service {
    pb::Service {
        key: Some(pb::ServiceKey { namespace: "default".into(), name: name.into() }),
        ip_families: vec![pb::IpFamily::Ipv4 as i32],
        ..Default::default()
    }
}

fn spec(service: &pb::Service) -> ServiceSpec {
    ServiceSpec::from_pb(service).unwrap()
}

fn key(name: &str) -> ServiceKey {
    ServiceKey { namespace: "default".into(), name: name.into() }
}

fn ip_of(state: &AllocatorState, name: &str) -> Option<String> {
    state.lease(&key(name)).map(|lease| lease.ips.join(","))
}

fn now() -> SystemTime {
    SystemTime::now()
}

#[test]
fn an_invalid_configuration_changes_nothing() {
    let mut state = AllocatorState::default();
    assert!(
        state
            .apply_config(&config(vec![pool("a", &["192.0.2.0/24"], false)]), "test", now())
            .accepted
    );
    let response =
        state.apply_config(&config(vec![pool("a", &["192.0.2.0/33"], false)]), "test", now());
    assert!(!response.accepted);
    assert_eq!(response.errors[0].object, "IPAddressPool/a");
    assert_eq!(state.config().unwrap().pools["a"].addresses, ["192.0.2.0/24"]);
    assert!(state.config_is_stale());
}

#[test]
fn a_local_pref_conflict_on_a_known_node_is_refused_and_the_old_configuration_stays() {
    let mut state = AllocatorState::default();
    let ad = |name: &str, local_pref| pb::BgpAdvertisement {
        name: name.into(),
        local_pref: Some(local_pref),
        ..Default::default()
    };
    let conflicting = pb::Config {
        advertisements: vec![ad("a", 100), ad("b", 200)],
        ..config(vec![pool("p", &["192.0.2.0/24"], false)])
    };
    // No node yet: no node would send both, so MetalLB's rule finds nothing.
    assert!(state.apply_config(&conflicting, "test", now()).accepted);
    state.apply_config(&config(vec![pool("p", &["192.0.2.0/24"], false)]), "test", now());
    let node = pb::Node { name: "n1".into(), ..Default::default() };
    state.update_node(crate::nodes::NodeInfo::from_pb(&node).unwrap());
    let response = state.apply_config(&conflicting, "test", now());
    assert!(!response.accepted);
    assert_eq!(
        (response.errors[0].object.as_str(), response.errors[0].field.as_str()),
        ("BGPAdvertisement/b", "localPref")
    );
    assert!(state.config().unwrap().source.advertisements.is_empty(), "the previous one stays");
}

#[test]
fn the_tutorial_configuration_waits_for_the_service_holding_dot_zero_then_applies_itself() {
    let mut state = AllocatorState::default();
    state.apply_config(&config(vec![pool("my-ip-space", &["192.0.2.0/24"], false)]), "cm", now());
    state.sync(vec![], now());
    let mut nginx = service("nginx");
    state.upsert(spec(&nginx), now()).result.unwrap();
    assert_eq!(ip_of(&state, "nginx").as_deref(), Some("192.0.2.0"));

    let buggy = config(vec![pool("my-ip-space", &["192.0.2.0/24"], true)]);
    let response = state.apply_config(&buggy, "cm", now());
    assert!(!response.accepted);
    assert_eq!(response.blocking_services, [key("nginx").to_pb()]);
    assert!(
        response.errors[0].message.contains("default/nginx holds 192.0.2.0"),
        "{:?}",
        response.errors
    );
    assert!(
        !state.config().unwrap().pools["my-ip-space"].avoid_buggy_ips,
        "the old configuration stays"
    );

    nginx.load_balancer_ip = "192.0.2.1".into();
    let change = state.upsert(spec(&nginx), now());
    let (outcome, deferred) = (change.result, change.deferred);
    assert_eq!(outcome.unwrap().ips[0].to_string(), "192.0.2.1");
    assert_eq!(deferred.expect("the waiting configuration applies").source, "cm");
    assert!(state.config().unwrap().pools["my-ip-space"].avoid_buggy_ips);
    assert!(!state.config_is_stale());
}

#[test]
fn a_dry_run_answers_as_applying_would_and_changes_nothing() {
    let mut state = AllocatorState::default();
    state.apply_config(&config(vec![pool("a", &["192.0.2.0/28"], false)]), "t", now());
    state.sync(vec![Ok(spec(&service("s")))], now());
    let check = |state: &AllocatorState, config: &pb::Config| {
        state.check_validated(crate::config::validate(config))
    };
    let invalid = check(&state, &config(vec![pool("a", &["192.0.2.0/33"], false)]));
    assert!(!invalid.accepted && invalid.blocking_services.is_empty());
    let waits = check(&state, &config(vec![pool("b", &["198.51.100.0/28"], false)]));
    assert_eq!(waits.blocking_services, [key("s").to_pb()]);
    let ready = check(&state, &config(vec![pool("a", &["192.0.2.0/27"], false)]));
    assert!(ready.accepted);
    // None of it reached the state: the configuration in force is the first, nothing waits.
    assert_eq!(state.config().unwrap().pools["a"].addresses, ["192.0.2.0/28"]);
    assert!(!state.config_is_stale());
}

#[test]
fn renaming_or_splitting_a_pool_keeps_every_ip_and_is_not_blocked() {
    let mut state = AllocatorState::default();
    state.apply_config(&config(vec![pool("old", &["192.0.2.0/24"], false)]), "t", now());
    state.sync(vec![Ok(spec(&service("a"))), Ok(spec(&service("b")))], now());
    state.upsert(spec(&service("c")), now());
    let before: Vec<_> = ["a", "b", "c"].map(|name| ip_of(&state, name)).to_vec();
    // Renamed, and split in two halves: every IP is still offered.
    let split = config(vec![
        pool("low-half", &["192.0.2.0/25"], false),
        pool("high-half", &["192.0.2.128/25"], false),
    ]);
    let response = state.apply_config(&split, "t", now());
    assert!(response.accepted, "{:?}", response.errors);
    let after: Vec<_> = ["a", "b", "c"].map(|name| ip_of(&state, name)).to_vec();
    assert_eq!(after, before, "no Service moved");
    assert_eq!(state.lease(&key("a")).unwrap().pool, "low-half");
    // A split that leaves an IP out, or a pool that avoids it now, still waits.
    let narrowed = config(vec![pool("only-high", &["192.0.2.128/25"], false)]);
    assert!(!state.apply_config(&narrowed, "t", now()).accepted);
    let buggy = config(vec![pool("buggy", &["192.0.2.0/24"], true)]);
    assert!(!state.apply_config(&buggy, "t", now()).accepted, ".0 held, avoidBuggyIPs on");
}

#[test]
fn a_waiting_configuration_is_not_starved_by_services_that_arrive_meanwhile() {
    let mut state = AllocatorState::default();
    state.apply_config(&config(vec![pool("a", &["192.0.2.0/29"], false)]), "t", now());
    state.sync(vec![Ok(spec(&service("holder")))], now());
    // The new configuration drops .0-.3, which "holder" (.0) still has: it waits.
    let waiting = config(vec![pool("a", &["192.0.2.4-192.0.2.7"], false)]);
    assert!(!state.apply_config(&waiting, "t", now()).accepted);
    // A Service arriving meanwhile gets an IP the waiting configuration keeps (.4), not .1.
    state.upsert(spec(&service("newcomer")), now());
    assert_eq!(ip_of(&state, "newcomer").as_deref(), Some("192.0.2.4"));
    // The holder goes: the waiting configuration applies, the newcomer keeps its IP.
    let change = state.delete(&key("holder"), now());
    assert!(change.deferred.is_some(), "the waiting configuration took effect");
    assert_eq!(ip_of(&state, "newcomer").as_deref(), Some("192.0.2.4"));
}

#[test]
fn removing_a_pool_in_use_is_refused_and_a_newer_config_supersedes_the_waiting_one() {
    let mut state = AllocatorState::default();
    state.apply_config(&config(vec![pool("a", &["192.0.2.0/28"], false)]), "t", now());
    state.sync(vec![Ok(spec(&service("s")))], now());
    let response =
        state.apply_config(&config(vec![pool("b", &["198.51.100.0/28"], false)]), "t", now());
    assert!(!response.accepted);
    assert!(
        response.errors[0].message.contains("pool \"a\" would be removed"),
        "{:?}",
        response.errors
    );
    let keep = state.apply_config(
        &config(vec![pool("a", &["192.0.2.0/28"], false), pool("b", &["198.51.100.0/28"], false)]),
        "t",
        now(),
    );
    assert!(keep.accepted);
    state.delete(&key("s"), now());
    assert_eq!(
        state.config().unwrap().pools.len(),
        2,
        "the superseded configuration never applies"
    );
}

#[test]
fn sync_adopts_ips_in_status_before_allocating_new_ones_and_releases_absent_services() {
    let mut state = AllocatorState::default();
    state.apply_config(&config(vec![pool("a", &["192.0.2.0/30"], false)]), "t", now());
    let fresh = service("fresh");
    let mut holder = service("holder");
    holder.current_ips = vec!["192.0.2.0".into()];
    // The service without status comes first, yet may not take the held address.
    let outcomes = state.sync(vec![Ok(spec(&fresh)), Ok(spec(&holder))], now());
    assert!(outcomes.outcomes.iter().all(|outcome| outcome.as_ref().unwrap().1.is_ok()));
    assert_eq!(ip_of(&state, "holder").as_deref(), Some("192.0.2.0"));
    assert_eq!(ip_of(&state, "fresh").as_deref(), Some("192.0.2.1"));

    let released = state.sync(vec![Ok(spec(&holder))], now()).released;
    assert_eq!(released.len(), 1);
    assert_eq!(released[0].service, key("fresh"));
    assert_eq!(state.leases().len(), 1);
}

#[test]
fn a_new_pool_gives_waiting_services_their_ips_and_reports_them() {
    let mut state = AllocatorState::default();
    state.apply_config(&config(vec![pool("a", &["192.0.2.0/32"], false)]), "t", now());
    state.sync(vec![Ok(spec(&service("first"))), Ok(spec(&service("second")))], now());
    assert!(ip_of(&state, "second").is_none());
    let response =
        state.apply_config(&config(vec![pool("a", &["192.0.2.0/31"], false)]), "t", now());
    assert!(response.accepted);
    assert_eq!(response.changed.len(), 1, "{:?}", response.changed);
    assert_eq!(ip_of(&state, "second").as_deref(), Some("192.0.2.1"));
    assert_eq!(ip_of(&state, "first").as_deref(), Some("192.0.2.0"));
}

#[test]
fn nothing_is_streamed_before_the_first_sync() {
    let mut state = AllocatorState::default();
    state.apply_config(&config(vec![pool("a", &["192.0.2.0/30"], false)]), "t", now());
    assert!(state.node_view("n1").is_none());
    state.sync(vec![], now());
    assert_eq!(state.node_view("n1"), Some(pb::NodeAssignments::default()));
}

#[test]
fn pool_usage_counts_sizes_without_enumerating_and_leases_once() {
    let mut state = AllocatorState::default();
    state.apply_config(
        &config(vec![pool("big", &["192.0.2.0/24", "2001:db8::/64"], true)]),
        "t",
        now(),
    );
    let mut dual = service("dual");
    dual.ip_family_policy = pb::IpFamilyPolicy::RequireDualStack as i32;
    state.sync(vec![Ok(spec(&dual))], now());
    let usage = &state.list_pools()[0];
    let v4 = &usage.families[0];
    assert_eq!((v4.size.as_str(), v4.used, v4.free.as_str()), ("254", 1, "253"));
    let v6 = &usage.families[1];
    assert_eq!((v6.size.as_str(), v6.used), ("18446744073709551616", 1));
}

mod sync_never_cascades {
    use std::collections::{BTreeMap, BTreeSet};

    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Services whose status IPs collide: a full sync moves at most one Service per
        /// collision, the younger (the older keeps the IP), never to an IP another Service
        /// shows in its status, and leaves no IP with two holders.
        #[test]
        fn a_full_sync_moves_only_the_losers_of_conflicts(
            claims in proptest::collection::vec((0u8..24, 0u64..50), 1..40),
        ) {
            let mut state = AllocatorState::default();
            let accepted = state.apply_config(&config(vec![pool("a", &["192.0.2.0/24"], false)]), "test", now()).accepted;
            prop_assert!(accepted);
            let status_of = |n: usize| format!("192.0.2.{}", claims[n].0);
            let name_of = |n: usize| format!("s{n}");
            let created = |n: usize| std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000 + claims[n].1);
            // Listed youngest first, so that keeping the older is the rule's doing, not the order's.
            let mut order: Vec<usize> = (0..claims.len()).collect();
            order.sort_by_key(|n| std::cmp::Reverse(claims[*n].1));
            let services: Vec<pb::Service> = order
                .iter()
                .map(|&n| pb::Service {
                    current_ips: vec![status_of(n)],
                    created_at: Some(created(n).into()),
                    ..service(&name_of(n))
                })
                .collect();
            let claimed: BTreeSet<String> = (0..claims.len()).map(status_of).collect();
            let conflicts = claims.len() - claimed.len();

            state.sync(services.iter().map(ServiceSpec::from_pb).collect(), now());

            let mut moved = 0;
            let mut holders: BTreeMap<String, usize> = BTreeMap::new();
            for n in 0..claims.len() {
                let ip = ip_of(&state, &name_of(n)).expect("every Service keeps or gets an IP");
                *holders.entry(ip.clone()).or_default() += 1;
                if ip != status_of(n) {
                    moved += 1;
                    prop_assert!(!claimed.contains(&ip), "s{n} moved to {ip}, which another shows in its status");
                }
            }
            for ip in &claimed {
                let oldest = (0..claims.len())
                    .filter(|n| status_of(*n) == *ip)
                    .min_by_key(|n| (claims[*n].1, name_of(*n)))
                    .expect("claimed by someone");
                prop_assert_eq!(ip_of(&state, &name_of(oldest)), Some(ip.clone()), "the oldest claimant s{} lost {}", oldest, ip);
            }
            prop_assert!(moved <= conflicts, "{moved} moved for {conflicts} conflicts");
            prop_assert!(holders.values().all(|count| *count == 1), "an IP with two holders: {holders:?}");
        }

        /// Splitting (and renaming) the pool at any boundaries is accepted at once and moves
        /// no Service.
        #[test]
        fn a_split_pool_keeps_every_service_where_it_is(
            services in 1usize..60,
            cuts in proptest::collection::btree_set(1u8..255, 0..6),
        ) {
            let mut state = AllocatorState::default();
            state.apply_config(&config(vec![pool("whole", &["192.0.2.0/24"], false)]), "t", now());
            state.sync(vec![], now());
            for n in 0..services {
                state.upsert(spec(&service(&format!("s{n}"))), now());
            }
            let before: Vec<_> = (0..services).map(|n| ip_of(&state, &format!("s{n}"))).collect();
            let mut bounds: Vec<u8> = cuts.into_iter().collect();
            bounds.insert(0, 0);
            let pieces: Vec<pb::AddressPool> = bounds
                .iter()
                .enumerate()
                .map(|(i, first)| {
                    let last = bounds.get(i + 1).map_or(255, |next| next - 1);
                    pool(&format!("piece-{i}"), &[&format!("192.0.2.{first}-192.0.2.{last}")], false)
                })
                .collect();
            let response = state.apply_config(&config(pieces), "t", now());
            prop_assert!(response.accepted, "{:?}", response.errors);
            let after: Vec<_> = (0..services).map(|n| ip_of(&state, &format!("s{n}"))).collect();
            prop_assert_eq!(after, before);
        }

        /// While a configuration waits for Services to let go of the IPs it drops, Services that
        /// arrive get only IPs it keeps; once the holders go, it applies and nobody moves.
        #[test]
        fn a_waiting_configuration_always_takes_effect_once_its_blockers_go(
            holders in 1usize..8,
            newcomers in 0usize..20,
        ) {
            let mut state = AllocatorState::default();
            state.apply_config(&config(vec![pool("a", &["192.0.2.0/24"], false)]), "t", now());
            state.sync(vec![], now());
            for n in 0..holders {
                state.upsert(spec(&service(&format!("holder{n}"))), now());
            }
            // Drops the first 16 addresses, which the holders have.
            let waiting = config(vec![pool("a", &["192.0.2.16-192.0.2.255"], false)]);
            prop_assert!(!state.apply_config(&waiting, "t", now()).accepted);
            for n in 0..newcomers {
                state.upsert(spec(&service(&format!("new{n}"))), now());
                let ip = ip_of(&state, &format!("new{n}")).expect("an IP the waiting config keeps");
                let last: u8 = ip.rsplit('.').next().unwrap().parse().unwrap();
                prop_assert!(last >= 16, "new{n} got {ip}, which the waiting configuration drops");
            }
            let kept: Vec<_> = (0..newcomers).map(|n| ip_of(&state, &format!("new{n}"))).collect();
            let mut applied = false;
            for n in 0..holders {
                applied |= state.delete(&key(&format!("holder{n}")), now()).deferred.is_some();
            }
            prop_assert!(applied, "the waiting configuration never took effect");
            let after: Vec<_> = (0..newcomers).map(|n| ip_of(&state, &format!("new{n}"))).collect();
            prop_assert_eq!(after, kept);
        }
    }
}
