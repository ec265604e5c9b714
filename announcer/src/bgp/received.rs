//! How many prefixes a peer advertises to us, in bounded memory. The speaker only announces:
//! it never uses a peer's routes, and a peer sending a full table (a million prefixes) must not
//! cost a million entries. Prefixes are remembered up to `TRACKED_AT_MOST`, so the count is
//! exact for the peers a load balancer meets (a default route, a few aggregates); beyond that,
//! announcements and withdrawals of prefixes not remembered are only counted, which can
//! overcount a peer that announces one of them twice.

use std::collections::HashSet;

use ipnetwork::IpNetwork;

use super::packet::{attribute::Attribute, update::Update};

/// Prefixes remembered for an exact count.
pub const TRACKED_AT_MOST: usize = 10_000;

/// The count of prefixes a peer advertises now.
#[derive(Debug, Default)]
pub struct ReceivedPrefixes {
    tracked: HashSet<IpNetwork>,
    /// Prefixes counted but not remembered.
    untracked: u64,
}

impl ReceivedPrefixes {
    /// Takes the announcements and withdrawals of `update` into account.
    pub fn apply(&mut self, update: &Update) {
        for prefix in &update.withdrawn {
            self.withdraw(prefix);
        }
        for prefix in &update.nlri {
            self.announce(*prefix);
        }
        for attribute in &update.attributes {
            match attribute {
                Attribute::MpReach { nlri, .. } => nlri.iter().for_each(|p| self.announce(*p)),
                Attribute::MpUnreach { withdrawn, .. } => {
                    withdrawn.iter().for_each(|p| self.withdraw(p))
                }
                _ => {}
            }
        }
    }

    /// The session went down: the peer advertises nothing.
    pub fn clear(&mut self) {
        self.tracked = HashSet::new();
        self.untracked = 0;
    }

    /// Prefixes advertised now (exact up to `TRACKED_AT_MOST`).
    pub fn count(&self) -> u64 {
        self.tracked.len() as u64 + self.untracked
    }

    fn announce(&mut self, prefix: IpNetwork) {
        if self.tracked.contains(&prefix) {
            return;
        }
        if self.tracked.len() < TRACKED_AT_MOST {
            self.tracked.insert(prefix);
        } else {
            self.untracked += 1;
        }
    }

    fn withdraw(&mut self, prefix: &IpNetwork) {
        if !self.tracked.remove(prefix) {
            self.untracked = self.untracked.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn prefixes(range: std::ops::Range<u32>) -> Vec<IpNetwork> {
        range.map(|n| IpNetwork::new(Ipv4Addr::from(n).into(), 32).unwrap()).collect()
    }

    #[test]
    fn a_full_table_is_counted_in_bounded_memory() {
        let mut received = ReceivedPrefixes::default();
        let table = prefixes(0..1_000_000);
        received.apply(&Update { nlri: table.clone(), ..Update::default() });
        assert_eq!(received.count(), 1_000_000);
        assert_eq!(received.tracked.len(), TRACKED_AT_MOST, "only so many remembered");
        received.apply(&Update { nlri: prefixes(0..5), ..Update::default() });
        assert_eq!(received.count(), 1_000_000, "re-announcing a remembered prefix counts once");
        received.apply(&Update { withdrawn: table, ..Update::default() });
        assert_eq!(received.count(), 0);
    }

    #[test]
    fn the_count_follows_announcements_and_withdrawals_of_both_families() {
        let mut received = ReceivedPrefixes::default();
        let v6: IpNetwork = "2001:db8::/64".parse().unwrap();
        received.apply(&Update {
            nlri: prefixes(1..4),
            attributes: vec![Attribute::MpReach {
                afi: 2,
                safi: 1,
                next_hops: vec![],
                nlri: vec![v6],
            }],
            ..Update::default()
        });
        assert_eq!(received.count(), 4);
        received.apply(&Update {
            withdrawn: prefixes(1..2),
            attributes: vec![Attribute::MpUnreach { afi: 2, safi: 1, withdrawn: vec![v6] }],
            ..Update::default()
        });
        assert_eq!(received.count(), 2);
        received.clear();
        assert_eq!(received.count(), 0);
    }
}
