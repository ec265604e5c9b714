//! The lease table: which service holds which IPs, and for each IP who holds it. Memory grows
//! with the number of leases, never with the size of a pool: free addresses are found from the
//! gaps between held ones.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::IpAddr,
    time::SystemTime,
};

use crate::{
    address::{Address, Family},
    address_range::AddressRange,
    held_runs::HeldRuns,
    service_spec::{Port, ServiceKey},
};

/// The IPs one service holds.
#[derive(Clone, Debug, PartialEq)]
pub struct Lease {
    /// The holder.
    pub service: ServiceKey,
    /// At most one IP per family.
    pub ips: Vec<IpAddr>,
    /// The pool they come from.
    pub pool: String,
    /// What others must match to share the IPs; `None` when the holder has no sharing key and
    /// so shares with nobody (most leases: boxed so they pay one pointer for it).
    pub sharing: Option<Box<SharingTerms>>,
    /// When the lease was given.
    pub assigned_at: SystemTime,
}

/// What decides whether another service may share a lease's IPs.
#[derive(Clone, Debug, PartialEq)]
pub struct SharingTerms {
    /// The metallb.io/allow-shared-ip key.
    pub key: String,
    /// The holder's ports.
    pub ports: Vec<Port>,
    /// The holder uses externalTrafficPolicy Local.
    pub local_traffic: bool,
    /// The holder's pod selector.
    pub selector: BTreeMap<String, String>,
}

impl Lease {
    /// The sharing key, if any.
    pub fn sharing_key(&self) -> Option<&str> {
        self.sharing.as_ref().map(|terms| terms.key.as_str())
    }
}

/// Who holds one address: almost always one service, kept inline; a Vec only when shared.
#[derive(Clone, Debug)]
enum Holders {
    One(ServiceKey),
    Many(Vec<ServiceKey>),
}

impl Holders {
    fn iter(&self) -> impl Iterator<Item = &ServiceKey> {
        match self {
            Self::One(key) => std::slice::from_ref(key).iter(),
            Self::Many(keys) => keys.iter(),
        }
    }

    fn add(&mut self, key: &ServiceKey) {
        match self {
            Self::One(existing) if existing == key => {}
            Self::One(existing) => *self = Self::Many(vec![existing.clone(), key.clone()]),
            Self::Many(keys) if !keys.contains(key) => keys.push(key.clone()),
            Self::Many(_) => {}
        }
    }

    /// Removes `key`; `true` when nobody holds the address any more.
    fn remove(&mut self, key: &ServiceKey) -> bool {
        match self {
            Self::One(existing) => existing == key,
            Self::Many(keys) => {
                keys.retain(|holder| holder != key);
                let last = match keys.as_slice() {
                    [] => return true,
                    [last] => last.clone(),
                    _ => return false,
                };
                *self = Self::One(last);
                false
            }
        }
    }
}

/// Every lease, indexed by service and by address.
#[derive(Clone, Debug, Default)]
pub struct Leases {
    by_service: BTreeMap<ServiceKey, Lease>,
    holders: BTreeMap<Address, Holders>,
    runs: HeldRuns,
    /// Services whose lease was given, replaced or taken since `take_changed`.
    changed: BTreeSet<ServiceKey>,
    /// Number of leases from each pool, kept so that metrics refreshed on every change do not
    /// walk every lease.
    per_pool: HashMap<String, usize>,
}

impl Leases {
    /// The lease of `service`.
    pub fn get(&self, service: &ServiceKey) -> Option<&Lease> {
        self.by_service.get(service)
    }

    /// All leases, by service.
    pub fn iter(&self) -> impl Iterator<Item = &Lease> {
        self.by_service.values()
    }

    /// Number of leases from `pool`.
    pub fn count_in_pool(&self, pool: &str) -> usize {
        self.per_pool.get(pool).copied().unwrap_or(0)
    }

    /// Number of leases.
    pub fn len(&self) -> usize {
        self.by_service.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_service.is_empty()
    }

    /// Services holding `address`.
    pub fn holders(&self, address: Address) -> impl Iterator<Item = &Lease> {
        self.holders
            .get(&address)
            .into_iter()
            .flat_map(Holders::iter)
            .filter_map(|key| self.by_service.get(key))
    }

    /// Gives `lease` to its service, replacing any lease it had.
    pub fn insert(&mut self, lease: Lease) {
        self.remove(&lease.service);
        for ip in &lease.ips {
            let address = Address::from_ip(*ip);
            match self.holders.entry(address) {
                std::collections::btree_map::Entry::Occupied(mut holders) => {
                    holders.get_mut().add(&lease.service)
                }
                std::collections::btree_map::Entry::Vacant(slot) => {
                    slot.insert(Holders::One(lease.service.clone()));
                    self.runs.insert(address);
                }
            }
        }
        self.changed.insert(lease.service.clone());
        *self.per_pool.entry(lease.pool.clone()).or_default() += 1;
        self.by_service.insert(lease.service.clone(), lease);
    }

    /// The services whose lease changed since the last call (for publishing only what they
    /// touch), and forgets them.
    pub fn take_changed(&mut self) -> BTreeSet<ServiceKey> {
        std::mem::take(&mut self.changed)
    }

    /// What `take_changed` would return now.
    pub fn changed(&self) -> &BTreeSet<ServiceKey> {
        &self.changed
    }

    /// Takes `service`'s lease away.
    pub fn remove(&mut self, service: &ServiceKey) -> Option<Lease> {
        let lease = self.by_service.remove(service)?;
        self.changed.insert(service.clone());
        if let Some(count) = self.per_pool.get_mut(&lease.pool) {
            *count -= 1;
            if *count == 0 {
                self.per_pool.remove(&lease.pool);
            }
        }
        for ip in &lease.ips {
            let address = Address::from_ip(*ip);
            if let Some(holders) = self.holders.get_mut(&address)
                && holders.remove(service)
            {
                self.holders.remove(&address);
                self.runs.remove(address);
            }
        }
        Some(lease)
    }

    /// Held addresses inside `range`, in order.
    pub fn held_in(&self, range: &AddressRange) -> impl Iterator<Item = Address> + '_ {
        let first = Address { family: range.family, value: range.first };
        let last = Address { family: range.family, value: range.last };
        self.holders.range(first..=last).map(|(address, _)| *address)
    }

    /// Number of distinct held addresses inside `range`.
    pub fn count_held_in(&self, range: &AddressRange) -> u128 {
        self.runs.count_in(range.family, range.first, range.last)
    }

    /// The first address of `range` that nobody holds and `acceptable` allows: O(log n) per
    /// run of held addresses skipped, whatever the range's size.
    pub fn first_free(
        &self,
        range: &AddressRange,
        acceptable: impl Fn(Address) -> bool,
    ) -> Option<Address> {
        let mut from = range.first;
        loop {
            let value = self.runs.first_free_from(range.family, from, range.last)?;
            let address = Address { family: range.family, value };
            if acceptable(address) {
                return Some(address);
            }
            from = value.checked_add(1)?;
        }
    }
}

/// Family of the lease's IPs, in order.
pub fn families_of(ips: &[IpAddr]) -> Vec<Family> {
    ips.iter().map(|ip| Family::of(*ip)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> ServiceKey {
        ServiceKey { namespace: "default".into(), name: name.into() }
    }

    fn lease(name: &str, ips: &[&str]) -> Lease {
        Lease {
            service: key(name),
            ips: ips.iter().map(|ip| ip.parse().unwrap()).collect(),
            pool: "p".into(),
            sharing: None,
            assigned_at: SystemTime::UNIX_EPOCH,
        }
    }

    fn ip(address: Address) -> String {
        address.to_ip().to_string()
    }

    #[test]
    fn leases_per_pool_follow_every_insert_move_and_removal() {
        let mut leases = Leases::default();
        leases.insert(lease("a", &["192.0.2.1"]));
        leases.insert(lease("b", &["192.0.2.2"]));
        assert_eq!(leases.count_in_pool("p"), 2);
        // The same Service again, now from another pool: counted once, in the new pool.
        leases.insert(Lease { pool: "q".into(), ..lease("a", &["198.51.100.1"]) });
        assert_eq!((leases.count_in_pool("p"), leases.count_in_pool("q")), (1, 1));
        leases.remove(&key("b"));
        leases.remove(&key("a"));
        assert_eq!((leases.count_in_pool("p"), leases.count_in_pool("q")), (0, 0));
        assert!(leases.per_pool.is_empty(), "no pool is left behind at zero");
    }

    #[test]
    fn first_free_skips_held_addresses_and_unacceptable_ones() {
        let range = AddressRange::parse("192.0.2.0/24").unwrap();
        let mut leases = Leases::default();
        assert_eq!(ip(leases.first_free(&range, |_| true).unwrap()), "192.0.2.0");
        assert_eq!(
            ip(leases.first_free(&range, |a| !a.confuses_buggy_firmware()).unwrap()),
            "192.0.2.1"
        );
        leases.insert(lease("a", &["192.0.2.1"]));
        leases.insert(lease("b", &["192.0.2.2"]));
        leases.insert(lease("c", &["192.0.2.4"]));
        assert_eq!(
            ip(leases.first_free(&range, |a| !a.confuses_buggy_firmware()).unwrap()),
            "192.0.2.3"
        );
        leases.remove(&key("a"));
        assert_eq!(
            ip(leases.first_free(&range, |a| !a.confuses_buggy_firmware()).unwrap()),
            "192.0.2.1"
        );
    }

    #[test]
    fn a_full_range_has_no_free_address() {
        let range = AddressRange::parse("192.0.2.8/30").unwrap();
        let mut leases = Leases::default();
        for (n, address) in
            ["192.0.2.8", "192.0.2.9", "192.0.2.10", "192.0.2.11"].iter().enumerate()
        {
            leases.insert(lease(&format!("s{n}"), &[address]));
        }
        assert_eq!(leases.first_free(&range, |_| true), None);
        assert_eq!(leases.count_held_in(&range), 4);
    }

    #[test]
    fn an_ipv6_slash_64_is_searched_without_enumeration() {
        let range = AddressRange::parse("2001:db8::/64").unwrap();
        let mut leases = Leases::default();
        for n in 0..1000u32 {
            leases.insert(lease(&format!("s{n}"), &[&format!("2001:db8::{n:x}")]));
        }
        assert_eq!(ip(leases.first_free(&range, |_| true).unwrap()), "2001:db8::3e8");
        // The last address of the /64 is reachable too.
        let tail =
            AddressRange::parse("2001:db8::ffff:ffff:ffff:fffe-2001:db8::ffff:ffff:ffff:ffff")
                .unwrap();
        leases.insert(lease("tail", &["2001:db8::ffff:ffff:ffff:fffe"]));
        assert_eq!(
            ip(leases.first_free(&tail, |_| true).unwrap()),
            "2001:db8::ffff:ffff:ffff:ffff"
        );
    }

    #[test]
    fn shared_addresses_count_once_and_free_with_their_last_holder() {
        let range = AddressRange::parse("192.0.2.0/30").unwrap();
        let mut leases = Leases::default();
        leases.insert(lease("a", &["192.0.2.1"]));
        leases.insert(lease("b", &["192.0.2.1"]));
        assert_eq!(leases.count_held_in(&range), 1);
        assert_eq!(leases.holders(Address::from_ip("192.0.2.1".parse().unwrap())).count(), 2);
        leases.remove(&key("a"));
        assert_eq!(leases.count_held_in(&range), 1);
        leases.remove(&key("b"));
        assert_eq!(leases.count_held_in(&range), 0);
    }
}
