//! When this node tells the segment about an IP unasked. Starting to answer for an IP on an
//! interface (the IP gained, or the interface up or addressed later) begins a short burst of
//! gratuitous ARP or unsolicited neighbor advertisements there, so that hosts and switches
//! that cached the previous owner's MAC move over without waiting for their caches to expire;
//! losing it meanwhile ends the burst. Which (IP, interface) pairs are answered is computed
//! here too, so that the diff that starts bursts is a pure function.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    time::{Duration, Instant},
};

use super::{OwnedIps, interfaces::Interface};

/// An owned IP and the index of an interface it is answered on.
pub type Pair = (IpAddr, u32);

/// When each announcement of a burst goes out, from the burst's start. The last one comes
/// more than a second after the first: Linux ignores a second change of a neighbor entry
/// within its `locktime` (1 s by default), which a host that just heard from the previous
/// owner would otherwise apply to our first announcement.
pub const BURST: [Duration; 3] =
    [Duration::ZERO, Duration::from_millis(550), Duration::from_millis(1100)];

/// Every (owned IP, interface) pair where the IP may be answered.
pub fn pairs(owned: &OwnedIps, interfaces: &[Interface]) -> BTreeSet<Pair> {
    owned
        .iter()
        .flat_map(|(ip, names)| {
            interfaces
                .iter()
                .filter(|interface| interface.qualifies(*ip, names))
                .map(|interface| (*ip, interface.index))
        })
        .collect()
}

/// The bursts under way.
#[derive(Debug, Default)]
pub struct Bursts {
    /// Per pair: announcements sent so far, and when the burst started.
    pending: BTreeMap<Pair, (usize, Instant)>,
}

impl Bursts {
    /// Starts a burst for each pair answered now (`current`) but not before (`previous`), and
    /// ends those of pairs no longer answered.
    pub fn update(&mut self, previous: &BTreeSet<Pair>, current: &BTreeSet<Pair>, now: Instant) {
        self.pending.retain(|pair, _| current.contains(pair));
        for pair in current.difference(previous) {
            self.pending.insert(*pair, (0, now));
        }
    }

    /// When the next announcement is due, if any is.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.pending.values().map(|(sent, started)| *started + BURST[*sent]).min()
    }

    /// The pairs whose next announcement is due at `now`, counted as sent.
    pub fn due(&mut self, now: Instant) -> Vec<Pair> {
        let mut due = Vec::new();
        self.pending.retain(|pair, (sent, started)| {
            if *started + BURST[*sent] <= now {
                due.push(*pair);
                *sent += 1;
            }
            *sent < BURST.len()
        });
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V4: (IpAddr, u32) = (IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 100)), 2);

    fn set(pairs: &[Pair]) -> BTreeSet<Pair> {
        pairs.iter().copied().collect()
    }

    fn v6() -> Pair {
        ("2001:db8:0:1::100".parse().unwrap(), 2)
    }

    #[test]
    fn pairs_are_the_qualifying_interfaces_of_each_owned_ip() {
        let interface = |index, name: &str, network: &str| Interface {
            index,
            name: name.into(),
            mac: Some([2, 0, 0, 0, 0, index as u8]),
            mtu: 1500,
            up: true,
            loopback: false,
            no_arp: false,
            addresses: vec![network.parse().unwrap()],
        };
        let interfaces = [
            interface(2, "eth0", "192.0.2.11/24"),
            interface(3, "eth1", "192.0.2.12/24"),
            interface(4, "eth2", "2001:db8:0:1::11/64"),
        ];
        let owned: OwnedIps = [
            (V4.0, BTreeSet::new()),
            ("192.0.2.101".parse().unwrap(), ["eth1".to_string()].into()),
            (v6().0, BTreeSet::new()),
            ("198.51.100.7".parse().unwrap(), BTreeSet::new()),
        ]
        .into();
        assert_eq!(
            pairs(&owned, &interfaces),
            set(&[V4, (V4.0, 3), ("192.0.2.101".parse().unwrap(), 3), (v6().0, 4)])
        );
        assert!(pairs(&OwnedIps::new(), &interfaces).is_empty());
    }

    #[test]
    fn a_gained_pair_is_announced_at_once_then_twice_more_over_a_second() {
        let start = Instant::now();
        let mut bursts = Bursts::default();
        bursts.update(&set(&[]), &set(&[V4, v6()]), start);
        assert_eq!(bursts.next_deadline(), Some(start));
        assert_eq!(bursts.due(start), [V4, v6()]);
        assert_eq!(bursts.next_deadline(), Some(start + BURST[1]));
        assert!(bursts.due(start + BURST[1] - Duration::from_millis(1)).is_empty());
        assert_eq!(bursts.due(start + BURST[1]), [V4, v6()]);
        assert_eq!(bursts.due(start + BURST[2]), [V4, v6()]);
        assert_eq!(bursts.next_deadline(), None, "the burst is over");
        assert!(bursts.due(start + Duration::from_secs(60)).is_empty());
    }

    #[test]
    fn pairs_kept_start_nothing_and_pairs_lost_end_their_burst() {
        let start = Instant::now();
        let mut bursts = Bursts::default();
        bursts.update(&set(&[]), &set(&[V4]), start);
        assert_eq!(bursts.due(start), [V4]);
        // Later updates that keep the pair do not restart its burst; a new pair starts its own.
        let later = start + Duration::from_millis(100);
        bursts.update(&set(&[V4]), &set(&[V4, v6()]), later);
        assert_eq!(bursts.due(later), [v6()]);
        // Lost mid-burst: nothing more for it.
        bursts.update(&set(&[V4, v6()]), &set(&[v6()]), later);
        assert_eq!(bursts.due(start + BURST[1]), Vec::<Pair>::new());
        assert_eq!(bursts.due(later + BURST[1]), [v6()]);
        assert_eq!(bursts.due(later + BURST[2]), [v6()]);
        // Gained again: a new burst.
        let again = start + Duration::from_secs(5);
        bursts.update(&set(&[v6()]), &set(&[V4, v6()]), again);
        assert_eq!(bursts.due(again), [V4]);
    }
}
