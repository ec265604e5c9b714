//! The configuration in force: the contract's `Config`, validated into types that cannot hold
//! what validation rejects (parsed ranges, resolved communities, compiled selectors).

mod community;
mod l2;
mod local_pref;
mod validate;

#[cfg(test)]
mod l2_tests;
#[cfg(test)]
mod metallb_rules_tests;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};

pub use community::Community;
pub use l2::L2Advertisement;
pub use local_pref::local_pref_conflicts;
use metallb_proto::pb;
pub use validate::{ConfigError, validate};

use crate::{
    address::{Address, Family},
    address_range::AddressRange,
    selector::Selector,
};

/// A validated configuration.
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// Pools by name.
    pub pools: BTreeMap<String, Pool>,
    /// Peers by name, as the announcers need them.
    pub peers: BTreeMap<String, Peer>,
    /// Advertisements, in the order given.
    pub advertisements: Vec<Advertisement>,
    /// Layer 2 advertisements, in the order given.
    pub l2_advertisements: Vec<L2Advertisement>,
    /// What was applied, for listing it back.
    pub source: pb::Config,
}

/// A validated address pool.
#[derive(Clone, Debug)]
pub struct Pool {
    /// Name.
    pub name: String,
    /// The ranges as configured (for listings).
    pub addresses: Vec<String>,
    /// The ranges, parsed.
    pub ranges: Vec<AddressRange>,
    /// Serves services that did not ask for it.
    pub auto_assign: bool,
    /// Skips IPv4 .0 and .255.
    pub avoid_buggy_ips: bool,
    /// Lower goes first; `None` (0 in the contract) after every prioritised pool.
    pub priority: Option<i32>,
    /// Has a serviceAllocation: tried, by priority, before every pool without one (MetalLB's
    /// "pinned" pools), whatever the names.
    pub selective: bool,
    /// Namespaces it serves; empty: all.
    pub namespaces: Vec<String>,
    /// Namespace label selectors; empty: all.
    pub namespace_selectors: Vec<Selector>,
    /// Service label selectors; empty: all.
    pub service_selectors: Vec<Selector>,
    /// The pool's own labels, for advertisements' pool selectors.
    pub labels: HashMap<String, String>,
}

impl Pool {
    /// Whether `address` is one the pool may hand out.
    pub fn offers(&self, address: Address) -> bool {
        self.ranges.iter().any(|range| range.contains(address))
            && !(self.avoid_buggy_ips && address.confuses_buggy_firmware())
    }

    /// Whether the pool has any address of `family`.
    pub fn has_family(&self, family: crate::address::Family) -> bool {
        self.ranges.iter().any(|range| range.family == family)
    }

    /// Whether the pool may serve a service in `namespace` with these labels.
    pub fn serves(
        &self,
        namespace: &str,
        namespace_labels: &HashMap<String, String>,
        service_labels: &HashMap<String, String>,
    ) -> bool {
        (self.namespaces.is_empty() || self.namespaces.iter().any(|ns| ns == namespace))
            && crate::selector::any_matches(&self.namespace_selectors, namespace_labels)
            && crate::selector::any_matches(&self.service_selectors, service_labels)
    }
}

/// A validated peer: the contract's message (what the announcer needs) plus compiled selectors.
#[derive(Clone, Debug)]
pub struct Peer {
    /// As configured, with defaults filled in.
    pub spec: pb::BgpPeer,
    /// Nodes that keep a session with it; empty: all.
    pub node_selectors: Vec<Selector>,
}

impl Peer {
    /// Whether routes of `family` go to this peer: its own address's family, and the other
    /// one too with dualStackAddressFamily (unless the deprecated disableMP says otherwise).
    pub fn carries(&self, family: Family) -> bool {
        let own = match self.spec.peer_address.parse::<std::net::IpAddr>() {
            Ok(address) => Address::from_ip(address).family,
            Err(_) => return false,
        };
        own == family || (self.spec.dual_stack_address_family && !self.spec.disable_mp)
    }
}

/// A validated advertisement.
#[derive(Clone, Debug)]
pub struct Advertisement {
    /// Name.
    pub name: String,
    /// IPv4 aggregation length.
    pub aggregation_length_v4: u8,
    /// IPv6 aggregation length.
    pub aggregation_length_v6: u8,
    /// LOCAL_PREF for iBGP peers.
    pub local_pref: Option<u32>,
    /// Communities, aliases resolved.
    pub communities: Vec<Community>,
    /// Pools it applies to, by name (selectors already resolved against the pools).
    pub pools: Vec<String>,
    /// Nodes that announce; empty: all.
    pub node_selectors: Vec<Selector>,
    /// Peers it announces to; empty: all.
    pub peers: Vec<String>,
    /// Services it applies to; empty: all of its pools'.
    pub service_selectors: Vec<Selector>,
}
