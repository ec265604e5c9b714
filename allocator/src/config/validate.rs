//! Turning a configuration from the contract into a `Config`, collecting every error with the
//! object and field it concerns, so an operator can fix them all in one go.

use std::collections::{BTreeMap, BTreeSet};

use metallb_proto::pb;

use super::{Advertisement, Community, Config, Peer, Pool, l2::l2_advertisements};
use crate::{
    address::Family,
    address_range::{AddressRange, mixes_families},
    selector::Selector,
};

/// One reason a configuration is rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// "IPAddressPool/default", "BGPPeer/router1", ...
    pub object: String,
    /// Field path inside the object, e.g. "addresses[1]".
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.object, self.field, self.message)
    }
}

impl From<ConfigError> for pb::ConfigError {
    fn from(err: ConfigError) -> Self {
        Self { object: err.object, field: err.field, message: err.message }
    }
}

/// RFC 4271 section 4.2: a hold time is 0 or at least 3 seconds.
const MIN_NONZERO_HOLD_TIME: u32 = 3;
const DEFAULT_HOLD_TIME: u32 = 90;

#[derive(Default)]
pub(super) struct Errors(Vec<ConfigError>);

impl Errors {
    pub(super) fn add(
        &mut self,
        object: &str,
        field: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.0.push(ConfigError {
            object: object.to_string(),
            field: field.into(),
            message: message.into(),
        });
    }

    /// Compiles `selectors`, refusing as MetalLB does a selector listed twice, an expression
    /// listed twice in one selector, and a value listed twice in one expression.
    pub(super) fn selectors(
        &mut self,
        object: &str,
        field: &str,
        selectors: &[pb::LabelSelector],
    ) -> Vec<Selector> {
        let mut compiled = Vec::new();
        let mut seen: Vec<String> = Vec::new();
        for (index, selector) in selectors.iter().enumerate() {
            let at = format!("{field}[{index}]");
            let canonical = canonical_selector(selector);
            if let Some(first) = seen.iter().position(|other| *other == canonical) {
                self.add(object, &at, format!("duplicate of {field}[{first}]"));
            }
            seen.push(canonical);
            self.duplicate_expressions(object, &at, selector);
            match Selector::from_pb(selector) {
                Ok(selector) => compiled.push(selector),
                Err(message) => self.add(object, at, message),
            }
        }
        compiled
    }

    fn duplicate_expressions(&mut self, object: &str, at: &str, selector: &pb::LabelSelector) {
        let mut seen: Vec<String> = Vec::new();
        for (index, expression) in selector.match_expressions.iter().enumerate() {
            let field = format!("{at}.matchExpressions[{index}]");
            self.duplicates(object, &format!("{field}.values"), &expression.values);
            let canonical = canonical_expression(expression);
            if let Some(first) = seen.iter().position(|other| *other == canonical) {
                self.add(object, &field, format!("duplicate of {at}.matchExpressions[{first}]"));
            }
            seen.push(canonical);
        }
    }

    /// Refuses an entry listed twice in `values` (MetalLB's rule for every list of names).
    pub(super) fn duplicates(&mut self, object: &str, field: &str, values: &[String]) {
        for (index, value) in values.iter().enumerate() {
            if let Some(first) = values[..index].iter().position(|other| other == value) {
                self.add(
                    object,
                    format!("{field}[{index}]"),
                    format!("{value:?} is listed twice (first at {field}[{first}])"),
                );
            }
        }
    }
}

/// A selector in one spelling whatever the order of its labels and values, to compare two.
fn canonical_selector(selector: &pb::LabelSelector) -> String {
    let mut labels: Vec<String> =
        selector.match_labels.iter().map(|(key, value)| format!("{key}={value}")).collect();
    labels.sort();
    let mut expressions: Vec<String> =
        selector.match_expressions.iter().map(canonical_expression).collect();
    expressions.sort();
    format!("{}|{}", labels.join(","), expressions.join(";"))
}

fn canonical_expression(expression: &pb::LabelSelectorRequirement) -> String {
    let mut values = expression.values.clone();
    values.sort();
    format!("{} {} {}", expression.key, expression.operator, values.join(","))
}

/// Validates `config`; on failure returns every error found.
pub fn validate(config: &pb::Config) -> Result<Config, Vec<ConfigError>> {
    let mut errors = Errors::default();
    let aliases = communities(&config.communities, &mut errors);
    let bfd_profiles = bfd_profiles(&config.bfd_profiles, &mut errors);
    let pools = pools(&config.pools, &mut errors);
    let peers = peers(&config.peers, &bfd_profiles, &mut errors);
    let advertisements = advertisements(&config.advertisements, &pools, &aliases, &mut errors);
    let l2_advertisements = l2_advertisements(&config.l2_advertisements, &pools, &mut errors);
    if !errors.0.is_empty() {
        return Err(errors.0);
    }
    Ok(Config { pools, peers, advertisements, l2_advertisements, source: config.clone() })
}

pub(super) fn unique_name(
    seen: &mut BTreeSet<String>,
    kind: &str,
    name: &str,
    errors: &mut Errors,
) -> Option<String> {
    let object = format!("{kind}/{name}");
    if name.trim().is_empty() {
        errors.add(&object, "name", "must not be empty");
        return None;
    }
    if !seen.insert(name.to_string()) {
        errors.add(&object, "name", format!("another {kind} is also named {name:?}"));
        return None;
    }
    Some(object)
}

fn communities(aliases: &[pb::CommunityAlias], errors: &mut Errors) -> BTreeMap<String, Community> {
    let mut seen = BTreeSet::new();
    let mut resolved = BTreeMap::new();
    for alias in aliases {
        let Some(object) = unique_name(&mut seen, "Community", &alias.name, errors) else {
            continue;
        };
        match Community::parse(&alias.value) {
            Ok(value) => {
                resolved.insert(alias.name.clone(), value);
            }
            Err(message) => errors.add(&object, "value", message),
        }
    }
    resolved
}

/// MetalLB's BFDProfile defaults (milliseconds, multiplier, TTL).
const BFD_DEFAULTS: (u32, u32, u32, u32, u32) = (300, 300, 3, 50, 254);

/// The valid profiles by name, MetalLB's defaults filled in.
fn bfd_profiles(
    profiles: &[pb::BfdProfile],
    errors: &mut Errors,
) -> BTreeMap<String, pb::BfdProfile> {
    let mut seen = BTreeSet::new();
    let mut valid = BTreeMap::new();
    for profile in profiles {
        let Some(object) = unique_name(&mut seen, "BFDProfile", &profile.name, errors) else {
            continue;
        };
        let intervals = [
            ("receiveInterval", profile.receive_interval_ms),
            ("transmitInterval", profile.transmit_interval_ms),
            ("echoInterval", profile.echo_interval_ms),
        ];
        for (field, value) in intervals {
            if let Some(value) = value
                && !(10..=60_000).contains(&value)
            {
                errors.add(&object, field, format!("{value} ms is outside 10..60000"));
            }
        }
        if let Some(multiplier) = profile.detect_multiplier
            && !(2..=255).contains(&multiplier)
        {
            errors.add(&object, "detectMultiplier", format!("{multiplier} is outside 2..255"));
        }
        if let Some(ttl) = profile.minimum_ttl
            && !(1..=254).contains(&ttl)
        {
            errors.add(&object, "minimumTtl", format!("{ttl} is outside 1..254"));
        }
        if profile.echo_mode {
            // Refused rather than silently ignored: an operator who asked for echo expects its
            // faster detection, which the control packets alone do not give.
            errors.add(
                &object,
                "echoMode",
                "the echo function is not supported: BFD runs in asynchronous mode only \
                 (detection after receiveInterval x detectMultiplier); remove echoMode"
                    .to_string(),
            );
        }
        let (receive, transmit, multiplier, echo, ttl) = BFD_DEFAULTS;
        let resolved = pb::BfdProfile {
            receive_interval_ms: Some(profile.receive_interval_ms.unwrap_or(receive)),
            transmit_interval_ms: Some(profile.transmit_interval_ms.unwrap_or(transmit)),
            detect_multiplier: Some(profile.detect_multiplier.unwrap_or(multiplier)),
            echo_interval_ms: Some(profile.echo_interval_ms.unwrap_or(echo)),
            minimum_ttl: Some(profile.minimum_ttl.unwrap_or(ttl)),
            ..profile.clone()
        };
        valid.insert(profile.name.clone(), resolved);
    }
    valid
}

fn pools(pools: &[pb::AddressPool], errors: &mut Errors) -> BTreeMap<String, Pool> {
    let mut seen = BTreeSet::new();
    let mut valid = BTreeMap::new();
    // Every parsed range with its owner, to find overlaps within and across pools.
    let mut all_ranges: Vec<(String, usize, AddressRange)> = Vec::new();
    for pool in pools {
        let Some(object) = unique_name(&mut seen, "IPAddressPool", &pool.name, errors) else {
            continue;
        };
        if pool.addresses.is_empty() {
            errors.add(&object, "addresses", "a pool needs at least one CIDR or range");
        }
        let mut ranges = Vec::new();
        for (index, text) in pool.addresses.iter().enumerate() {
            if mixes_families(text) {
                // MetalLB reads such a range as no addresses, without an error.
                continue;
            }
            match AddressRange::parse(text) {
                Ok(range) => {
                    for (other_pool, other_index, other) in &all_ranges {
                        if range.overlaps(other) {
                            let message = if *other_pool == pool.name {
                                format!("{text} overlaps addresses[{other_index}] of the same pool")
                            } else {
                                format!(
                                    "{text} overlaps pool {other_pool:?} ({})",
                                    pools_address(pools, other_pool, *other_index)
                                )
                            };
                            errors.add(&object, format!("addresses[{index}]"), message);
                        }
                    }
                    all_ranges.push((pool.name.clone(), index, range));
                    ranges.push(range);
                }
                Err(message) => errors.add(&object, format!("addresses[{index}]"), message),
            }
        }
        let allocation = pool.service_allocation.clone().unwrap_or_default();
        if allocation.priority < 0 {
            errors.add(&object, "serviceAllocation.priority", "must not be negative");
        }
        errors.duplicates(&object, "serviceAllocation.namespaces", &allocation.namespaces);
        let namespace_selectors = errors.selectors(
            &object,
            "serviceAllocation.namespaceSelectors",
            &allocation.namespace_selectors,
        );
        let service_selectors = errors.selectors(
            &object,
            "serviceAllocation.serviceSelectors",
            &allocation.service_selectors,
        );
        valid.insert(
            pool.name.clone(),
            Pool {
                name: pool.name.clone(),
                addresses: pool.addresses.clone(),
                ranges,
                auto_assign: pool.auto_assign,
                avoid_buggy_ips: pool.avoid_buggy_ips,
                priority: (allocation.priority > 0).then_some(allocation.priority),
                selective: pool.service_allocation.is_some(),
                namespaces: allocation.namespaces,
                namespace_selectors,
                service_selectors,
                labels: pool.labels.clone(),
            },
        );
    }
    valid
}

fn pools_address(pools: &[pb::AddressPool], name: &str, index: usize) -> String {
    pools
        .iter()
        .find(|pool| pool.name == name)
        .and_then(|pool| pool.addresses.get(index))
        .cloned()
        .unwrap_or_default()
}

fn peers(
    peers: &[pb::BgpPeer],
    bfd_profiles: &BTreeMap<String, pb::BfdProfile>,
    errors: &mut Errors,
) -> BTreeMap<String, Peer> {
    let mut seen = BTreeSet::new();
    let mut valid = BTreeMap::new();
    for (index, peer) in peers.iter().enumerate() {
        let Some(object) = unique_name(&mut seen, "BGPPeer", &peer.name, errors) else {
            continue;
        };
        // As MetalLB: a peer that is another one under a second name would be a second session
        // with identical settings to one router.
        let unnamed = |p: &pb::BgpPeer| pb::BgpPeer { name: String::new(), ..p.clone() };
        if let Some(twin) = peers[..index].iter().find(|other| unnamed(other) == unnamed(peer)) {
            errors.add(&object, "spec", format!("identical to BGPPeer {:?}", twin.name));
        }
        if peer.my_asn == 0 {
            errors.add(&object, "myASN", "AS number 0 is reserved (RFC 7607); use 1..4294967295");
        }
        match (peer.peer_asn, peer.dynamic_asn.as_str()) {
            (0, "") => errors.add(
                &object,
                "peerASN",
                "missing: set peerASN (1..4294967295) or dynamicASN (internal or external)",
            ),
            (0, "internal" | "external") | (_, "") => {}
            (0, other) => errors.add(
                &object,
                "dynamicASN",
                format!("{other:?} is neither \"internal\" nor \"external\""),
            ),
            (_, _) => {
                errors.add(&object, "dynamicASN", "peerASN and dynamicASN are both set; use one")
            }
        }
        if peer.peer_address.parse::<std::net::IpAddr>().is_err() {
            errors.add(
                &object,
                "peerAddress",
                format!("{:?} is not an IP address", peer.peer_address),
            );
        }
        if !peer.source_address.is_empty()
            && peer.source_address.parse::<std::net::IpAddr>().is_err()
        {
            errors.add(
                &object,
                "sourceAddress",
                format!("{:?} is not an IP address", peer.source_address),
            );
        }
        if !peer.router_id.is_empty() && peer.router_id.parse::<std::net::Ipv4Addr>().is_err() {
            errors.add(&object, "routerID", format!("{:?} is not an IPv4 address", peer.router_id));
        }
        if peer.ebgp_multihop && peer.my_asn == peer.peer_asn {
            errors.add(
                &object,
                "ebgpMultiHop",
                "is for eBGP peers; this peer is iBGP (myASN equals peerASN)",
            );
        }
        if peer.peer_port > u32::from(u16::MAX) {
            errors.add(&object, "peerPort", format!("{} is not a TCP port", peer.peer_port));
        }
        let hold_time = peer.hold_time_seconds.unwrap_or(DEFAULT_HOLD_TIME);
        if hold_time != 0 && hold_time < MIN_NONZERO_HOLD_TIME {
            errors.add(
                &object,
                "holdTime",
                format!("{hold_time}s is not allowed: a hold time is 0 or at least 3s (RFC 4271)"),
            );
        }
        if hold_time > u32::from(u16::MAX) {
            errors.add(&object, "holdTime", format!("{hold_time}s is more than 65535s"));
        }
        if let Some(keepalive) = peer.keepalive_time_seconds
            && keepalive > hold_time
        {
            errors.add(
                &object,
                "keepaliveTime",
                format!("{keepalive}s is longer than the hold time ({hold_time}s)"),
            );
        }
        if !peer.bfd_profile.is_empty() && !bfd_profiles.contains_key(&peer.bfd_profile) {
            errors.add(
                &object,
                "bfdProfile",
                format!("no BFDProfile is named {:?}", peer.bfd_profile),
            );
        }
        let node_selectors = errors.selectors(&object, "nodeSelectors", &peer.node_selectors);
        let mut spec = peer.clone();
        spec.bfd = bfd_profiles.get(&peer.bfd_profile).cloned();
        spec.hold_time_seconds = Some(hold_time);
        spec.keepalive_time_seconds = Some(peer.keepalive_time_seconds.unwrap_or(hold_time / 3));
        if spec.peer_port == 0 {
            spec.peer_port = 179;
        }
        valid.insert(peer.name.clone(), Peer { spec, node_selectors });
    }
    valid
}

fn advertisements(
    advertisements: &[pb::BgpAdvertisement],
    pools: &BTreeMap<String, Pool>,
    aliases: &BTreeMap<String, Community>,
    errors: &mut Errors,
) -> Vec<Advertisement> {
    let mut seen = BTreeSet::new();
    let mut valid = Vec::new();
    for ad in advertisements {
        let Some(object) = unique_name(&mut seen, "BGPAdvertisement", &ad.name, errors) else {
            continue;
        };
        // A pool or peer named here that does not exist is ignored, as MetalLB ignores it
        // (it may be created later); a name listed twice is refused, as MetalLB refuses it.
        errors.duplicates(&object, "ipAddressPools", &ad.ip_address_pools);
        errors.duplicates(&object, "peers", &ad.peers);
        errors.duplicates(&object, "communities", &ad.communities);
        let pool_selectors =
            errors.selectors(&object, "ipAddressPoolSelectors", &ad.ip_address_pool_selectors);
        let selected = selected_pools(&ad.ip_address_pools, &pool_selectors, pools);

        let length_v4 = aggregation_length(
            &object,
            "aggregationLength",
            ad.aggregation_length,
            Family::V4,
            errors,
        );
        let length_v6 = aggregation_length(
            &object,
            "aggregationLengthV6",
            ad.aggregation_length_v6,
            Family::V6,
            errors,
        );
        for pool_name in &selected {
            for range in &pools[pool_name].ranges {
                let (length, field) = match range.family {
                    Family::V4 => (length_v4, "aggregationLength"),
                    Family::V6 => (length_v6, "aggregationLengthV6"),
                };
                let widest = range.widest_prefix_len();
                if length < widest {
                    errors.add(
                        &object,
                        field,
                        format!("/{length} is shorter than pool {pool_name:?}'s widest prefix /{widest}: it would announce addresses outside the pool"),
                    );
                }
            }
        }

        let mut communities = Vec::new();
        for (index, text) in ad.communities.iter().enumerate() {
            match Community::resolve(text, aliases) {
                Ok(community) => communities.push(community),
                Err(message) => errors.add(&object, format!("communities[{index}]"), message),
            }
        }
        let node_selectors = errors.selectors(&object, "nodeSelectors", &ad.node_selectors);
        let service_selectors =
            errors.selectors(&object, "serviceSelectors", &ad.service_selectors);
        if !service_selectors.is_empty() {
            // As MetalLB: which services share an aggregate could not be told apart.
            for (field, value, default) in [
                ("aggregationLength", ad.aggregation_length, 32),
                ("aggregationLengthV6", ad.aggregation_length_v6, 128),
            ] {
                if value.is_some_and(|length| length != default) {
                    errors.add(
                        &object,
                        field,
                        format!("serviceSelectors and {field} are mutually exclusive: with serviceSelectors it must stay {default}"),
                    );
                }
            }
        }
        valid.push(Advertisement {
            name: ad.name.clone(),
            aggregation_length_v4: length_v4,
            aggregation_length_v6: length_v6,
            local_pref: ad.local_pref,
            communities,
            pools: selected,
            node_selectors,
            peers: ad.peers.clone(),
            service_selectors,
        });
    }
    valid
}

/// The pools an advertisement applies to: those it names, those its selectors match, and
/// every pool when it has neither.
pub(super) fn selected_pools(
    names: &[String],
    selectors: &[Selector],
    pools: &BTreeMap<String, Pool>,
) -> Vec<String> {
    let everything = names.is_empty() && selectors.is_empty();
    pools
        .values()
        .filter(|pool| {
            everything
                || names.contains(&pool.name)
                || selectors.iter().any(|selector| selector.matches(&pool.labels))
        })
        .map(|pool| pool.name.clone())
        .collect()
}

fn aggregation_length(
    object: &str,
    field: &str,
    value: Option<u32>,
    family: Family,
    errors: &mut Errors,
) -> u8 {
    let max = family.bits();
    match value {
        None => max,
        Some(length) if length <= u32::from(max) => length as u8,
        Some(length) => {
            errors.add(
                object,
                field,
                format!("/{length} is longer than an {family} address (/{max})"),
            );
            max
        }
    }
}
