//! Property: whatever happens — upserts, deletes, configuration changes, restarts, syncs — no
//! IP is ever held by two services that may not share it, every held IP belongs to its pool,
//! and a restart followed by the watcher's sync moves no IP.
//!
//! The sharing rule is re-stated here independently of the allocator's code: that is the
//! simple model the random sequences are checked against.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    time::SystemTime,
};

use metallb_allocator::{
    address::Address,
    service_spec::{ServiceKey, ServiceSpec},
    state::AllocatorState,
};
use metallb_proto::pb;
use proptest::prelude::*;

const SERVICES: usize = 10;

#[derive(Clone, Debug)]
enum Op {
    Upsert { service: usize, shape: ServiceShape },
    Delete { service: usize },
    Config { layout: usize },
    Restart,
    Sync,
}

#[derive(Clone, Debug)]
struct ServiceShape {
    sharing_key: Option<&'static str>,
    port: u32,
    local: bool,
    app: &'static str,
    family: usize,
    requested: Option<&'static str>,
    pool: Option<&'static str>,
}

fn shape() -> impl Strategy<Value = ServiceShape> {
    (
        prop_oneof![Just(None), Just(Some("a")), Just(Some("b"))],
        prop_oneof![Just(80u32), Just(443u32)],
        any::<bool>(),
        prop_oneof![Just("x"), Just("y")],
        0usize..4,
        prop_oneof![
            4 => Just(None),
            1 => Just(Some("192.0.2.1")),
            1 => Just(Some("192.0.2.8")),
            1 => Just(Some("2001:db8::2")),
            1 => Just(Some("203.0.113.1")),
        ],
        prop_oneof![4 => Just(None), 1 => Just(Some("p1")), 1 => Just(Some("p2"))],
    )
        .prop_map(|(sharing_key, port, local, app, family, requested, pool)| ServiceShape {
            sharing_key,
            port,
            local,
            app,
            family,
            requested,
            pool,
        })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0..SERVICES, shape()).prop_map(|(service, shape)| Op::Upsert { service, shape }),
        3 => (0..SERVICES).prop_map(|service| Op::Delete { service }),
        2 => (0usize..4).prop_map(|layout| Op::Config { layout }),
        1 => Just(Op::Restart),
        1 => Just(Op::Sync),
    ]
}

/// Small pools, so services compete and share.
fn layout(n: usize) -> pb::Config {
    let pool = |name: &str, addresses: &[&str], auto_assign: bool, avoid_buggy_ips: bool| {
        pb::AddressPool {
            name: name.into(),
            addresses: addresses.iter().map(|a| a.to_string()).collect(),
            auto_assign,
            avoid_buggy_ips,
            ..Default::default()
        }
    };
    let pools = match n {
        0 => vec![pool("p1", &["192.0.2.0/30", "2001:db8::/126"], true, false)],
        1 => vec![
            pool("p1", &["192.0.2.0/29", "2001:db8::/126"], true, false),
            pool("p2", &["192.0.2.8/30"], false, false),
        ],
        2 => vec![
            pool("p1", &["192.0.2.0/29", "2001:db8::/125"], true, true),
            pool("p2", &["192.0.2.8/29"], true, false),
        ],
        _ => vec![pool("p2", &["192.0.2.0-192.0.2.9", "2001:db8::/126"], true, false)],
    };
    pb::Config { pools, ..Default::default() }
}

fn service(index: usize, shape: &ServiceShape, current_ips: Vec<String>) -> pb::Service {
    let (families, policy) = match shape.family {
        0 => (vec![pb::IpFamily::Ipv4], pb::IpFamilyPolicy::SingleStack),
        1 => (vec![pb::IpFamily::Ipv6], pb::IpFamilyPolicy::SingleStack),
        2 => (vec![pb::IpFamily::Ipv4, pb::IpFamily::Ipv6], pb::IpFamilyPolicy::PreferDualStack),
        _ => (vec![pb::IpFamily::Ipv6, pb::IpFamily::Ipv4], pb::IpFamilyPolicy::RequireDualStack),
    };
    pb::Service {
        key: Some(pb::ServiceKey { namespace: "default".into(), name: format!("s{index}") }),
        load_balancer_ips: shape.requested.iter().map(|ip| ip.to_string()).collect(),
        pool: shape.pool.unwrap_or_default().into(),
        sharing_key: shape.sharing_key.unwrap_or_default().into(),
        ports: vec![pb::ServicePort { port: shape.port, protocol: pb::Protocol::Tcp as i32 }],
        ip_families: families.into_iter().map(|f| f as i32).collect(),
        ip_family_policy: policy as i32,
        external_traffic_policy: if shape.local {
            pb::TrafficPolicy::Local
        } else {
            pb::TrafficPolicy::Cluster
        } as i32,
        selector: [("app".to_string(), shape.app.to_string())].into(),
        current_ips,
        ..Default::default()
    }
}

/// The model: which services exist (with their shape) and the configuration last offered.
struct Model {
    services: BTreeMap<usize, ServiceShape>,
    accepted_layout: Option<usize>,
}

fn may_share(a: &ServiceShape, b: &ServiceShape) -> bool {
    a.sharing_key.is_some()
        && a.sharing_key == b.sharing_key
        && a.port != b.port
        && ((!a.local && !b.local) || a.app == b.app)
}

fn key(index: usize) -> ServiceKey {
    ServiceKey { namespace: "default".into(), name: format!("s{index}").into() }
}

fn held_ips(state: &AllocatorState, index: usize) -> Vec<String> {
    state.lease(&key(index)).map(|lease| lease.ips).unwrap_or_default()
}

fn check(state: &AllocatorState, model: &Model) -> Result<(), TestCaseError> {
    let mut holders: BTreeMap<IpAddr, Vec<usize>> = BTreeMap::new();
    for lease in state.leases().iter() {
        let index: usize = lease.service.name[1..].parse().unwrap();
        prop_assert!(
            model.services.contains_key(&index),
            "deleted service {} holds {:?}",
            lease.service,
            lease.ips
        );
        let families: BTreeSet<bool> = lease.ips.iter().map(IpAddr::is_ipv4).collect();
        prop_assert_eq!(families.len(), lease.ips.len(), "two IPs of one family: {:?}", lease.ips);
        let pool = &state.config().expect("a lease implies a configuration").pools[&lease.pool];
        for ip in &lease.ips {
            prop_assert!(
                pool.offers(Address::from_ip(*ip)),
                "{} holds {ip}, which pool {} does not offer",
                lease.service,
                lease.pool
            );
            holders.entry(*ip).or_default().push(index);
        }
    }
    for (ip, services) in holders {
        for (i, a) in services.iter().enumerate() {
            for b in &services[i + 1..] {
                prop_assert!(
                    may_share(&model.services[a], &model.services[b]),
                    "{ip} is held by s{a} {:?} and s{b} {:?}, which may not share",
                    model.services[a],
                    model.services[b]
                );
            }
        }
    }
    Ok(())
}

/// What the watcher would send after a restart: every service, with its status IPs.
fn sync_request(
    state: &AllocatorState,
    model: &Model,
) -> Vec<Result<ServiceSpec, metallb_allocator::service_spec::InvalidService>> {
    model
        .services
        .iter()
        .map(|(index, shape)| {
            ServiceSpec::from_pb(&service(*index, shape, held_ips(state, *index)))
        })
        .collect()
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let now = SystemTime::now();
    let mut state = AllocatorState::default();
    let mut model = Model { services: BTreeMap::new(), accepted_layout: None };
    state.sync(vec![], now);
    for op in ops {
        match op {
            Op::Upsert { service: index, shape } => {
                let current = held_ips(&state, index);
                match ServiceSpec::from_pb(&service(index, &shape, current)) {
                    Ok(spec) => drop(state.upsert(spec, now)),
                    Err(invalid) => drop(state.reject(&invalid)),
                }
                model.services.insert(index, shape);
            }
            Op::Delete { service } => {
                state.delete(&key(service), now);
                model.services.remove(&service);
            }
            Op::Config { layout: n } => {
                if state.apply_config(&layout(n), "test", now).accepted {
                    model.accepted_layout = Some(n);
                }
            }
            Op::Restart => {
                let before: Vec<_> =
                    model.services.keys().map(|index| (*index, held_ips(&state, *index))).collect();
                let request = sync_request(&state, &model);
                let config = state.config().map(|config| config.source.clone());
                state = AllocatorState::default();
                if let Some(config) = config {
                    prop_assert!(state.apply_config(&config, "restart", now).accepted);
                }
                state.sync(request, now);
                for (index, ips) in before.into_iter().filter(|(_, ips)| !ips.is_empty()) {
                    prop_assert_eq!(
                        held_ips(&state, index),
                        ips,
                        "s{} moved across a restart",
                        index
                    );
                }
            }
            Op::Sync => {
                let before: Vec<_> =
                    model.services.keys().map(|index| (*index, held_ips(&state, *index))).collect();
                let request = sync_request(&state, &model);
                let released = state.sync(request, now).released;
                prop_assert!(released.is_empty(), "a sync of every service released {released:?}");
                for (index, ips) in before.into_iter().filter(|(_, ips)| !ips.is_empty()) {
                    prop_assert_eq!(
                        held_ips(&state, index),
                        ips,
                        "s{} churned on a no-op sync",
                        index
                    );
                }
            }
        }
        check(&state, &model)?;
    }
    Ok(())
}

proptest! {
    // Thousands of sequences; PROPTEST_CASES overrides for a longer soak.
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn no_ip_is_held_by_two_services_that_may_not_share_it(ops in prop::collection::vec(op(), 1..60)) {
        run(ops)?;
    }
}
