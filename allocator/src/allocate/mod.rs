//! MetalLB's assignment rules: which IPs a service gets, given the configuration and the
//! leases others hold. Pure functions; the state module decides when to call them.

use std::{collections::BTreeSet, net::IpAddr, time::SystemTime};

use metallb_proto::pb::FailureReason;

use crate::{
    address::{Address, Family},
    config::{Config, Pool},
    leases::{Lease, Leases, SharingTerms, families_of},
    service_spec::{FamilyPolicy, ServiceSpec},
    sharing::may_share,
};

/// Why a service holds no IP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// Machine-readable reason.
    pub reason: FailureReason,
    /// One sentence for the AllocationFailed event.
    pub message: String,
}

impl Failure {
    fn new(reason: FailureReason, message: impl Into<String>) -> Self {
        Self { reason, message: message.into() }
    }
}

/// The lease `spec` should hold. An existing lease that is still valid is kept as it is (no
/// churn); otherwise the requested IPs, then the IPs in its status (adoption), then fresh ones.
pub fn assign(
    config: Option<&Config>,
    leases: &Leases,
    spec: &ServiceSpec,
    now: SystemTime,
) -> Result<Lease, Failure> {
    assign_while_waiting(config, None, leases, spec, now)
}

/// As `assign`, while `waiting` (a configuration that waits for Services to let go of IPs it
/// would take) is not in force yet: fresh IPs are only ones it offers too, so that no new
/// Service comes to block it (and starve it) meanwhile.
pub fn assign_while_waiting(
    config: Option<&Config>,
    waiting: Option<&Config>,
    leases: &Leases,
    spec: &ServiceSpec,
    now: SystemTime,
) -> Result<Lease, Failure> {
    let config = config.ok_or_else(|| {
        Failure::new(FailureReason::NoConfig, "no configuration has been applied yet")
    })?;
    if let Some(existing) = leases.get(&spec.key)
        && still_valid(config, leases, spec, existing)
    {
        return Ok(lease_for(
            spec,
            existing.pool.clone(),
            existing.ips.clone(),
            existing.assigned_at,
        ));
    }
    if !spec.requested_ips.is_empty() {
        let (pool, ips) = requested(config, leases, spec, &spec.requested_ips)?;
        return Ok(lease_for(spec, pool, ips, now));
    }
    if !spec.current_ips.is_empty()
        && let Ok((pool, ips)) = requested(config, leases, spec, &spec.current_ips)
        && fresh_families_satisfied(spec, &ips)
    {
        return Ok(lease_for(spec, pool, ips, now));
    }
    let picker = Picker { leases, spec, waiting };
    let (pool, ips) = fresh(config, &picker).map_err(|mut failure| {
        if waiting.is_some() && failure.reason == FailureReason::PoolExhausted {
            failure.message.push_str(
                " that a waiting configuration keeps too (it takes effect once the Services holding the others let go)",
            );
        }
        failure
    })?;
    Ok(lease_for(spec, pool, ips, now))
}

/// The pool of `config` that would hold `ips` for `spec` as they are: one pool offering every
/// one of them (avoidBuggyIPs respected) that may serve the Service, is the one its annotation
/// names if any, and hands out addresses unasked (autoAssign) unless the Service asked for
/// these IPs. A pool renamed or split keeps its Services' IPs this way.
pub fn home_for<'a>(config: &'a Config, spec: &ServiceSpec, ips: &[IpAddr]) -> Option<&'a Pool> {
    let pool = config
        .pools
        .values()
        .find(|pool| ips.iter().all(|ip| pool.offers(Address::from_ip(*ip))))?;
    let serves = pool.serves(&spec.key.namespace, &spec.namespace_labels, &spec.labels);
    let named = spec.pool.as_ref().is_none_or(|wanted| *wanted == pool.name);
    let may_give = pool.auto_assign || spec.pool.is_some() || !spec.requested_ips.is_empty();
    (serves && named && may_give).then_some(pool)
}

/// Picks fresh addresses for one Service.
struct Picker<'a> {
    leases: &'a Leases,
    spec: &'a ServiceSpec,
    waiting: Option<&'a Config>,
}

impl Picker<'_> {
    /// An address of `family` in `pool`: one the Service may share first (so Services with one
    /// sharing key end up together), otherwise the first free one; with a waiting
    /// configuration, only one it offers too.
    fn pick(&self, pool: &Pool, family: Family) -> Option<IpAddr> {
        let (leases, spec) = (self.leases, self.spec);
        let kept = |address: Address| {
            pool.offers(address)
                && self
                    .waiting
                    .is_none_or(|waiting| waiting.pools.values().any(|other| other.offers(address)))
        };
        let ranges = pool.ranges.iter().filter(|range| range.family == family);
        if spec.sharing_key.is_some() {
            for range in ranges.clone() {
                let shareable = leases.held_in(range).find(|address| {
                    kept(*address)
                        && leases.holders(*address).all(|holder| may_share(spec, holder).is_ok())
                });
                if let Some(address) = shareable {
                    return Some(address.to_ip());
                }
            }
        }
        ranges.filter_map(|range| leases.first_free(range, kept)).map(Address::to_ip).next()
    }
}

/// Whether `lease` still satisfies `spec` under `config`, so keeping it is right.
pub fn still_valid(config: &Config, leases: &Leases, spec: &ServiceSpec, lease: &Lease) -> bool {
    let allowed = allowed_families(spec);
    if lease.ips.iter().any(|ip| !allowed.contains(&Family::of(*ip))) {
        return false;
    }
    let Some(pool) = config.pools.get(&lease.pool) else { return false };
    if lease.ips.iter().any(|ip| !pool.offers(Address::from_ip(*ip))) {
        return false;
    }
    if !spec.requested_ips.is_empty() {
        let wanted: BTreeSet<_> = spec.requested_ips.iter().collect();
        if wanted != lease.ips.iter().collect() {
            return false;
        }
    } else if !fresh_families_satisfied(spec, &lease.ips) {
        return false;
    }
    if spec.pool.as_ref().is_some_and(|wanted| *wanted != lease.pool) {
        return false;
    }
    if !pool.serves(&spec.key.namespace, &spec.namespace_labels, &spec.labels) {
        return false;
    }
    lease.ips.iter().all(|ip| {
        leases.holders(Address::from_ip(*ip)).all(|holder| may_share(spec, holder).is_ok())
    })
}

/// Families a service may hold at all: its primary when single-stack, both otherwise.
fn allowed_families(spec: &ServiceSpec) -> Vec<Family> {
    match spec.family_policy {
        FamilyPolicy::SingleStack => vec![spec.families[0]],
        _ => vec![Family::V4, Family::V6],
    }
}

/// Whether `ips` has what a fresh allocation would give: the primary family, and both when
/// dual-stack is required, and nothing of a family the service does not use.
fn fresh_families_satisfied(spec: &ServiceSpec, ips: &[IpAddr]) -> bool {
    let families = families_of(ips);
    let (required, optional) = spec.wanted_families();
    if optional.is_some() {
        // PreferDualStack takes either family alone when no pool offered both.
        return !families.is_empty();
    }
    required.iter().all(|family| families.contains(family))
        && families.iter().all(|family| required.contains(family) || optional == Some(*family))
}

fn lease_for(spec: &ServiceSpec, pool: String, ips: Vec<IpAddr>, assigned_at: SystemTime) -> Lease {
    let sharing = spec.sharing_key.as_ref().map(|key| {
        Box::new(SharingTerms {
            key: key.clone(),
            ports: spec.ports.clone(),
            local_traffic: spec.local_traffic,
            selector: spec.selector.clone(),
        })
    });
    Lease { service: spec.key.clone(), ips, pool, sharing, assigned_at }
}

/// Specific IPs: each in a pool that may serve the service, all in one pool, each free or
/// shareable.
fn requested(
    config: &Config,
    leases: &Leases,
    spec: &ServiceSpec,
    ips: &[IpAddr],
) -> Result<(String, Vec<IpAddr>), Failure> {
    let allowed = allowed_families(spec);
    let mut pool_name: Option<&str> = None;
    for ip in ips {
        let address = Address::from_ip(*ip);
        if !allowed.contains(&address.family) {
            return Err(Failure::new(
                FailureReason::InvalidRequest,
                format!(
                    "{ip} is {}, but the service is single-stack {}",
                    address.family, spec.families[0]
                ),
            ));
        }
        let pool = config
            .pools
            .values()
            .find(|pool| pool.ranges.iter().any(|range| range.contains(address)))
            .ok_or_else(|| {
                Failure::new(
                    FailureReason::IpNotInAnyPool,
                    format!("{ip} is not in any pool ({})", describe_pools(config)),
                )
            })?;
        if !pool.offers(address) {
            return Err(Failure::new(
                FailureReason::InvalidRequest,
                format!(
                    "{ip} ends in .0 or .255, which pool {:?} avoids (avoid-buggy-ips)",
                    pool.name
                ),
            ));
        }
        match pool_name {
            Some(other) if other != pool.name => {
                return Err(Failure::new(
                    FailureReason::InvalidRequest,
                    format!(
                        "the requested IPs come from different pools ({other:?} and {:?})",
                        pool.name
                    ),
                ));
            }
            _ => pool_name = Some(&pool.name),
        }
        if let Some(wanted) = &spec.pool
            && *wanted != pool.name
        {
            return Err(Failure::new(
                FailureReason::InvalidRequest,
                format!(
                    "{ip} is in pool {:?}, but metallb.io/address-pool asks for {wanted:?}",
                    pool.name
                ),
            ));
        }
        if !pool.serves(&spec.key.namespace, &spec.namespace_labels, &spec.labels) {
            return Err(Failure::new(
                FailureReason::NoMatchingPool,
                format!(
                    "pool {:?}, which holds {ip}, does not serve this service's namespace or labels",
                    pool.name
                ),
            ));
        }
        for holder in leases.holders(address) {
            may_share(spec, holder)
                .map_err(|why| Failure::new(FailureReason::IpInUse, format!("{ip} is {why}")))?;
        }
    }
    let pool = pool_name.expect("at least one requested IP").to_string();
    Ok((pool, ips.to_vec()))
}

/// Fresh IPs from the first pool, in priority order, that can give every required family.
fn fresh(config: &Config, picker: &Picker) -> Result<(String, Vec<IpAddr>), Failure> {
    let spec = picker.spec;
    let pools = candidate_pools(config, spec)?;
    let (required, optional) = spec.wanted_families();
    if let Some(secondary) = optional {
        // PreferDualStack, as MetalLB: the first pool that gives both families wins, then
        // the first that gives the primary, then the first that gives the secondary.
        let primary = required[0];
        let from = |pool: &Pool, family| picker.pick(pool, family);
        let both = pools
            .iter()
            .find_map(|pool| Some((pool, vec![from(pool, primary)?, from(pool, secondary)?])));
        let one = || {
            [primary, secondary].into_iter().find_map(|family| {
                pools.iter().find_map(|pool| Some((pool, vec![from(pool, family)?])))
            })
        };
        if let Some((pool, ips)) = both.or_else(one) {
            return Ok((pool.name.clone(), ips));
        }
    }
    let mut families_offered = false;
    for pool in &pools {
        if !required.iter().all(|family| pool.has_family(*family)) {
            continue;
        }
        families_offered = true;
        let Some(mut ips) =
            required.iter().map(|family| picker.pick(pool, *family)).collect::<Option<Vec<_>>>()
        else {
            continue;
        };
        if let Some(family) = optional
            && let Some(ip) = picker.pick(pool, family)
        {
            ips.push(ip);
        }
        return Ok((pool.name.clone(), ips));
    }
    let wanted = required.iter().map(Family::to_string).collect::<Vec<_>>().join(" and ");
    if !families_offered {
        return Err(Failure::new(
            FailureReason::NoMatchingPool,
            format!(
                "no pool that may serve this service has {wanted} addresses ({})",
                describe_pools(config)
            ),
        ));
    }
    let names = pools.iter().map(|pool| format!("{:?}", pool.name)).collect::<Vec<_>>().join(", ");
    Err(Failure::new(
        FailureReason::PoolExhausted,
        format!("no free {wanted} address in pools {names}"),
    ))
}

fn candidate_pools<'a>(config: &'a Config, spec: &ServiceSpec) -> Result<Vec<&'a Pool>, Failure> {
    let serves =
        |pool: &Pool| pool.serves(&spec.key.namespace, &spec.namespace_labels, &spec.labels);
    if let Some(name) = &spec.pool {
        let pool = config.pools.get(name).ok_or_else(|| {
            Failure::new(
                FailureReason::UnknownPool,
                format!(
                    "metallb.io/address-pool names {name:?}, which does not exist ({})",
                    describe_pools(config)
                ),
            )
        })?;
        if !serves(pool) {
            return Err(Failure::new(
                FailureReason::NoMatchingPool,
                format!("pool {name:?} does not serve this service's namespace or labels"),
            ));
        }
        return Ok(vec![pool]);
    }
    let mut pools: Vec<&Pool> =
        config.pools.values().filter(|pool| pool.auto_assign && serves(pool)).collect();
    if pools.is_empty() {
        return Err(Failure::new(
            FailureReason::NoMatchingPool,
            format!(
                "no pool with autoAssign serves this service's namespace and labels ({})",
                describe_pools(config)
            ),
        ));
    }
    // MetalLB's order: pools with a serviceAllocation that serve the service (lower priority
    // numbers first, those without a priority after them), then every other pool; by name
    // within a rank, so that the order never depends on the configuration's order.
    pools.sort_by_key(|pool| {
        (!pool.selective, pool.priority.is_none(), pool.priority, pool.name.clone())
    });
    Ok(pools)
}

fn describe_pools(config: &Config) -> String {
    if config.pools.is_empty() {
        return "no pools are configured".into();
    }
    let pools: Vec<String> = config
        .pools
        .values()
        .map(|pool| format!("{} {}", pool.name, pool.addresses.join(",")))
        .collect();
    format!("pools: {}", pools.join("; "))
}

#[cfg(test)]
mod tests;
