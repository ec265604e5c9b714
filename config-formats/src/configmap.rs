//! The ConfigMap MetalLB has read since v0.1 (`metallb-system/config`, key `config`): peers,
//! address-pools with their advertisements (BGP, or layer 2 with `protocol: layer2`), community
//! aliases; plus the keys later versions
//! added (addresses, auto-assign, bgp-advertisements, router-id, node-selectors, ...), so a
//! ConfigMap from any MetalLB release that used one reads unchanged.

use std::collections::BTreeMap;

use metallb_proto::pb;
use serde::Deserialize;

use crate::{FormatError, duration::parse_seconds, selector::KebabLabelSelector};

/// The top level is read leniently, as MetalLB reads it (an unknown key is ignored); the
/// entries inside stay strict, so that a misspelt optional field is an error here where MetalLB
/// would silently drop it (a deliberate difference, in `docs/migrating.md`).
#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct ConfigFile {
    #[serde(default)]
    peers: Vec<PeerEntry>,
    #[serde(default)]
    communities: BTreeMap<String, String>,
    #[serde(default)]
    address_pools: Vec<PoolEntry>,
    #[serde(default)]
    bfd_profiles: Vec<BfdEntry>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct PeerEntry {
    my_asn: u32,
    peer_asn: u32,
    peer_address: String,
    peer_port: Option<u32>,
    hold_time: Option<String>,
    keepalive_time: Option<String>,
    router_id: Option<String>,
    source_address: Option<String>,
    password: Option<String>,
    #[serde(default)]
    node_selectors: Vec<KebabLabelSelector>,
    bfd_profile: Option<String>,
    #[serde(default)]
    ebgp_multihop: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct PoolEntry {
    name: String,
    protocol: Option<String>,
    /// v0.1's name for the address list.
    #[serde(default)]
    cidr: Vec<String>,
    #[serde(default)]
    addresses: Vec<String>,
    auto_assign: Option<bool>,
    #[serde(default)]
    avoid_buggy_ips: bool,
    /// v0.1's name for the advertisements.
    advertisements: Option<Vec<AdvertisementEntry>>,
    /// Community aliases written inside a pool, as MetalLB's own v0.1 example does: read as
    /// aliases for the whole configuration.
    #[serde(default)]
    communities: BTreeMap<String, String>,
    bgp_advertisements: Option<Vec<AdvertisementEntry>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct AdvertisementEntry {
    aggregation_length: Option<u32>,
    aggregation_length_v6: Option<u32>,
    localpref: Option<u32>,
    #[serde(default)]
    communities: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct BfdEntry {
    name: String,
    receive_interval: Option<u32>,
    transmit_interval: Option<u32>,
    detect_multiplier: Option<u32>,
    echo_interval: Option<u32>,
    #[serde(default)]
    echo_mode: bool,
    #[serde(default)]
    passive_mode: bool,
    minimum_ttl: Option<u32>,
}

/// Reads the ConfigMap's `config` text. `object` names the ConfigMap in errors. The YAML reader
/// is kube-client's (serde-saphyr): it reads YAML 1.1's yes/no booleans and quoted numbers as
/// MetalLB's Go reader does (`tests/formats.rs` shows it), so the tree needs no second one.
pub fn parse(object: &str, text: &str) -> Result<pb::Config, FormatError> {
    let error = |message: String| FormatError { object: object.to_string(), message };
    let file: ConfigFile =
        serde_saphyr::from_str(text).map_err(|err| error(format!("key config: {err}")))?;

    let mut peers = Vec::new();
    for (index, peer) in file.peers.iter().enumerate() {
        let field = |name: &str| format!("peers[{index}].{name}");
        let duration = |value: &Option<String>, name: &str| {
            value
                .as_deref()
                .map(parse_seconds)
                .transpose()
                .map_err(|message| error(format!("{}: {message}", field(name))))
        };
        let same_address =
            file.peers.iter().filter(|other| other.peer_address == peer.peer_address).count();
        peers.push(pb::BgpPeer {
            // v0.1 peers have no name; the address names them, made unique when repeated.
            name: if same_address > 1 {
                format!("{}-{index}", peer.peer_address)
            } else {
                peer.peer_address.clone()
            },
            my_asn: peer.my_asn,
            peer_asn: peer.peer_asn,
            peer_address: peer.peer_address.clone(),
            peer_port: peer.peer_port.unwrap_or(0),
            source_address: peer.source_address.clone().unwrap_or_default(),
            hold_time_seconds: duration(&peer.hold_time, "hold-time")?,
            keepalive_time_seconds: duration(&peer.keepalive_time, "keepalive-time")?,
            router_id: peer.router_id.clone().unwrap_or_default(),
            node_selectors: peer.node_selectors.iter().map(Into::into).collect(),
            password: peer.password.clone().unwrap_or_default(),
            bfd_profile: peer.bfd_profile.clone().unwrap_or_default(),
            ebgp_multihop: peer.ebgp_multihop,
            enable_graceful_restart: false,
            connect_time_seconds: None,
            ..Default::default()
        });
    }

    let mut pools = Vec::new();
    let mut advertisements = Vec::new();
    let mut l2_advertisements = Vec::new();
    for (index, pool) in file.address_pools.iter().enumerate() {
        // Caught here, naming the entries: the allocator would also see the advertisements
        // this reader names after the pool collide, names the user never wrote.
        if let Some(first) = file.address_pools[..index].iter().position(|p| p.name == pool.name) {
            return Err(error(format!(
                "address-pools[{index}]: another pool (address-pools[{first}]) is also named {:?}",
                pool.name
            )));
        }
        let at = || format!("address-pools[{index}] ({})", pool.name);
        let layer2 = match pool.protocol.as_deref() {
            // A missing protocol, which MetalLB refused, reads as BGP: the first release
            // announced over BGP only and its pools had no protocol.
            None | Some("bgp") => false,
            Some("layer2") => true,
            Some(other @ ("arp" | "ndp")) => {
                return Err(error(format!(
                    "{}: unknown protocol {other:?} (MetalLB 0.6 renamed arp and ndp to layer2)",
                    at()
                )));
            }
            Some(other) => {
                return Err(error(format!("{}: unknown protocol {other:?} (bgp or layer2)", at())));
            }
        };
        pools.push(pb::AddressPool {
            name: pool.name.clone(),
            addresses: pool.cidr.iter().chain(&pool.addresses).cloned().collect(),
            auto_assign: pool.auto_assign.unwrap_or(true),
            avoid_buggy_ips: pool.avoid_buggy_ips,
            service_allocation: None,
            labels: Default::default(),
        });
        if layer2 {
            // As MetalLB read a layer2 pool: announced from every node on every interface, and
            // never over BGP, so BGP advertisements in it are a mistake, not something to drop
            // (an empty list, which MetalLB let pass, says nothing and passes).
            let listed = |entries: &Option<Vec<AdvertisementEntry>>| {
                entries.as_ref().is_some_and(|entries| !entries.is_empty())
            };
            let key = if listed(&pool.bgp_advertisements) {
                Some("bgp-advertisements")
            } else if listed(&pool.advertisements) {
                Some("advertisements")
            } else {
                None
            };
            if let Some(key) = key {
                return Err(error(format!("{}: cannot have {key} in a layer2 address pool", at())));
            }
            l2_advertisements.push(pb::L2Advertisement {
                name: pool.name.clone(),
                ip_address_pools: vec![pool.name.clone()],
                ..Default::default()
            });
            continue;
        }
        let entries = match (&pool.advertisements, &pool.bgp_advertisements) {
            (Some(_), Some(_)) => {
                return Err(error(format!(
                    "{}: both advertisements and bgp-advertisements are set; use one",
                    at()
                )));
            }
            (Some(entries), None) | (None, Some(entries)) => entries.as_slice(),
            // MetalLB announces a pool with no advertisement as plain /32s and /128s.
            (None, None) => &[AdvertisementEntry {
                aggregation_length: None,
                aggregation_length_v6: None,
                localpref: None,
                communities: Vec::new(),
            }][..],
        };
        for (ad_index, ad) in entries.iter().enumerate() {
            advertisements.push(pb::BgpAdvertisement {
                name: format!("{}-{ad_index}", pool.name),
                aggregation_length: ad.aggregation_length,
                aggregation_length_v6: ad.aggregation_length_v6,
                local_pref: ad.localpref,
                communities: ad.communities.clone(),
                ip_address_pools: vec![pool.name.clone()],
                ..Default::default()
            });
        }
    }

    let mut aliases = file.communities.clone();
    for pool in &file.address_pools {
        for (name, value) in &pool.communities {
            match aliases.get(name) {
                Some(existing) if existing != value => {
                    return Err(error(format!(
                        "address-pools ({}): community alias {name:?} is {value:?} here and {existing:?} elsewhere",
                        pool.name
                    )));
                }
                _ => {
                    aliases.insert(name.clone(), value.clone());
                }
            }
        }
    }
    let communities =
        aliases.into_iter().map(|(name, value)| pb::CommunityAlias { name, value }).collect();
    let bfd_profiles = file
        .bfd_profiles
        .iter()
        .map(|profile| pb::BfdProfile {
            name: profile.name.clone(),
            receive_interval_ms: profile.receive_interval,
            transmit_interval_ms: profile.transmit_interval,
            detect_multiplier: profile.detect_multiplier,
            echo_interval_ms: profile.echo_interval,
            echo_mode: profile.echo_mode,
            passive_mode: profile.passive_mode,
            minimum_ttl: profile.minimum_ttl,
        })
        .collect();
    Ok(pb::Config { pools, peers, advertisements, communities, bfd_profiles, l2_advertisements })
}
