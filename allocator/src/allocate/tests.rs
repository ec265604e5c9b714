//! Assignment rules, case by case, as MetalLB documents them.

use std::time::SystemTime;

use metallb_proto::pb::{self, FailureReason};

use super::assign;
use crate::{
    config::{Config, validate},
    leases::{Lease, Leases},
    service_spec::{InvalidService, ServiceSpec},
};

fn pool(name: &str, addresses: &[&str]) -> pb::AddressPool {
    pb::AddressPool {
        name: name.into(),
        addresses: addresses.iter().map(|a| a.to_string()).collect(),
        auto_assign: true,
        ..Default::default()
    }
}

fn config(pools: Vec<pb::AddressPool>) -> Config {
    validate(&pb::Config { pools, ..Default::default() }).unwrap()
}

fn service(name: &str) -> pb::Service {
    pb::Service {
        key: Some(pb::ServiceKey { namespace: "default".into(), name: name.into() }),
        ip_families: vec![pb::IpFamily::Ipv4 as i32],
        ports: vec![pb::ServicePort { port: 80, protocol: pb::Protocol::Tcp as i32 }],
        ..Default::default()
    }
}

fn spec(service: &pb::Service) -> ServiceSpec {
    ServiceSpec::from_pb(service).unwrap()
}

/// Assigns and records the lease, like the allocator does.
fn give(
    config: &Config,
    leases: &mut Leases,
    service: &pb::Service,
) -> Result<Lease, super::Failure> {
    let lease = assign(Some(config), leases, &spec(service), SystemTime::now())?;
    leases.insert(lease.clone());
    Ok(lease)
}

fn ips(lease: &Lease) -> Vec<String> {
    lease.ips.iter().map(|ip| ip.to_string()).collect()
}

fn shared(name: &str, key: &str, port: u32) -> pb::Service {
    let mut svc = service(name);
    svc.sharing_key = key.into();
    svc.ports = vec![pb::ServicePort { port, protocol: pb::Protocol::Tcp as i32 }];
    svc
}

#[test]
fn addresses_are_handed_out_in_order_from_the_first_pool() {
    let config = config(vec![pool("default", &["192.0.2.0/30"])]);
    let mut leases = Leases::default();
    assert_eq!(ips(&give(&config, &mut leases, &service("a")).unwrap()), ["192.0.2.0"]);
    assert_eq!(ips(&give(&config, &mut leases, &service("b")).unwrap()), ["192.0.2.1"]);
}

#[test]
fn no_configuration_means_no_ip() {
    let failure =
        assign(None, &Leases::default(), &spec(&service("a")), SystemTime::now()).unwrap_err();
    assert_eq!(failure.reason, FailureReason::NoConfig);
}

#[test]
fn a_requested_ip_is_given_when_inside_a_pool_and_refused_with_the_pools_otherwise() {
    let config = config(vec![pool("default", &["192.0.2.0/24"])]);
    let mut leases = Leases::default();
    let mut svc = service("a");
    svc.load_balancer_ip = "192.0.2.77".into();
    assert_eq!(ips(&give(&config, &mut leases, &svc).unwrap()), ["192.0.2.77"]);

    let mut outside = service("b");
    outside.load_balancer_ips = vec!["198.51.100.5".into()];
    let failure = give(&config, &mut leases, &outside).unwrap_err();
    assert_eq!(failure.reason, FailureReason::IpNotInAnyPool);
    assert_eq!(failure.message, "198.51.100.5 is not in any pool (pools: default 192.0.2.0/24)");
}

#[test]
fn load_balancer_ip_and_the_annotation_together_are_an_error() {
    let mut svc = service("a");
    svc.load_balancer_ip = "192.0.2.1".into();
    svc.load_balancer_ips = vec!["192.0.2.2".into()];
    let InvalidService { message, .. } = ServiceSpec::from_pb(&svc).unwrap_err();
    assert!(message.contains("both set"), "{message}");
}

#[test]
fn a_requested_ip_held_by_another_service_is_refused() {
    let config = config(vec![pool("default", &["192.0.2.0/24"])]);
    let mut leases = Leases::default();
    let mut a = service("a");
    a.load_balancer_ip = "192.0.2.5".into();
    give(&config, &mut leases, &a).unwrap();
    let mut b = service("b");
    b.load_balancer_ip = "192.0.2.5".into();
    let failure = give(&config, &mut leases, &b).unwrap_err();
    assert_eq!(failure.reason, FailureReason::IpInUse);
    assert!(failure.message.contains("held by default/a"), "{}", failure.message);
}

#[test]
fn the_pool_annotation_picks_the_pool_and_an_unknown_pool_is_reported() {
    let config = config(vec![pool("a", &["192.0.2.0/28"]), pool("b", &["192.0.2.16/28"])]);
    let mut leases = Leases::default();
    let mut svc = service("s");
    svc.pool = "b".into();
    let lease = give(&config, &mut leases, &svc).unwrap();
    assert_eq!((lease.pool.as_str(), ips(&lease)), ("b", vec!["192.0.2.16".to_string()]));
    svc.pool = "c".into();
    assert_eq!(give(&config, &mut leases, &svc).unwrap_err().reason, FailureReason::UnknownPool);
}

#[test]
fn auto_assign_false_pools_serve_only_on_request() {
    let mut manual = pool("manual", &["192.0.2.0/28"]);
    manual.auto_assign = false;
    let config = config(vec![manual, pool("auto", &["192.0.2.16/28"])]);
    let mut leases = Leases::default();
    assert_eq!(give(&config, &mut leases, &service("a")).unwrap().pool, "auto");
    let mut by_pool = service("b");
    by_pool.pool = "manual".into();
    assert_eq!(give(&config, &mut leases, &by_pool).unwrap().pool, "manual");
    let mut by_ip = service("c");
    by_ip.load_balancer_ip = "192.0.2.3".into();
    assert_eq!(give(&config, &mut leases, &by_ip).unwrap().pool, "manual");
}

#[test]
fn pools_are_tried_by_priority_then_unprioritised() {
    let mut high = pool("high", &["192.0.2.32/32"]);
    high.service_allocation = Some(pb::ServiceAllocation { priority: 1, ..Default::default() });
    let mut low = pool("low", &["192.0.2.64/32"]);
    low.service_allocation = Some(pb::ServiceAllocation { priority: 5, ..Default::default() });
    let config = config(vec![pool("aaa-none", &["192.0.2.0/32"]), low, high]);
    let mut leases = Leases::default();
    let order: Vec<String> = ["a", "b", "c"]
        .iter()
        .map(|n| give(&config, &mut leases, &service(n)).unwrap().pool)
        .collect();
    assert_eq!(order, ["high", "low", "aaa-none"]);
    let failure = give(&config, &mut leases, &service("d")).unwrap_err();
    assert_eq!(failure.reason, FailureReason::PoolExhausted);
}

#[test]
fn pools_with_a_service_allocation_come_before_general_ones_whatever_their_names() {
    // MetalLB: the pools whose serviceAllocation matches (by priority, unprioritised last),
    // and only then the pools without one.
    let mut selective = pool("zzz-selective", &["192.0.2.32/32"]);
    selective.service_allocation =
        Some(pb::ServiceAllocation { namespaces: vec!["default".into()], ..Default::default() });
    let mut prioritised = pool("zzz-first", &["192.0.2.48/32"]);
    prioritised.service_allocation =
        Some(pb::ServiceAllocation { priority: 3, ..Default::default() });
    let config = config(vec![pool("aaa-general", &["192.0.2.0/32"]), selective, prioritised]);
    let mut leases = Leases::default();
    let order: Vec<String> = ["a", "b", "c"]
        .iter()
        .map(|n| give(&config, &mut leases, &service(n)).unwrap().pool)
        .collect();
    assert_eq!(order, ["zzz-first", "zzz-selective", "aaa-general"]);
}

#[test]
fn prefer_dual_stack_prefers_a_pool_with_both_families() {
    let config = config(vec![
        pool("a-v4", &["192.0.2.0/28"]),
        pool("b-dual", &["192.0.2.16/28", "2001:db8::/64"]),
        pool("c-v6", &["2001:db8:1::/126"]),
    ]);
    let mut prefer = service("prefer");
    prefer.ip_families = vec![pb::IpFamily::Ipv4 as i32, pb::IpFamily::Ipv6 as i32];
    prefer.ip_family_policy = pb::IpFamilyPolicy::PreferDualStack as i32;
    let lease = give(&config, &mut Leases::default(), &prefer).unwrap();
    assert_eq!(
        (lease.pool.as_str(), ips(&lease)),
        ("b-dual", vec!["192.0.2.16".into(), "2001:db8::".into()])
    );
    // No pool with both: the first with the primary family; with none, the secondary alone.
    let v6_only = self::config(vec![pool("c-v6", &["2001:db8:1::/126"])]);
    let lease = give(&v6_only, &mut Leases::default(), &prefer).unwrap();
    assert_eq!(ips(&lease), ["2001:db8:1::"]);
    // Holding only the secondary is a valid lease: it is not moved on re-evaluation.
    let mut leases = Leases::default();
    let first = give(&v6_only, &mut leases, &prefer).unwrap();
    let again = assign(Some(&v6_only), &leases, &spec(&prefer), SystemTime::now()).unwrap();
    assert_eq!(again.ips, first.ips);
}

#[test]
fn namespaces_and_selectors_restrict_a_pool() {
    let mut team = pool("team", &["192.0.2.0/28"]);
    team.service_allocation = Some(pb::ServiceAllocation {
        namespaces: vec!["team-a".into()],
        service_selectors: vec![pb::LabelSelector {
            match_labels: [("expose".to_string(), "yes".to_string())].into(),
            ..Default::default()
        }],
        ..Default::default()
    });
    let config = config(vec![team]);
    let mut leases = Leases::default();
    let mut svc = service("s");
    assert_eq!(give(&config, &mut leases, &svc).unwrap_err().reason, FailureReason::NoMatchingPool);
    svc.key.as_mut().unwrap().namespace = "team-a".into();
    assert_eq!(give(&config, &mut leases, &svc).unwrap_err().reason, FailureReason::NoMatchingPool);
    svc.labels.insert("expose".into(), "yes".into());
    assert!(give(&config, &mut leases, &svc).is_ok());
}

#[test]
fn dual_stack_policies() {
    let config = config(vec![
        pool("v4", &["192.0.2.0/28"]),
        pool("dual", &["192.0.2.16/28", "2001:db8::/64"]),
    ]);
    let mut leases = Leases::default();
    let mut require = service("require");
    require.ip_family_policy = pb::IpFamilyPolicy::RequireDualStack as i32;
    let lease = give(&config, &mut leases, &require).unwrap();
    assert_eq!(
        (lease.pool.as_str(), ips(&lease)),
        ("dual", vec!["192.0.2.16".into(), "2001:db8::".into()])
    );

    let mut prefer = service("prefer");
    prefer.ip_family_policy = pb::IpFamilyPolicy::PreferDualStack as i32;
    assert_eq!(ips(&give(&config, &mut leases, &prefer).unwrap()), ["192.0.2.17", "2001:db8::1"]);
    // With only IPv4 to offer, prefer takes one address.
    let v4_only = self::config(vec![pool("v4", &["192.0.2.0/28"])]);
    assert_eq!(ips(&give(&v4_only, &mut Leases::default(), &prefer).unwrap()), ["192.0.2.0"]);

    let mut v6 = service("v6");
    v6.ip_families = vec![pb::IpFamily::Ipv6 as i32];
    assert_eq!(ips(&give(&config, &mut leases, &v6).unwrap()), ["2001:db8::2"]);

    let failure = give(&v4_only, &mut Leases::default(), &require).unwrap_err();
    assert_eq!(failure.reason, FailureReason::NoMatchingPool);
    assert!(failure.message.contains("IPv4 and IPv6"), "{}", failure.message);
}

#[test]
fn a_single_stack_service_cannot_request_the_other_family() {
    let config = config(vec![pool("dual", &["192.0.2.0/28", "2001:db8::/64"])]);
    let mut svc = service("s");
    svc.load_balancer_ips = vec!["2001:db8::5".into()];
    let failure = give(&config, &mut Leases::default(), &svc).unwrap_err();
    assert_eq!(failure.reason, FailureReason::InvalidRequest);
}

#[test]
fn services_with_one_sharing_key_and_distinct_ports_share_an_ip() {
    let config = config(vec![pool("default", &["192.0.2.0/28"])]);
    let mut leases = Leases::default();
    let web = give(&config, &mut leases, &shared("web", "k", 80)).unwrap();
    let tls = give(&config, &mut leases, &shared("tls", "k", 443)).unwrap();
    assert_eq!(web.ips, tls.ips);
    // Same port: not shareable, so a fresh IP.
    let clash = give(&config, &mut leases, &shared("clash", "k", 80)).unwrap();
    assert_ne!(clash.ips, web.ips);
    // Another key: not shareable either.
    let other = give(&config, &mut leases, &shared("other", "z", 8080)).unwrap();
    assert!(other.ips != web.ips && other.ips != clash.ips);
}

#[test]
fn requesting_a_shared_ip_with_a_colliding_port_says_which_port() {
    let config = config(vec![pool("default", &["192.0.2.0/28"])]);
    let mut leases = Leases::default();
    give(&config, &mut leases, &shared("web", "k", 80)).unwrap();
    let mut clash = shared("clash", "k", 80);
    clash.load_balancer_ip = "192.0.2.0".into();
    let failure = give(&config, &mut leases, &clash).unwrap_err();
    assert_eq!(failure.reason, FailureReason::IpInUse);
    assert!(failure.message.contains("tcp/80"), "{}", failure.message);
}

#[test]
fn local_traffic_services_share_only_with_identical_pod_selectors() {
    let config = config(vec![pool("default", &["192.0.2.0/28"])]);
    let mut leases = Leases::default();
    let mut a = shared("a", "k", 80);
    a.external_traffic_policy = pb::TrafficPolicy::Local as i32;
    a.selector.insert("app".into(), "web".into());
    let a_lease = give(&config, &mut leases, &a).unwrap();
    let mut b = shared("b", "k", 443);
    b.selector.insert("app".into(), "other".into());
    assert_ne!(give(&config, &mut leases, &b).unwrap().ips, a_lease.ips);
    let mut c = shared("c", "k", 8443);
    c.selector.insert("app".into(), "web".into());
    assert_eq!(give(&config, &mut leases, &c).unwrap().ips, a_lease.ips);
}

#[test]
fn avoid_buggy_ips_skips_dot_zero_and_dot_255_and_refuses_them_on_request() {
    let mut buggy = pool("default", &["192.0.2.0/24"]);
    buggy.avoid_buggy_ips = true;
    let config = config(vec![buggy]);
    let mut leases = Leases::default();
    assert_eq!(ips(&give(&config, &mut leases, &service("a")).unwrap()), ["192.0.2.1"]);
    let mut zero = service("z");
    zero.load_balancer_ip = "192.0.2.0".into();
    assert!(give(&config, &mut leases, &zero).unwrap_err().message.contains("avoid-buggy-ips"));
}

#[test]
fn a_valid_assignment_is_kept_even_when_a_lower_ip_frees_up() {
    let config = config(vec![pool("default", &["192.0.2.0/28"])]);
    let mut leases = Leases::default();
    give(&config, &mut leases, &service("a")).unwrap();
    let b = give(&config, &mut leases, &service("b")).unwrap();
    leases.remove(&b.service.clone());
    leases.insert(b.clone());
    leases
        .remove(&crate::service_spec::ServiceKey { namespace: "default".into(), name: "a".into() });
    let again = give(&config, &mut leases, &service("b")).unwrap();
    assert_eq!((again.ips.clone(), again.assigned_at), (b.ips, b.assigned_at));
}

#[test]
fn changing_the_requested_ip_moves_the_service() {
    let config = config(vec![pool("default", &["192.0.2.0/28"])]);
    let mut leases = Leases::default();
    let mut svc = service("a");
    assert_eq!(ips(&give(&config, &mut leases, &svc).unwrap()), ["192.0.2.0"]);
    svc.load_balancer_ip = "192.0.2.1".into();
    assert_eq!(ips(&give(&config, &mut leases, &svc).unwrap()), ["192.0.2.1"]);
}

#[test]
fn ips_in_the_status_are_adopted_and_invalid_ones_replaced() {
    let config = config(vec![pool("default", &["192.0.2.0/28"])]);
    let mut leases = Leases::default();
    let mut svc = service("a");
    svc.current_ips = vec!["192.0.2.9".into()];
    assert_eq!(ips(&give(&config, &mut leases, &svc).unwrap()), ["192.0.2.9"]);
    let mut stale = service("b");
    stale.current_ips = vec!["198.51.100.1".into()];
    assert_eq!(ips(&give(&config, &mut leases, &stale).unwrap()), ["192.0.2.0"]);
}
