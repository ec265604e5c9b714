//! MetalLB's validation rules where they differ from a plain reading of the schema: what
//! MetalLB refuses is refused here with the field named, what it accepts is accepted. Each case
//! comes from MetalLB's `internal/config` behaviour.

use std::collections::HashMap;

use metallb_proto::pb;

use super::{
    tests::{peer, pool},
    validate,
};

fn ad(name: &str) -> pb::BgpAdvertisement {
    pb::BgpAdvertisement { name: name.into(), ..Default::default() }
}

fn selector(labels: &[(&str, &str)], values: &[&str]) -> pb::LabelSelector {
    let match_labels: HashMap<String, String> =
        labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let match_expressions = if values.is_empty() {
        vec![]
    } else {
        vec![pb::LabelSelectorRequirement {
            key: "zone".into(),
            operator: "In".into(),
            values: values.iter().map(|v| v.to_string()).collect(),
        }]
    };
    pb::LabelSelector { match_labels: match_labels.into_iter().collect(), match_expressions }
}

/// The errors of `config` as "Object field: message" lines; empty when it is accepted.
pub(super) fn errors(config: pb::Config) -> Vec<String> {
    validate(&config).err().unwrap_or_default().iter().map(ToString::to_string).collect()
}

/// Fails unless one of `config`'s errors contains `expected`.
pub(super) fn assert_refused(config: pb::Config, expected: &str) {
    let errors = errors(config);
    assert!(errors.iter().any(|e| e.contains(expected)), "no error has {expected:?}: {errors:#?}");
}

#[test]
fn a_namespace_listed_twice_in_a_pools_allocation_is_refused() {
    let mut p = pool("p", &["192.0.2.0/28"]);
    p.service_allocation = Some(pb::ServiceAllocation {
        namespaces: vec!["a".into(), "b".into(), "a".into()],
        ..Default::default()
    });
    assert_refused(
        pb::Config { pools: vec![p], ..Default::default() },
        "IPAddressPool/p serviceAllocation.namespaces[2]: \"a\" is listed twice",
    );
}

#[test]
fn duplicate_selectors_expressions_and_values_are_refused_wherever_selectors_are() {
    // The same selector twice, whatever the order of its values.
    let mut p = pool("p", &["192.0.2.0/28"]);
    p.service_allocation = Some(pb::ServiceAllocation {
        namespace_selectors: vec![selector(&[], &["a", "b"]), selector(&[], &["b", "a"])],
        service_selectors: vec![selector(&[("app", "web")], &[]), selector(&[("app", "web")], &[])],
        ..Default::default()
    });
    let mut r = peer("r");
    r.node_selectors = vec![selector(&[], &["a", "a"])];
    let mut a = ad("ad");
    a.node_selectors = vec![selector(&[("x", "1")], &[]), selector(&[("x", "1")], &[])];
    a.ip_address_pool_selectors = vec![selector(&[], &["gold", "gold"])];
    let errors = errors(pb::Config {
        pools: vec![p],
        peers: vec![r],
        advertisements: vec![a],
        ..Default::default()
    });
    for expected in [
        "IPAddressPool/p serviceAllocation.namespaceSelectors[1]: duplicate of serviceAllocation.namespaceSelectors[0]",
        "IPAddressPool/p serviceAllocation.serviceSelectors[1]: duplicate of",
        "BGPPeer/r nodeSelectors[0].matchExpressions[0].values[1]: \"a\" is listed twice",
        "BGPAdvertisement/ad nodeSelectors[1]: duplicate of nodeSelectors[0]",
        "BGPAdvertisement/ad ipAddressPoolSelectors[0].matchExpressions[0].values[1]",
    ] {
        assert!(errors.iter().any(|e| e.contains(expected)), "{expected}: {errors:#?}");
    }
    // The same expression twice in one selector.
    let mut twice = selector(&[], &["a"]);
    twice.match_expressions.push(twice.match_expressions[0].clone());
    let mut r = peer("r");
    r.node_selectors = vec![twice];
    assert_refused(
        pb::Config { peers: vec![r], ..Default::default() },
        "nodeSelectors[0].matchExpressions[1]: duplicate of nodeSelectors[0].matchExpressions[0]",
    );
}

#[test]
fn an_advertisement_listing_a_pool_peer_or_community_twice_is_refused() {
    let mut a = ad("ad");
    a.ip_address_pools = vec!["p".into(), "p".into()];
    a.peers = vec!["r".into(), "r".into()];
    a.communities = vec!["65000:1".into(), "65000:1".into()];
    let errors = errors(pb::Config {
        pools: vec![pool("p", &["192.0.2.0/28"])],
        peers: vec![peer("r")],
        advertisements: vec![a],
        ..Default::default()
    });
    for field in ["ipAddressPools[1]", "peers[1]", "communities[1]"] {
        assert!(errors.iter().any(|e| e.contains(field)), "{field}: {errors:#?}");
    }
}

#[test]
fn an_advertisement_naming_a_pool_or_peer_that_does_not_exist_is_accepted_and_selects_nothing() {
    let mut a = ad("ad");
    a.ip_address_pools = vec!["missing".into()];
    a.peers = vec!["nobody".into()];
    let config = validate(&pb::Config {
        pools: vec![pool("p", &["192.0.2.0/28"])],
        advertisements: vec![a],
        ..Default::default()
    })
    .unwrap();
    assert!(config.advertisements[0].pools.is_empty(), "the missing pool is simply not there");
}

#[test]
fn ebgp_multihop_on_an_ibgp_peer_is_refused() {
    let mut r = peer("r");
    r.peer_asn = r.my_asn;
    r.ebgp_multihop = true;
    assert_refused(pb::Config { peers: vec![r], ..Default::default() }, "BGPPeer/r ebgpMultiHop");
    let mut external = peer("e");
    external.ebgp_multihop = true;
    assert!(validate(&pb::Config { peers: vec![external], ..Default::default() }).is_ok());
}

#[test]
fn a_range_pool_is_aggregated_up_to_its_widest_piece() {
    let mut a = ad("ad");
    a.aggregation_length = Some(26);
    let config = pb::Config {
        pools: vec![pool("p", &["3.3.3.2-3.3.3.254"])],
        advertisements: vec![a.clone()],
        ..Default::default()
    };
    assert!(validate(&config).is_ok(), "MetalLB accepts /26 here: {:?}", errors(config));
    a.aggregation_length = Some(25);
    assert_refused(
        pb::Config {
            pools: vec![pool("p", &["3.3.3.2-3.3.3.254"])],
            advertisements: vec![a],
            ..Default::default()
        },
        "widest prefix /26",
    );
}

#[test]
fn addresses_are_read_as_metallb_reads_them() {
    assert_refused(
        pb::Config { pools: vec![pool("p", &[" 192.0.2.0/24"])], ..Default::default() },
        "IPAddressPool/p addresses[0]",
    );
    // Spaces around a range's ends are fine; a range across families means no addresses.
    let config = validate(&pb::Config {
        pools: vec![pool("p", &["192.0.2.1 - 192.0.2.9", "192.0.2.20-2001:db8::1"])],
        ..Default::default()
    })
    .unwrap();
    assert_eq!(config.pools["p"].ranges.len(), 1);
}

#[test]
fn the_peer_as_is_given_or_learnt_never_both() {
    let with = |peer_asn: u32, dynamic: &str| {
        errors(pb::Config {
            peers: vec![pb::BgpPeer { peer_asn, dynamic_asn: dynamic.into(), ..peer("r") }],
            ..Default::default()
        })
    };
    assert!(with(0, "internal").is_empty() && with(0, "external").is_empty());
    assert!(with(64500, "").is_empty());
    assert!(with(0, "")[0].contains("BGPPeer/r peerASN: missing"), "{:?}", with(0, ""));
    assert!(with(64500, "external")[0].contains("both set"));
    assert!(with(0, "sideways")[0].contains("dynamicASN: \"sideways\""));
}

#[test]
fn service_selectors_keep_the_default_aggregation() {
    let mut a = ad("ad");
    a.service_selectors = vec![selector(&[("app", "web")], &[])];
    a.aggregation_length = Some(32);
    let ok = pb::Config {
        pools: vec![pool("p", &["192.0.2.0/24"])],
        advertisements: vec![a.clone()],
        ..Default::default()
    };
    assert!(validate(&ok).is_ok(), "32 is the default: {:?}", errors(ok));
    a.aggregation_length = Some(24);
    assert_refused(
        pb::Config {
            pools: vec![pool("p", &["192.0.2.0/24"])],
            advertisements: vec![a],
            ..Default::default()
        },
        "BGPAdvertisement/ad aggregationLength: serviceSelectors and aggregationLength are mutually exclusive",
    );
}

#[test]
fn a_peer_identical_to_another_but_for_its_name_is_refused() {
    let twin = pb::BgpPeer { name: "r2".into(), ..peer("r1") };
    assert_refused(
        pb::Config { peers: vec![peer("r1"), twin], ..Default::default() },
        "BGPPeer/r2 spec: identical to BGPPeer \"r1\"",
    );
    let other_port = pb::BgpPeer { name: "r3".into(), peer_port: 1179, ..peer("r1") };
    assert!(
        validate(&pb::Config { peers: vec![peer("r1"), other_port], ..Default::default() }).is_ok()
    );
}
