//! Layer 2 advertisements: which pools are announced by ARP/NDP, from which nodes, on which
//! interfaces. Validated as MetalLB 0.16 validates L2Advertisement (`internal/config`: a pool
//! named twice, a selector, expression or value listed twice, a selector that does not parse),
//! plus interface names the kernel would refuse. Each rule has a case in `l2_tests.rs`.

use std::collections::{BTreeMap, BTreeSet};

use metallb_proto::pb;

use super::{
    Pool,
    validate::{Errors, selected_pools, unique_name},
};
use crate::selector::Selector;

/// The longest Linux interface name (IFNAMSIZ less the terminating NUL).
const MAX_INTERFACE_NAME: usize = 15;

/// A validated layer 2 advertisement.
#[derive(Clone, Debug)]
pub struct L2Advertisement {
    /// Name.
    pub name: String,
    /// Pools it applies to, by name (selectors already resolved against the pools).
    pub pools: Vec<String>,
    /// Nodes that may announce; empty: all.
    pub node_selectors: Vec<Selector>,
    /// Interfaces to answer on; empty: every interface whose addresses cover the IP.
    pub interfaces: BTreeSet<String>,
    /// Services it applies to; empty: all of its pools'.
    pub service_selectors: Vec<Selector>,
}

pub(super) fn l2_advertisements(
    advertisements: &[pb::L2Advertisement],
    pools: &BTreeMap<String, Pool>,
    errors: &mut Errors,
) -> Vec<L2Advertisement> {
    let mut seen = BTreeSet::new();
    let mut valid = Vec::new();
    for ad in advertisements {
        let Some(object) = unique_name(&mut seen, "L2Advertisement", &ad.name, errors) else {
            continue;
        };
        // A pool named here that does not exist is ignored, as MetalLB ignores it (it may be
        // created later); a name listed twice is refused, as MetalLB refuses it.
        errors.duplicates(&object, "ipAddressPools", &ad.ip_address_pools);
        // An interface listed twice is accepted, as MetalLB accepts it (it checks no other list
        // of an L2Advertisement for duplicates): the set holds it once. A name no interface can
        // have is refused, where MetalLB would announce from nowhere without a word.
        for (index, interface) in ad.interfaces.iter().enumerate() {
            if let Err(message) = interface_name(interface) {
                errors.add(&object, format!("interfaces[{index}]"), message);
            }
        }
        let pool_selectors =
            errors.selectors(&object, "ipAddressPoolSelectors", &ad.ip_address_pool_selectors);
        let pools = selected_pools(&ad.ip_address_pools, &pool_selectors, pools);
        let node_selectors = errors.selectors(&object, "nodeSelectors", &ad.node_selectors);
        let service_selectors =
            errors.selectors(&object, "serviceSelectors", &ad.service_selectors);
        valid.push(L2Advertisement {
            name: ad.name.clone(),
            pools,
            node_selectors,
            interfaces: ad.interfaces.iter().cloned().collect(),
            service_selectors,
        });
    }
    valid
}

/// Whether `name` can be a Linux interface name: what the kernel's `dev_valid_name` accepts.
fn interface_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name == "." || name == ".." {
        return Err(format!("{name:?} is not an interface name"));
    }
    if name.len() > MAX_INTERFACE_NAME {
        return Err(format!(
            "{name:?} is longer than an interface name can be ({MAX_INTERFACE_NAME} bytes)"
        ));
    }
    if let Some(bad) = name.chars().find(|c| *c == '/' || *c == ':' || c.is_whitespace()) {
        return Err(format!("{name:?} cannot be an interface name: it contains {bad:?}"));
    }
    Ok(())
}
