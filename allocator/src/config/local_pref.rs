//! MetalLB's LOCAL_PREF rule: two advertisements that would send the same kind of UPDATE for a
//! pool (same aggregation) to a common peer from a common node must give it the same LOCAL_PREF,
//! or a router would receive one prefix with two preferences from one speaker. Which nodes an
//! advertisement covers depends on the nodes' labels, so the rule is checked against the nodes
//! known when a configuration is applied, as MetalLB checks it against its node list.

use std::collections::{BTreeSet, HashMap};

use super::{Advertisement, Config, ConfigError};
use crate::{address::Family, nodes::NodeInfo};

/// Every pair of advertisements of one pool that break the rule, the later one named.
pub fn local_pref_conflicts<'a>(
    config: &Config,
    nodes: impl IntoIterator<Item = &'a NodeInfo> + Clone,
) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    for pool in config.pools.values() {
        let has_v4 = pool.ranges.iter().any(|range| range.family == Family::V4);
        let has_v6 = pool.ranges.iter().any(|range| range.family == Family::V6);
        // Advertisements with service selectors are left out, as MetalLB leaves them out:
        // which services they will carry is not known here.
        let of_pool: Vec<&Advertisement> = config
            .advertisements
            .iter()
            .filter(|ad| ad.pools.contains(&pool.name) && ad.service_selectors.is_empty())
            .collect();
        for (index, later) in of_pool.iter().enumerate() {
            for earlier in &of_pool[..index] {
                let same_update = !aggregation_differs(earlier, later, has_v4, has_v6);
                if earlier.local_pref.unwrap_or(0) != later.local_pref.unwrap_or(0)
                    && same_update
                    && peers_overlap(earlier, later)
                    && nodes_overlap(earlier, later, nodes.clone())
                {
                    errors.push(ConfigError {
                        object: format!("BGPAdvertisement/{}", later.name),
                        field: "localPref".into(),
                        message: format!(
                            "{} differs from {} set by BGPAdvertisement {:?} for the same UPDATEs of pool {:?} (same aggregation, a common peer and node)",
                            later.local_pref.unwrap_or(0),
                            earlier.local_pref.unwrap_or(0),
                            earlier.name,
                            pool.name
                        ),
                    });
                }
            }
        }
    }
    errors
}

/// Whether the two send different UPDATEs for the pool's families: for a pool of one family,
/// its aggregation lengths differ; for a dual-stack pool, both do.
fn aggregation_differs(a: &Advertisement, b: &Advertisement, has_v4: bool, has_v6: bool) -> bool {
    let v4 = a.aggregation_length_v4 != b.aggregation_length_v4;
    let v6 = a.aggregation_length_v6 != b.aggregation_length_v6;
    match (has_v4, has_v6) {
        (false, false) => true,
        (true, false) => v4,
        (false, true) => v6,
        (true, true) => v4 && v6,
    }
}

/// No peers listed means every peer.
fn peers_overlap(a: &Advertisement, b: &Advertisement) -> bool {
    a.peers.is_empty() || b.peers.is_empty() || a.peers.iter().any(|peer| b.peers.contains(peer))
}

fn nodes_overlap<'a>(
    a: &Advertisement,
    b: &Advertisement,
    nodes: impl IntoIterator<Item = &'a NodeInfo>,
) -> bool {
    let covers = |ad: &Advertisement, labels: &HashMap<String, String>| {
        ad.node_selectors.is_empty() || ad.node_selectors.iter().any(|s| s.matches(labels))
    };
    let common: BTreeSet<&str> = nodes
        .into_iter()
        .filter(|node| covers(a, &node.labels) && covers(b, &node.labels))
        .map(|node| node.name.as_str())
        .collect();
    !common.is_empty()
}

#[cfg(test)]
mod tests {
    use metallb_proto::pb;

    use super::*;
    use crate::config::validate;

    fn node(name: &str, zone: &str) -> NodeInfo {
        NodeInfo {
            name: name.into(),
            labels: [("zone".to_string(), zone.to_string())].into(),
            excluded: false,
            ready: true,
        }
    }

    fn ad(name: &str, local_pref: u32) -> pb::BgpAdvertisement {
        pb::BgpAdvertisement {
            name: name.into(),
            local_pref: Some(local_pref),
            ip_address_pools: vec!["p".into()],
            ..Default::default()
        }
    }

    fn zone(ad: pb::BgpAdvertisement, zone: &str) -> pb::BgpAdvertisement {
        let selector = pb::LabelSelector {
            match_labels: [("zone".to_string(), zone.to_string())].into(),
            ..Default::default()
        };
        pb::BgpAdvertisement { node_selectors: vec![selector], ..ad }
    }

    fn conflicts(ads: Vec<pb::BgpAdvertisement>, nodes: &[NodeInfo]) -> Vec<String> {
        let pool = pb::AddressPool {
            name: "p".into(),
            addresses: vec!["192.0.2.0/24".into()],
            auto_assign: true,
            ..Default::default()
        };
        let config = validate(&pb::Config {
            pools: vec![pool],
            peers: [("r1", "192.0.2.253"), ("r2", "192.0.2.254")]
                .map(|(name, address)| pb::BgpPeer {
                    name: name.into(),
                    my_asn: 64512,
                    peer_asn: 64512,
                    peer_address: address.into(),
                    ..Default::default()
                })
                .to_vec(),
            advertisements: ads,
            ..Default::default()
        })
        .unwrap();
        local_pref_conflicts(&config, nodes).iter().map(ToString::to_string).collect()
    }

    #[test]
    fn two_preferences_for_one_update_to_one_peer_from_one_node_conflict() {
        let nodes = [node("a", "east"), node("b", "west")];
        let found = conflicts(vec![ad("first", 100), ad("second", 200)], &nodes);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].starts_with("BGPAdvertisement/second localPref: 200 differs from 100"));
        // The same preference, or no node both cover, or no common peer, or another
        // aggregation: no conflict.
        assert!(conflicts(vec![ad("first", 100), ad("second", 100)], &nodes).is_empty());
        let (east, west) = (zone(ad("first", 100), "east"), zone(ad("second", 200), "west"));
        assert!(conflicts(vec![east.clone(), west], &nodes).is_empty());
        assert_eq!(conflicts(vec![east, zone(ad("second", 200), "east")], &nodes).len(), 1);
        let to = |ad: pb::BgpAdvertisement, peer: &str| pb::BgpAdvertisement {
            peers: vec![peer.into()],
            ..ad
        };
        assert!(
            conflicts(vec![to(ad("first", 100), "r1"), to(ad("s", 200), "r2")], &nodes).is_empty()
        );
        let aggregated = pb::BgpAdvertisement { aggregation_length: Some(24), ..ad("s", 200) };
        assert!(conflicts(vec![ad("first", 100), aggregated], &nodes).is_empty());
        // Without nodes, no node sends anything: MetalLB finds no conflict either.
        assert!(conflicts(vec![ad("first", 100), ad("second", 200)], &[]).is_empty());
    }
}
