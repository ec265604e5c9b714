//! The state as the contract shows it: leases, outcomes, pool usage, sessions.

use metallb_proto::pb;

use super::{AllocatorState, Outcome};
use crate::{
    address::Family,
    address_range::AddressRange,
    config::Pool,
    leases::{Lease, Leases},
    service_spec::ServiceKey,
};

/// A lease in the contract's terms.
pub fn lease_to_pb(lease: &Lease) -> pb::Lease {
    pb::Lease {
        service: Some(lease.service.to_pb()),
        ips: lease.ips.iter().map(|ip| ip.to_string()).collect(),
        pool: lease.pool.clone(),
        sharing_key: lease.sharing_key().unwrap_or_default().to_string(),
        assigned_at: Some(prost_types::Timestamp::from(lease.assigned_at)),
    }
}

/// An outcome in the contract's terms.
pub fn outcome_to_pb(key: &ServiceKey, outcome: &Outcome) -> pb::ServiceOutcome {
    let outcome = match outcome {
        Ok(lease) => pb::service_outcome::Outcome::Lease(lease_to_pb(lease)),
        Err(failure) => pb::service_outcome::Outcome::Failure(pb::AllocationFailure {
            reason: failure.reason as i32,
            message: failure.message.clone(),
        }),
    };
    pb::ServiceOutcome { service: Some(key.to_pb()), outcome: Some(outcome) }
}

impl AllocatorState {
    /// Leases, optionally only of one namespace and one pool.
    pub fn list_leases(&self, namespace: &str, pool: &str) -> Vec<pb::Lease> {
        self.leases
            .iter()
            .filter(|lease| namespace.is_empty() || &*lease.service.namespace == namespace)
            .filter(|lease| pool.is_empty() || lease.pool == pool)
            .map(lease_to_pb)
            .collect()
    }

    /// The lease of one service.
    pub fn lease(&self, key: &ServiceKey) -> Option<pb::Lease> {
        self.leases.get(key).map(lease_to_pb)
    }

    /// Every pool of the configuration in force with its usage.
    pub fn list_pools(&self) -> Vec<pb::PoolUsage> {
        let Some(config) = &self.config else { return Vec::new() };
        config.pools.values().map(|pool| pool_usage(pool, &self.leases)).collect()
    }

    /// Reported sessions, optionally of one node.
    pub fn list_sessions(&self, node: &str) -> Vec<pb::SessionState> {
        self.sessions
            .iter()
            .filter(|((reporter, _), _)| node.is_empty() || reporter == node)
            .map(|(_, session)| session.clone())
            .collect()
    }
}

/// Size, used and free of each family in `pool`.
pub fn pool_usage(pool: &Pool, leases: &Leases) -> pb::PoolUsage {
    let families = [Family::V4, Family::V6]
        .into_iter()
        .filter(|family| pool.has_family(*family))
        .map(|family| {
            let (size, used) = family_size_and_use(pool, family, leases);
            pb::FamilyUsage {
                family: family.to_pb() as i32,
                size: size.to_string(),
                used: used as u64,
                free: size.saturating_sub(used).to_string(),
            }
        })
        .collect();
    pb::PoolUsage {
        name: pool.name.clone(),
        addresses: pool.addresses.clone(),
        auto_assign: pool.auto_assign,
        families,
    }
}

/// (usable addresses, held addresses) of one family of a pool.
pub fn family_size_and_use(pool: &Pool, family: Family, leases: &Leases) -> (u128, u128) {
    let ranges = pool.ranges.iter().filter(|range| range.family == family);
    let size = ranges
        .clone()
        .map(|range| {
            range.size() - if pool.avoid_buggy_ips { buggy_addresses_in(range) } else { 0 }
        })
        .fold(0u128, u128::saturating_add);
    let used = ranges.map(|range| leases.count_held_in(range)).sum();
    (size, used)
}

/// Number of IPv4 addresses ending in .0 or .255 in `range`, counted arithmetically.
fn buggy_addresses_in(range: &AddressRange) -> u128 {
    if range.family != Family::V4 {
        return 0;
    }
    // Count in [0, n] is two per complete /24 block plus the partial block's .0 and .255.
    let up_to = |n: u128| 2 * (n / 256) + 1 + u128::from(n % 256 == 255);
    let below_first = if range.first == 0 { 0 } else { up_to(range.first - 1) };
    up_to(range.last) - below_first
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buggy_address_count_matches_enumeration() {
        for text in [
            "192.0.2.0/24",
            "192.0.2.0/23",
            "192.0.2.1-192.0.2.254",
            "192.0.2.255-192.0.3.0",
            "192.0.2.7/32",
            "0.0.0.0/30",
        ] {
            let range = AddressRange::parse(text).unwrap();
            let enumerated =
                (range.first..=range.last).filter(|v| matches!(v & 0xff, 0 | 0xff)).count() as u128;
            assert_eq!(buggy_addresses_in(&range), enumerated, "{text}");
        }
    }
}
