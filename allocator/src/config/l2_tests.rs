//! L2Advertisement validation, one case per rule: what MetalLB 0.16 refuses (its
//! `internal/config` reading of an L2Advertisement) is refused naming the field, what it accepts
//! is accepted and means the same; the interface-name rule is ours and says so.

use std::collections::{BTreeSet, HashMap};

use metallb_proto::pb;

use super::{
    metallb_rules_tests::{assert_refused, errors},
    tests::pool,
    validate,
};

fn l2(name: &str) -> pb::L2Advertisement {
    pb::L2Advertisement { name: name.into(), ..Default::default() }
}

fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn by_labels(pairs: &[(&str, &str)]) -> pb::LabelSelector {
    pb::LabelSelector { match_labels: labels(pairs), match_expressions: vec![] }
}

fn by_expression(key: &str, operator: &str, values: &[&str]) -> pb::LabelSelector {
    pb::LabelSelector {
        match_labels: HashMap::new(),
        match_expressions: vec![pb::LabelSelectorRequirement {
            key: key.into(),
            operator: operator.into(),
            values: values.iter().map(|v| v.to_string()).collect(),
        }],
    }
}

/// Pools "gold" (labelled tier=gold) and "silver", with `ads`.
fn with(ads: Vec<pb::L2Advertisement>) -> pb::Config {
    let mut gold = pool("gold", &["192.0.2.0/28"]);
    gold.labels = labels(&[("tier", "gold")]);
    pb::Config {
        pools: vec![gold, pool("silver", &["198.51.100.0/28"])],
        l2_advertisements: ads,
        ..Default::default()
    }
}

#[test]
fn an_l2advertisement_without_pools_or_selectors_applies_to_every_pool() {
    // MetalLB's "empty" L2Advertisement, the one its layer 2 documentation starts with.
    let config = validate(&with(vec![l2("empty")])).unwrap();
    let ad = &config.l2_advertisements[0];
    assert_eq!(ad.pools, ["gold", "silver"]);
    assert!(ad.node_selectors.is_empty() && ad.interfaces.is_empty(), "every node, interface");
}

#[test]
fn pools_by_name_and_by_label_are_united_and_a_missing_pool_selects_nothing() {
    let by_name = pb::L2Advertisement { ip_address_pools: vec!["silver".into()], ..l2("a") };
    let by_label = pb::L2Advertisement {
        ip_address_pool_selectors: vec![by_labels(&[("tier", "gold")])],
        ..l2("b")
    };
    let both = pb::L2Advertisement {
        ip_address_pools: vec!["silver".into()],
        ip_address_pool_selectors: vec![by_labels(&[("tier", "gold")])],
        ..l2("c")
    };
    // As MetalLB: a pool that does not exist (yet) is no error, and selects nothing; it does
    // not fall back to every pool either.
    let missing = pb::L2Advertisement { ip_address_pools: vec!["bronze".into()], ..l2("d") };
    let config = validate(&with(vec![by_name, by_label, both, missing])).unwrap();
    let pools: Vec<Vec<String>> =
        config.l2_advertisements.iter().map(|ad| ad.pools.clone()).collect();
    assert_eq!(pools, [vec!["silver"], vec!["gold"], vec!["gold", "silver"], vec![]]);
}

#[test]
fn a_pool_named_twice_is_refused() {
    let ad = pb::L2Advertisement {
        ip_address_pools: vec!["gold".into(), "silver".into(), "gold".into()],
        ..l2("twice")
    };
    assert_refused(
        with(vec![ad]),
        "L2Advertisement/twice ipAddressPools[2]: \"gold\" is listed twice (first at ipAddressPools[0])",
    );
}

#[test]
fn a_pool_selector_listed_twice_is_refused() {
    // MetalLB's "use duplicate ip pool selectors - in L2 adv".
    let ad = pb::L2Advertisement {
        ip_address_pool_selectors: vec![
            by_labels(&[("tier", "gold")]),
            by_labels(&[("tier", "gold")]),
        ],
        ..l2("ad")
    };
    assert_refused(
        with(vec![ad]),
        "L2Advertisement/ad ipAddressPoolSelectors[1]: duplicate of ipAddressPoolSelectors[0]",
    );
}

#[test]
fn a_node_selector_listed_twice_is_refused_whatever_the_order_of_its_values() {
    let ad = pb::L2Advertisement {
        node_selectors: vec![
            by_expression("kubernetes.io/hostname", "In", &["first", "second"]),
            by_expression("kubernetes.io/hostname", "In", &["second", "first"]),
        ],
        ..l2("ad")
    };
    assert_refused(
        with(vec![ad]),
        "L2Advertisement/ad nodeSelectors[1]: duplicate of nodeSelectors[0]",
    );
}

#[test]
fn an_expression_twice_in_a_selector_or_a_value_twice_in_an_expression_is_refused() {
    let mut twice = by_expression("kubernetes.io/hostname", "In", &["first"]);
    twice.match_expressions.push(twice.match_expressions[0].clone());
    let expression = pb::L2Advertisement { node_selectors: vec![twice], ..l2("expression") };
    let value = pb::L2Advertisement {
        ip_address_pool_selectors: vec![by_expression("tier", "In", &["gold", "gold"])],
        ..l2("value")
    };
    let errors = errors(with(vec![expression, value]));
    for expected in [
        "L2Advertisement/expression nodeSelectors[0].matchExpressions[1]: duplicate of nodeSelectors[0].matchExpressions[0]",
        "L2Advertisement/value ipAddressPoolSelectors[0].matchExpressions[0].values[1]: \"gold\" is listed twice",
    ] {
        assert!(errors.iter().any(|e| e.contains(expected)), "{expected}: {errors:#?}");
    }
}

#[test]
fn a_selector_that_does_not_parse_is_refused() {
    // MetalLB fails on what metav1.LabelSelectorAsSelector refuses.
    let nodes = pb::L2Advertisement {
        node_selectors: vec![by_expression("rack", "Near", &["a"])],
        ..l2("nodes")
    };
    let pools = pb::L2Advertisement {
        ip_address_pool_selectors: vec![by_expression("tier", "In", &[])],
        ..l2("pools")
    };
    let errors = errors(with(vec![nodes, pools]));
    for expected in [
        "L2Advertisement/nodes nodeSelectors[0]: unknown operator \"Near\"",
        "L2Advertisement/pools ipAddressPoolSelectors[0]: operator In on \"tier\" needs at least one value",
    ] {
        assert!(errors.iter().any(|e| e.contains(expected)), "{expected}: {errors:#?}");
    }
}

#[test]
fn node_selectors_are_compiled_and_any_one_matching_suffices() {
    // MetalLB's documented example: first-pool announced from NodeA or NodeB only.
    let ad = pb::L2Advertisement {
        ip_address_pools: vec!["gold".into()],
        node_selectors: vec![
            by_labels(&[("kubernetes.io/hostname", "NodeA")]),
            by_labels(&[("kubernetes.io/hostname", "NodeB")]),
        ],
        ..l2("example")
    };
    let config = validate(&with(vec![ad])).unwrap();
    let selectors = &config.l2_advertisements[0].node_selectors;
    let node = |name: &str| labels(&[("kubernetes.io/hostname", name)]);
    assert!(selectors.iter().any(|s| s.matches(&node("NodeB"))));
    assert!(!selectors.iter().any(|s| s.matches(&node("NodeC"))));
}

#[test]
fn an_interface_listed_twice_is_accepted_and_kept_once() {
    // MetalLB checks no L2Advertisement list but the pools and the selectors for duplicates.
    let ad = pb::L2Advertisement {
        interfaces: vec!["eth0".into(), "eth1".into(), "eth0".into()],
        ..l2("ad")
    };
    let config = validate(&with(vec![ad])).unwrap_or_else(|e| panic!("{e:#?}"));
    assert_eq!(
        config.l2_advertisements[0].interfaces,
        BTreeSet::from(["eth0".into(), "eth1".into()])
    );
}

#[test]
fn an_interface_name_the_kernel_would_refuse_is_refused() {
    // Ours, not MetalLB's: it would announce from no interface without a word. The kernel's
    // dev_valid_name: not empty, not "." or "..", at most 15 bytes, no '/', ':' or whitespace.
    for (name, why) in [
        ("", "is not an interface name"),
        ("..", "is not an interface name"),
        ("a-very-long-name0", "longer than an interface name can be"),
        ("eth0:1", "contains ':'"),
        ("eth 0", "contains ' '"),
        ("net/1", "contains '/'"),
    ] {
        let ad = pb::L2Advertisement { interfaces: vec!["eth0".into(), name.into()], ..l2("ad") };
        assert_refused(with(vec![ad]), &format!("L2Advertisement/ad interfaces[1]: {name:?}"));
        let ad = pb::L2Advertisement { interfaces: vec![name.into()], ..l2("ad") };
        assert_refused(with(vec![ad]), why);
    }
    // The longest name there can be, and names with dots, dashes and at-signs, are fine.
    let ad = pb::L2Advertisement {
        interfaces: vec!["enp0s31f6.100ab".into(), "br-lan".into(), "veth@if3".into()],
        ..l2("ad")
    };
    assert!(validate(&with(vec![ad])).is_ok());
}

#[test]
fn two_l2advertisements_with_one_name_or_one_without_a_name_are_refused() {
    assert_refused(
        with(vec![l2("same"), l2("same")]),
        "L2Advertisement/same name: another L2Advertisement is also named \"same\"",
    );
    assert_refused(with(vec![l2("")]), "L2Advertisement/ name: must not be empty");
    // A BGPAdvertisement of the same name is another object: a v0.1 layer2 pool and a
    // resource-made BGP advertisement may share a name.
    let mut config = with(vec![l2("shared")]);
    config.advertisements =
        vec![pb::BgpAdvertisement { name: "shared".into(), ..Default::default() }];
    assert!(validate(&config).is_ok());
}
