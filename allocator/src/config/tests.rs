//! Validation cases, each derived from a rule MetalLB documents or enforces.

use metallb_proto::pb;

use super::validate;

pub(super) fn pool(name: &str, addresses: &[&str]) -> pb::AddressPool {
    pb::AddressPool {
        name: name.into(),
        addresses: addresses.iter().map(|a| a.to_string()).collect(),
        auto_assign: true,
        ..Default::default()
    }
}

pub(super) fn peer(name: &str) -> pb::BgpPeer {
    pb::BgpPeer {
        name: name.into(),
        my_asn: 64512,
        peer_asn: 64500,
        peer_address: "192.0.2.254".into(),
        ..Default::default()
    }
}

fn errors_of(config: pb::Config) -> Vec<String> {
    validate(&config)
        .expect_err("the configuration should be rejected")
        .iter()
        .map(|e| e.to_string())
        .collect()
}

fn assert_rejected(config: pb::Config, expected: &str) {
    let errors = errors_of(config);
    assert!(
        errors.iter().any(|e| e.contains(expected)),
        "no error contains {expected:?}: {errors:#?}"
    );
}

#[test]
fn a_complete_configuration_is_accepted_with_defaults_filled_in() {
    let config = validate(&pb::Config {
        pools: vec![pool("default", &["192.0.2.0/24", "2001:db8::/64"])],
        peers: vec![peer("router")],
        advertisements: vec![pb::BgpAdvertisement {
            name: "all".into(),
            communities: vec!["no-export".into(), "large:1:2:3".into()],
            ..Default::default()
        }],
        communities: vec![pb::CommunityAlias {
            name: "no-export".into(),
            value: "65535:65281".into(),
        }],
        ..Default::default()
    })
    .unwrap();
    let router = &config.peers["router"].spec;
    assert_eq!(
        (router.hold_time_seconds, router.keepalive_time_seconds, router.peer_port),
        (Some(90), Some(30), 179)
    );
    let ad = &config.advertisements[0];
    assert_eq!((ad.aggregation_length_v4, ad.aggregation_length_v6), (32, 128));
    assert_eq!(ad.pools, ["default"]);
    assert_eq!(ad.communities.len(), 2);
}

#[test]
fn overlapping_pools_are_rejected() {
    assert_rejected(
        pb::Config {
            pools: vec![pool("a", &["192.0.2.0/24"]), pool("b", &["192.0.2.128/25"])],
            ..Default::default()
        },
        "IPAddressPool/b addresses[0]: 192.0.2.128/25 overlaps pool \"a\" (192.0.2.0/24)",
    );
    assert_rejected(
        pb::Config {
            pools: vec![pool("a", &["192.0.2.0/24", "192.0.2.10-192.0.2.20"])],
            ..Default::default()
        },
        "overlaps addresses[0] of the same pool",
    );
}

#[test]
fn malformed_cidrs_and_ranges_are_rejected() {
    assert_rejected(
        pb::Config { pools: vec![pool("a", &["192.0.2.0/33"])], ..Default::default() },
        "addresses[0]",
    );
    assert_rejected(
        pb::Config { pools: vec![pool("a", &["192.0.2.9-192.0.2.1"])], ..Default::default() },
        "ends before it starts",
    );
    assert_rejected(
        pb::Config { pools: vec![pool("a", &[])], ..Default::default() },
        "at least one CIDR",
    );
}

#[test]
fn asn_zero_is_rejected() {
    let mut bad = peer("r");
    bad.my_asn = 0;
    bad.peer_asn = 0;
    let errors = errors_of(pb::Config { peers: vec![bad], ..Default::default() });
    assert!(
        errors.iter().any(|e| e.contains("myASN")) && errors.iter().any(|e| e.contains("peerASN")),
        "{errors:?}"
    );
}

#[test]
fn hold_times_of_one_and_two_seconds_are_rejected_zero_and_three_accepted() {
    for (hold, ok) in [(0, true), (1, false), (2, false), (3, true), (65535, true), (65536, false)]
    {
        let mut p = peer("r");
        p.hold_time_seconds = Some(hold);
        p.keepalive_time_seconds = Some(0);
        let result = validate(&pb::Config { peers: vec![p], ..Default::default() });
        assert_eq!(result.is_ok(), ok, "hold time {hold}: {:?}", result.err());
    }
}

#[test]
fn aggregation_shorter_than_the_pools_prefix_is_rejected() {
    let ad = |v4: Option<u32>, v6: Option<u32>| pb::BgpAdvertisement {
        name: "ad".into(),
        aggregation_length: v4,
        aggregation_length_v6: v6,
        ..Default::default()
    };
    let pools = vec![pool("a", &["192.0.2.0/26", "2001:db8::/120"])];
    assert_rejected(
        pb::Config {
            pools: pools.clone(),
            advertisements: vec![ad(Some(24), None)],
            ..Default::default()
        },
        "aggregationLength: /24 is shorter than pool \"a\"'s widest prefix /26",
    );
    assert_rejected(
        pb::Config {
            pools: pools.clone(),
            advertisements: vec![ad(None, Some(64))],
            ..Default::default()
        },
        "aggregationLengthV6: /64 is shorter",
    );
    assert_rejected(
        pb::Config {
            pools: pools.clone(),
            advertisements: vec![ad(Some(33), None)],
            ..Default::default()
        },
        "longer than an IPv4 address",
    );
    assert!(
        validate(&pb::Config {
            pools,
            advertisements: vec![ad(Some(26), Some(120))],
            ..Default::default()
        })
        .is_ok()
    );
}

#[test]
fn unknown_community_alias_is_rejected() {
    assert_rejected(
        pb::Config {
            advertisements: vec![pb::BgpAdvertisement {
                name: "ad".into(),
                communities: vec!["no-such-alias".into()],
                ..Default::default()
            }],
            ..Default::default()
        },
        "BGPAdvertisement/ad communities[0]: \"no-such-alias\" is neither a community value nor a defined community alias",
    );
}

#[test]
fn duplicate_names_are_rejected() {
    assert_rejected(
        pb::Config {
            pools: vec![pool("a", &["192.0.2.0/28"]), pool("a", &["192.0.2.16/28"])],
            ..Default::default()
        },
        "another IPAddressPool is also named \"a\"",
    );
    assert_rejected(
        pb::Config { peers: vec![peer("r"), peer("r")], ..Default::default() },
        "another BGPPeer",
    );
}

#[test]
fn a_missing_bfd_profile_is_rejected() {
    let mut p = peer("r");
    p.bfd_profile = "fast".into();
    assert_rejected(
        pb::Config { peers: vec![p], ..Default::default() },
        "no BFDProfile is named \"fast\"",
    );
}

#[test]
fn pool_selectors_pick_pools_by_label() {
    let mut labelled = pool("labelled", &["192.0.2.0/28"]);
    labelled.labels.insert("tier".into(), "gold".into());
    let config = validate(&pb::Config {
        pools: vec![labelled, pool("other", &["192.0.2.16/28"])],
        advertisements: vec![pb::BgpAdvertisement {
            name: "gold".into(),
            ip_address_pool_selectors: vec![pb::LabelSelector {
                match_labels: [("tier".to_string(), "gold".to_string())].into(),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    })
    .unwrap();
    assert_eq!(config.advertisements[0].pools, ["labelled"]);
}

#[test]
fn a_bfd_profile_asking_for_echo_is_refused_with_the_reason() {
    let errors = validate(&pb::Config {
        bfd_profiles: vec![pb::BfdProfile {
            name: "echo".into(),
            echo_mode: true,
            ..Default::default()
        }],
        ..Default::default()
    })
    .unwrap_err();
    let text = format!("{errors:?}");
    assert!(text.contains("echoMode") && text.contains("not supported"), "{text}");
}

#[test]
fn a_peers_bfd_profile_reaches_its_spec_with_metallbs_defaults() {
    let mut fast = peer("fast-peer");
    fast.bfd_profile = "fast".into();
    let config = validate(&pb::Config {
        peers: vec![fast, peer("plain")],
        bfd_profiles: vec![pb::BfdProfile {
            name: "fast".into(),
            receive_interval_ms: Some(100),
            passive_mode: true,
            ..Default::default()
        }],
        ..Default::default()
    })
    .unwrap();
    let bfd = config.peers["fast-peer"].spec.bfd.clone().expect("the profile, resolved");
    assert_eq!(bfd.name, "fast");
    assert_eq!(bfd.receive_interval_ms, Some(100), "as configured");
    assert_eq!(bfd.transmit_interval_ms, Some(300), "MetalLB's default");
    assert_eq!(
        (bfd.detect_multiplier, bfd.echo_interval_ms, bfd.minimum_ttl),
        (Some(3), Some(50), Some(254))
    );
    assert!(bfd.passive_mode);
    assert_eq!(config.peers["plain"].spec.bfd, None, "no profile, no BFD");
}
