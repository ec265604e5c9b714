//! Rendezvous (highest random weight) hashing: the node a layer 2 IP goes to when it needs a
//! new owner. Every replica of the allocator, and a restarted one, picks the same node from the
//! same candidates; scores are uniform, so IPs spread evenly over nodes; and when a node goes,
//! only its own IPs move, each to the next node of its own ranking.

use std::net::IpAddr;

/// The candidate with the highest score for `ip` (ties, which need a 64-bit collision, by
/// name), or `None` without candidates.
pub fn pick<'a>(ip: IpAddr, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates.into_iter().max_by_key(|node| (score(ip, node), *node))
}

/// The rendezvous score of `node` for `ip`: FNV-1a over both, then a 64-bit finalizer so that
/// nearby inputs score independently. Stable across processes and releases.
fn score(ip: IpAddr, node: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let ip_bytes = match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    };
    for byte in ip_bytes.iter().chain([0u8].iter()).chain(node.as_bytes()) {
        hash = (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    // splitmix64's finalizer.
    hash ^= hash >> 30;
    hash = hash.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash ^= hash >> 27;
    hash = hash.wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use std::collections::{BTreeMap, BTreeSet};

    use proptest::prelude::*;

    use super::*;

    /// Owners as the allocator keeps them: an owner still present stays, others are picked.
    fn owners(
        eligible: &BTreeMap<IpAddr, BTreeSet<String>>,
        previous: &BTreeMap<IpAddr, String>,
    ) -> BTreeMap<IpAddr, String> {
        eligible
            .iter()
            .filter_map(|(ip, nodes)| {
                let kept = previous.get(ip).filter(|owner| nodes.contains(*owner)).cloned();
                kept.or_else(|| pick(*ip, nodes.iter().map(String::as_str)).map(str::to_string))
                    .map(|owner| (*ip, owner))
            })
            .collect()
    }

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(0xc000_0200 + n))
    }

    fn nodes(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    fn everywhere(count: u32, names: &[&str]) -> BTreeMap<IpAddr, BTreeSet<String>> {
        (0..count).map(|n| (ip(n), nodes(names))).collect()
    }

    #[test]
    fn one_owner_per_ip_from_its_eligible_nodes_and_none_without_any() {
        let eligible = BTreeMap::from([
            (ip(1), nodes(&["a", "b"])),
            (ip(2), nodes(&["c"])),
            (ip(3), nodes(&[])),
        ]);
        let owned = owners(&eligible, &BTreeMap::new());
        assert!(nodes(&["a", "b"]).contains(&owned[&ip(1)]));
        assert_eq!(owned[&ip(2)], "c");
        assert!(!owned.contains_key(&ip(3)));
    }

    #[test]
    fn ips_spread_over_the_nodes() {
        let owned = owners(&everywhere(300, &["a", "b", "c"]), &BTreeMap::new());
        for node in ["a", "b", "c"] {
            let count = owned.values().filter(|owner| *owner == node).count();
            // 100 each on average; a fair spread stays well within 60..140.
            assert!((60..140).contains(&count), "{node} owns {count} of 300");
        }
    }

    #[test]
    fn a_node_that_goes_moves_only_its_own_ips_and_one_that_joins_moves_none() {
        let before = owners(&everywhere(200, &["a", "b", "c"]), &BTreeMap::new());
        let after = owners(&everywhere(200, &["a", "c"]), &before);
        for (ip, owner) in &before {
            if owner != "b" {
                assert_eq!(&after[ip], owner, "{ip} moved although its owner stayed");
            }
        }
        let joined = owners(&everywhere(200, &["a", "b", "c", "d"]), &after);
        assert_eq!(joined, after, "a joining node takes nothing from owners that stay");
    }

    proptest! {
        /// Whatever the history: every owner is eligible, an owner that stays eligible keeps
        /// its IP, and an owner chosen afresh is the one any replica would choose.
        #[test]
        fn owners_are_eligible_deterministic_and_sticky(
            rounds in proptest::collection::vec(proptest::collection::vec(0u8..6, 0..6), 1..8),
        ) {
            let names = ["n0", "n1", "n2", "n3", "n4", "n5"];
            let mut previous = BTreeMap::new();
            for round in rounds {
                let present: BTreeSet<String> = round.iter().map(|i| names[*i as usize].to_string()).collect();
                let eligible: BTreeMap<IpAddr, BTreeSet<String>> = (0..20).map(|n| (ip(n), present.clone())).collect();
                let owned = owners(&eligible, &previous);
                for (ip, owner) in &owned {
                    prop_assert!(present.contains(owner));
                    if let Some(before) = previous.get(ip) && present.contains(before) {
                        prop_assert_eq!(owner, before);
                    }
                }
                prop_assert_eq!(owned.len(), if present.is_empty() { 0 } else { 20 });
                // An owner chosen afresh is the one a replica with no history picks too.
                let fresh = owners(&eligible, &BTreeMap::new());
                for (ip, owner) in &owned {
                    if !previous.get(ip).is_some_and(|before| present.contains(before)) {
                        prop_assert_eq!(owner, &fresh[ip]);
                    }
                }
                previous = owned;
            }
        }
    }
}
