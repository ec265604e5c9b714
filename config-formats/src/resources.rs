//! The `metallb.io` resources (IPAddressPool, BGPAdvertisement and L2Advertisement v1beta1,
//! BGPPeer v1beta2, Community and BFDProfile v1beta1) into one configuration. The spec types
//! follow MetalLB's published schema field for field, so the objects users already have read
//! unchanged.

use std::collections::{BTreeMap, HashMap};

use kube::CustomResource;
use metallb_proto::pb;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{
    FormatError, bgp_peer_v1beta1::BgpPeerV1beta1Spec, duration::parse_seconds,
    selector::LabelSelector,
};

/// A resource's identity and spec.
#[derive(Clone, Debug)]
pub struct Resource<Spec> {
    /// metadata.name.
    pub name: String,
    /// metadata.labels.
    pub labels: HashMap<String, String>,
    /// spec.
    pub spec: Spec,
}

/// IPAddressPool spec.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[kube(
    group = "metallb.io",
    version = "v1beta1",
    kind = "IPAddressPool",
    namespaced,
    status = "IpAddressPoolStatus",
    doc = "A set of addresses LoadBalancer Services get their IPs from.",
    printcolumn = r#"{"name":"Auto Assign","type":"boolean","jsonPath":".spec.autoAssign"}"#,
    printcolumn = r#"{"name":"Avoid Buggy IPs","type":"boolean","jsonPath":".spec.avoidBuggyIPs"}"#,
    printcolumn = r#"{"name":"Addresses","type":"string","jsonPath":".spec.addresses"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IpAddressPoolSpec {
    /// The addresses: CIDRs ("192.0.2.0/24") or ranges ("192.0.2.10-192.0.2.20"), either
    /// family.
    pub addresses: Vec<String>,
    /// Whether Services that do not name a pool get IPs from this one (default true).
    pub auto_assign: Option<bool>,
    /// Never hand out IPv4 addresses ending in .0 or .255, which some old devices drop.
    #[serde(default, rename = "avoidBuggyIPs")]
    pub avoid_buggy_ips: bool,
    /// Which Services may use the pool, and in which order pools are tried.
    pub service_allocation: Option<ServiceAllocation>,
}

/// How many addresses of an IPAddressPool are assigned and still available, per family.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct IpAddressPoolStatus {
    /// IPv4 addresses assigned to Services.
    #[serde(rename = "assignedIPv4")]
    pub assigned_ipv4: i64,
    /// IPv6 addresses assigned to Services.
    #[serde(rename = "assignedIPv6")]
    pub assigned_ipv6: i64,
    /// IPv4 addresses still free.
    #[serde(rename = "availableIPv4")]
    pub available_ipv4: i64,
    /// IPv6 addresses still free (capped at the largest 64-bit number).
    #[serde(rename = "availableIPv6")]
    pub available_ipv6: i64,
}

/// Which Services may use an IPAddressPool, and in which order pools are tried.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceAllocation {
    /// Pools with a lower number are tried first; 0 comes after every numbered pool.
    #[serde(default)]
    pub priority: i32,
    /// Namespaces whose Services may use the pool.
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Namespaces, by label, whose Services may use the pool.
    #[serde(default)]
    pub namespace_selectors: Vec<LabelSelector>,
    /// Services, by label, that may use the pool.
    #[serde(default)]
    pub service_selectors: Vec<LabelSelector>,
}

/// BGPPeer v1beta2 spec.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[kube(
    group = "metallb.io",
    version = "v1beta2",
    kind = "BGPPeer",
    namespaced,
    doc = "A BGP router the nodes peer with, and how.",
    printcolumn = r#"{"name":"Address","type":"string","jsonPath":".spec.peerAddress"}"#,
    printcolumn = r#"{"name":"ASN","type":"string","jsonPath":".spec.peerASN"}"#,
    printcolumn = r#"{"name":"BFD Profile","type":"string","jsonPath":".spec.bfdProfile"}"#,
    printcolumn = r#"{"name":"Multi Hops","type":"string","jsonPath":".spec.ebgpMultiHop"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BgpPeerSpec {
    /// The AS number the nodes speak as.
    #[serde(rename = "myASN")]
    pub my_asn: u32,
    /// The AS number the router must have; or set dynamicASN instead.
    #[serde(rename = "peerASN", default)]
    pub peer_asn: u32,
    /// The router's address.
    #[serde(default)]
    pub peer_address: String,
    /// The local address sessions are made from (default: chosen by the node).
    pub source_address: Option<String>,
    /// The router's TCP port (default 179).
    pub peer_port: Option<u32>,
    /// Proposed hold time, a Go duration ("90s"): 0 or at least 3s; default 90s.
    pub hold_time: Option<String>,
    /// Keepalive interval, a Go duration; at most the hold time; default a third of it.
    pub keepalive_time: Option<String>,
    /// Pause between connection attempts, a Go duration (the first pause of the backoff).
    pub connect_time: Option<String>,
    /// BGP identifier (an IPv4 address); default the node's address.
    #[serde(rename = "routerID")]
    pub router_id: Option<String>,
    /// Nodes that peer with this router; any one matching suffices; none means every node.
    #[serde(default)]
    pub node_selectors: Vec<LabelSelector>,
    /// TCP MD5 password (RFC 2385), in plain text; prefer passwordSecret.
    pub password: Option<String>,
    /// A Secret of type kubernetes.io/basic-auth holding the TCP MD5 password under key
    /// "password".
    pub password_secret: Option<SecretReference>,
    /// The BFDProfile watching the path to the router; its going down ends the session at once.
    pub bfd_profile: Option<String>,
    /// The router may be more than one hop away (eBGP only; iBGP is always multihop).
    #[serde(default)]
    pub ebgp_multi_hop: bool,
    /// Advertise graceful restart, so that the router keeps the routes while a node restarts.
    #[serde(default)]
    pub enable_graceful_restart: bool,
    /// A VRF to peer in: refused, sessions run in the node's default VRF.
    pub vrf: Option<String>,
    /// An interface for unnumbered peering: refused, set peerAddress instead.
    pub interface: Option<String>,
    /// The peer's AS from its OPEN instead of peerASN: "internal" or "external".
    #[serde(rename = "dynamicASN")]
    pub dynamic_asn: Option<String>,
    /// Deprecated by MetalLB in favour of dualStackAddressFamily: one family per session.
    #[serde(rename = "disableMP", default)]
    pub disable_mp: bool,
    /// The AS number this session presents instead of myASN (FRR's local-as).
    #[serde(rename = "localASN")]
    pub local_asn: Option<u32>,
    /// Also advertise the other address family over this session.
    #[serde(default)]
    pub dual_stack_address_family: bool,
}

/// A reference to a Secret.
#[derive(
    Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq, PartialOrd, Ord,
)]
#[serde(deny_unknown_fields)]
pub struct SecretReference {
    /// Name.
    pub name: String,
    /// Namespace; empty means the configuration namespace.
    #[serde(default)]
    pub namespace: String,
}

/// BGPAdvertisement spec.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[kube(
    group = "metallb.io",
    version = "v1beta1",
    kind = "BGPAdvertisement",
    namespaced,
    doc = "How the IPs of some pools are announced over BGP, from which nodes, to which peers. No spec: every pool, from every node, to every peer.",
    printcolumn = r#"{"name":"IPAddressPools","type":"string","jsonPath":".spec.ipAddressPools"}"#,
    printcolumn = r#"{"name":"IPAddressPool Selectors","type":"string","jsonPath":".spec.ipAddressPoolSelectors"}"#,
    printcolumn = r#"{"name":"Peers","type":"string","jsonPath":".spec.peers"}"#,
    printcolumn = r#"{"name":"Node Selectors","type":"string","jsonPath":".spec.nodeSelectors","priority":10}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BgpAdvertisementSpec {
    /// Prefix length IPv4 addresses are announced with (default 32: each address alone).
    pub aggregation_length: Option<u32>,
    /// Prefix length IPv6 addresses are announced with (default 128).
    #[serde(rename = "aggregationLengthV6")]
    pub aggregation_length_v6: Option<u32>,
    /// LOCAL_PREF attribute, sent to iBGP peers only.
    pub local_pref: Option<u32>,
    /// Communities to attach: "65000:100", "large:1:2:3", or the name of a Community alias.
    #[serde(default)]
    pub communities: Vec<String>,
    /// Pools whose IPs are announced, by name; with ipAddressPoolSelectors empty too, every
    /// pool.
    #[serde(default)]
    pub ip_address_pools: Vec<String>,
    /// Pools whose IPs are announced, by label.
    #[serde(default)]
    pub ip_address_pool_selectors: Vec<LabelSelector>,
    /// Nodes that announce; none means every node.
    #[serde(default)]
    pub node_selectors: Vec<LabelSelector>,
    /// BGPPeers announced to, by name; none means every peer.
    #[serde(default)]
    pub peers: Vec<String>,
    /// Services whose IPs are announced, by label; none means every Service of the pools. Only
    /// with the default aggregation lengths.
    #[serde(default)]
    pub service_selectors: Vec<LabelSelector>,
}

// The kind's description, the fields' and the printer columns are MetalLB's, so that `kubectl
// explain` and `kubectl get` read as they did (the doc comments below are those descriptions).
/// L2AdvertisementSpec defines the desired state of L2Advertisement.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[kube(
    group = "metallb.io",
    version = "v1beta1",
    kind = "L2Advertisement",
    namespaced,
    status = "L2AdvertisementStatus",
    doc = "L2Advertisement allows to advertise the LoadBalancer IPs provided by the selected pools via L2.",
    printcolumn = r#"{"name":"IPAddressPools","type":"string","jsonPath":".spec.ipAddressPools"}"#,
    printcolumn = r#"{"name":"IPAddressPool Selectors","type":"string","jsonPath":".spec.ipAddressPoolSelectors"}"#,
    printcolumn = r#"{"name":"Interfaces","type":"string","jsonPath":".spec.interfaces"}"#,
    printcolumn = r#"{"name":"Node Selectors","type":"string","jsonPath":".spec.nodeSelectors","priority":10}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct L2AdvertisementSpec {
    /// The list of IPAddressPools to advertise via this advertisement, selected by name.
    #[serde(default)]
    pub ip_address_pools: Vec<String>,
    /// A selector for the IPAddressPools which would get advertised via this advertisement.
    /// If no IPAddressPool is selected by this or by the list, the advertisement is applied to
    /// all the IPAddressPools.
    #[serde(default)]
    pub ip_address_pool_selectors: Vec<LabelSelector>,
    /// NodeSelectors allows to limit the nodes to announce as next hops for the LoadBalancer
    /// IP. When empty, all the nodes are announced as next hops.
    #[serde(default)]
    pub node_selectors: Vec<LabelSelector>,
    /// A list of interfaces to announce from. The LB IP will be announced only from these
    /// interfaces. If the field is not set, we advertise from all the interfaces on the host.
    #[serde(default)]
    pub interfaces: Vec<String>,
    /// ServiceSelectors limits the set of services that will be advertised via this
    /// advertisement. If empty, all services from the selected pools are advertised.
    /// (Served, so that MetalLB's objects keep it; refused when set: not implemented yet.)
    #[serde(default)]
    pub service_selectors: Vec<LabelSelector>,
}

// Empty, as MetalLB's, which serves the status subresource all the same.
/// L2AdvertisementStatus defines the observed state of L2Advertisement.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub struct L2AdvertisementStatus {}

/// Community spec.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[kube(
    group = "metallb.io",
    version = "v1beta1",
    kind = "Community",
    namespaced,
    doc = "Names for BGP community values, usable in BGPAdvertisements."
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CommunitySpec {
    /// The aliases.
    #[serde(default)]
    pub communities: Vec<CommunityAliasEntry>,
}

/// One alias of a Community resource.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommunityAliasEntry {
    /// The alias, used in BGPAdvertisements' communities.
    pub name: String,
    /// The value: "65000:100" or "large:1:2:3".
    pub value: String,
}

/// BFDProfile spec.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[kube(
    group = "metallb.io",
    version = "v1beta1",
    kind = "BFDProfile",
    namespaced,
    doc = "BFD settings a BGPPeer refers to, to detect a dead path in a second.",
    printcolumn = r#"{"name":"Passive Mode","type":"boolean","jsonPath":".spec.passiveMode"}"#,
    printcolumn = r#"{"name":"Transmit Interval","type":"integer","jsonPath":".spec.transmitInterval"}"#,
    printcolumn = r#"{"name":"Receive Interval","type":"integer","jsonPath":".spec.receiveInterval"}"#,
    printcolumn = r#"{"name":"Multiplier","type":"integer","jsonPath":".spec.detectMultiplier"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BfdProfileSpec {
    /// Slowest interval, in milliseconds, at which we accept control packets (10..60000,
    /// default 300).
    pub receive_interval: Option<u32>,
    /// Fastest interval, in milliseconds, at which we send control packets (10..60000,
    /// default 300).
    pub transmit_interval: Option<u32>,
    /// Control packets that may be lost before the path is declared down (2..255, default 3).
    pub detect_multiplier: Option<u32>,
    /// Echo interval in milliseconds (10..60000, default 50); echo itself is refused.
    pub echo_interval: Option<u32>,
    /// Echo function: refused, BFD runs in asynchronous mode only.
    #[serde(default)]
    pub echo_mode: bool,
    /// Wait for the router to start the BFD session.
    #[serde(default)]
    pub passive_mode: bool,
    /// Lowest TTL accepted on multihop sessions (1..254, default 254).
    pub minimum_ttl: Option<u32>,
}

/// Every metallb.io resource of the configuration namespace.
#[derive(Clone, Debug, Default)]
pub struct Resources {
    /// IPAddressPools.
    pub pools: Vec<Resource<IpAddressPoolSpec>>,
    /// BGPPeers.
    pub peers: Vec<Resource<BgpPeerSpec>>,
    /// BGPAdvertisements.
    pub advertisements: Vec<Resource<BgpAdvertisementSpec>>,
    /// L2Advertisements.
    pub l2_advertisements: Vec<Resource<L2AdvertisementSpec>>,
    /// Communities.
    pub communities: Vec<Resource<CommunitySpec>>,
    /// BFDProfiles.
    pub bfd_profiles: Vec<Resource<BfdProfileSpec>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Document {
    api_version: String,
    kind: String,
    metadata: Metadata,
    #[serde(default)]
    spec: serde_json::Value,
}

#[derive(Deserialize)]
struct Metadata {
    name: String,
    #[serde(default)]
    labels: HashMap<String, String>,
}

impl Resources {
    /// Reads resources from multi-document YAML, as `kubectl apply -f` takes them. Kinds other
    /// than metallb.io's are skipped; metallb.io kinds metallb-rs does not implement are errors.
    pub fn from_yaml(text: &str) -> Result<Self, Vec<FormatError>> {
        let mut resources = Self::default();
        let mut errors = Vec::new();
        let documents: Vec<serde_json::Value> = serde_saphyr::from_multiple(text)
            .map_err(|err| vec![FormatError { object: "YAML".into(), message: err.to_string() }])?;
        for (index, value) in documents.into_iter().enumerate() {
            if value.is_null() {
                continue;
            }
            match serde_json::from_value::<Document>(value) {
                Ok(document) => {
                    if let Err(error) = resources.add(document) {
                        errors.push(error);
                    }
                }
                Err(err) => errors.push(FormatError {
                    object: format!("document {index}"),
                    message: err.to_string(),
                }),
            }
        }
        if errors.is_empty() { Ok(resources) } else { Err(errors) }
    }

    fn add(&mut self, document: Document) -> Result<(), FormatError> {
        let Some(group_version) = document.api_version.strip_prefix("metallb.io/") else {
            return Ok(());
        };
        let object = format!("{}/{}", document.kind, document.metadata.name);
        let name = document.metadata.name;
        let labels = document.metadata.labels;
        fn spec<S: for<'de> Deserialize<'de>>(
            object: &str,
            value: serde_json::Value,
        ) -> Result<S, FormatError> {
            // A resource with no spec at all (MetalLB's simplest BGPAdvertisement) has every
            // field at its default.
            let value = if value.is_null() { serde_json::json!({}) } else { value };
            serde_json::from_value(value).map_err(|err| FormatError {
                object: object.to_string(),
                message: format!("spec: {err}"),
            })
        }
        match (document.kind.as_str(), group_version) {
            ("IPAddressPool", "v1beta1") => {
                self.pools.push(Resource { name, labels, spec: spec(&object, document.spec)? })
            }
            ("BGPPeer", "v1beta2") => {
                self.peers.push(Resource { name, labels, spec: spec(&object, document.spec)? })
            }
            ("BGPPeer", "v1beta1") => {
                let old: BgpPeerV1beta1Spec = spec(&object, document.spec)?;
                self.peers.push(Resource { name, labels, spec: old.into() })
            }
            ("BGPAdvertisement", "v1beta1") => self.advertisements.push(Resource {
                name,
                labels,
                spec: spec(&object, document.spec)?,
            }),
            ("Community", "v1beta1") => self.communities.push(Resource {
                name,
                labels,
                spec: spec(&object, document.spec)?,
            }),
            ("BFDProfile", "v1beta1") => self.bfd_profiles.push(Resource {
                name,
                labels,
                spec: spec(&object, document.spec)?,
            }),
            ("L2Advertisement", "v1beta1") => self.l2_advertisements.push(Resource {
                name,
                labels,
                spec: spec(&object, document.spec)?,
            }),
            ("ServiceBGPStatus" | "ServiceL2Status" | "ConfigurationState", _) => {}
            (kind, version) => {
                return Err(FormatError {
                    object,
                    message: format!("unknown kind {kind} in metallb.io/{version}"),
                });
            }
        }
        Ok(())
    }

    /// The configuration these resources describe. `secrets` maps each `passwordSecret` to
    /// the password it holds (the watcher reads the Secrets).
    pub fn to_config(
        &self,
        secrets: &BTreeMap<SecretReference, String>,
    ) -> Result<pb::Config, Vec<FormatError>> {
        let mut errors = Vec::new();
        let pools = self
            .pools
            .iter()
            .map(|pool| {
                let allocation = pool.spec.service_allocation.as_ref();
                pb::AddressPool {
                    name: pool.name.clone(),
                    addresses: pool.spec.addresses.clone(),
                    auto_assign: pool.spec.auto_assign.unwrap_or(true),
                    avoid_buggy_ips: pool.spec.avoid_buggy_ips,
                    service_allocation: allocation.map(|a| pb::ServiceAllocation {
                        priority: a.priority,
                        namespaces: a.namespaces.clone(),
                        namespace_selectors: a.namespace_selectors.iter().map(Into::into).collect(),
                        service_selectors: a.service_selectors.iter().map(Into::into).collect(),
                    }),
                    labels: pool.labels.clone(),
                }
            })
            .collect();

        let mut peers = Vec::new();
        for peer in &self.peers {
            let object = format!("BGPPeer/{}", peer.name);
            let spec = &peer.spec;
            let unsupported = [
                ("vrf", &spec.vrf, "sessions run in the node's default VRF"),
                (
                    "interface",
                    &spec.interface,
                    "unnumbered peering is not implemented; set peerAddress to the router's address on that interface",
                ),
            ];
            for (field, value, why) in unsupported {
                if value.as_deref().is_some_and(|v| !v.is_empty()) {
                    errors.push(FormatError {
                        object: object.clone(),
                        message: format!("spec.{field} is not supported: {why}"),
                    });
                }
            }
            let mut duration =
                |value: &Option<String>, field: &str| match value.as_deref().map(parse_seconds) {
                    Some(Ok(seconds)) => Some(seconds),
                    Some(Err(message)) => {
                        errors.push(FormatError {
                            object: object.clone(),
                            message: format!("spec.{field}: {message}"),
                        });
                        None
                    }
                    None => None,
                };
            let hold_time_seconds = duration(&spec.hold_time, "holdTime");
            let keepalive_time_seconds = duration(&spec.keepalive_time, "keepaliveTime");
            let connect_time_seconds = duration(&spec.connect_time, "connectTime");
            let password = match (&spec.password, &spec.password_secret) {
                (Some(_), Some(_)) => {
                    errors.push(FormatError {
                        object: object.clone(),
                        message: "spec.password and spec.passwordSecret are both set; use one"
                            .into(),
                    });
                    String::new()
                }
                (Some(password), None) => password.clone(),
                (None, Some(reference)) => match secrets.get(reference) {
                    Some(password) => password.clone(),
                    None => {
                        errors.push(FormatError {
                            object: object.clone(),
                            message: format!(
                                "spec.passwordSecret {}/{}: no such Secret, or it has no key \"password\"",
                                reference.namespace, reference.name
                            ),
                        });
                        String::new()
                    }
                },
                (None, None) => String::new(),
            };
            peers.push(pb::BgpPeer {
                name: peer.name.clone(),
                my_asn: spec.my_asn,
                peer_asn: spec.peer_asn,
                peer_address: spec.peer_address.clone(),
                peer_port: spec.peer_port.unwrap_or(0),
                source_address: spec.source_address.clone().unwrap_or_default(),
                hold_time_seconds,
                keepalive_time_seconds,
                router_id: spec.router_id.clone().unwrap_or_default(),
                node_selectors: spec.node_selectors.iter().map(Into::into).collect(),
                password,
                bfd_profile: spec.bfd_profile.clone().unwrap_or_default(),
                ebgp_multihop: spec.ebgp_multi_hop,
                enable_graceful_restart: spec.enable_graceful_restart,
                connect_time_seconds,
                bfd: None,
                local_asn: spec.local_asn.unwrap_or(0),
                dynamic_asn: spec.dynamic_asn.clone().unwrap_or_default(),
                dual_stack_address_family: spec.dual_stack_address_family,
                disable_mp: spec.disable_mp,
            });
        }

        let advertisements = self
            .advertisements
            .iter()
            .map(|ad| pb::BgpAdvertisement {
                name: ad.name.clone(),
                aggregation_length: ad.spec.aggregation_length,
                aggregation_length_v6: ad.spec.aggregation_length_v6,
                local_pref: ad.spec.local_pref,
                communities: ad.spec.communities.clone(),
                ip_address_pools: ad.spec.ip_address_pools.clone(),
                ip_address_pool_selectors: ad
                    .spec
                    .ip_address_pool_selectors
                    .iter()
                    .map(Into::into)
                    .collect(),
                node_selectors: ad.spec.node_selectors.iter().map(Into::into).collect(),
                peers: ad.spec.peers.clone(),
                service_selectors: ad.spec.service_selectors.iter().map(Into::into).collect(),
            })
            .collect();
        let l2_advertisements = self
            .l2_advertisements
            .iter()
            .map(|ad| pb::L2Advertisement {
                name: ad.name.clone(),
                ip_address_pools: ad.spec.ip_address_pools.clone(),
                ip_address_pool_selectors: ad
                    .spec
                    .ip_address_pool_selectors
                    .iter()
                    .map(Into::into)
                    .collect(),
                node_selectors: ad.spec.node_selectors.iter().map(Into::into).collect(),
                interfaces: ad.spec.interfaces.clone(),
                service_selectors: ad.spec.service_selectors.iter().map(Into::into).collect(),
            })
            .collect();
        let communities = self
            .communities
            .iter()
            .flat_map(|community| &community.spec.communities)
            .map(|alias| pb::CommunityAlias {
                name: alias.name.clone(),
                value: alias.value.clone(),
            })
            .collect();
        let bfd_profiles = self
            .bfd_profiles
            .iter()
            .map(|profile| pb::BfdProfile {
                name: profile.name.clone(),
                receive_interval_ms: profile.spec.receive_interval,
                transmit_interval_ms: profile.spec.transmit_interval,
                detect_multiplier: profile.spec.detect_multiplier,
                echo_interval_ms: profile.spec.echo_interval,
                echo_mode: profile.spec.echo_mode,
                passive_mode: profile.spec.passive_mode,
                minimum_ttl: profile.spec.minimum_ttl,
            })
            .collect();
        if errors.is_empty() {
            Ok(pb::Config {
                pools,
                peers,
                advertisements,
                communities,
                bfd_profiles,
                l2_advertisements,
            })
        } else {
            Err(errors)
        }
    }
}

/// ConfigurationState (metallb.io/v1beta1): where metallb-rs reports whether the configuration
/// it was given is in force. One object per reporting component; the spec is empty.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[kube(
    group = "metallb.io",
    version = "v1beta1",
    kind = "ConfigurationState",
    namespaced,
    status = "ConfigurationStateStatus"
)]
pub struct ConfigurationStateSpec {}

/// The status of a ConfigurationState.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ConfigurationStateStatus {
    /// "Valid" when the last configuration is in force, "Invalid" when it was rejected (the
    /// previous one then stays in force).
    pub result: String,
    /// Every reason for the rejection, one per line; empty when valid.
    #[serde(default)]
    pub error_summary: String,
}

/// ServiceBGPStatus (metallb.io/v1beta1): which node announces which Service to which peers.
/// The spec is empty; everything is in the status.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[kube(
    group = "metallb.io",
    version = "v1beta1",
    kind = "ServiceBGPStatus",
    namespaced,
    status = "ServiceBgpStatusStatus",
    doc = "Which node announces a Service over BGP, and to which peers.",
    printcolumn = r#"{"name":"Node","type":"string","jsonPath":".status.node"}"#,
    printcolumn = r#"{"name":"Service Name","type":"string","jsonPath":".status.serviceName"}"#,
    printcolumn = r#"{"name":"Service Namespace","type":"string","jsonPath":".status.serviceNamespace"}"#
)]
pub struct ServiceBgpStatusSpec {}

/// The status of a ServiceBGPStatus.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ServiceBgpStatusStatus {
    /// The node announcing the Service.
    #[serde(default)]
    pub node: String,
    /// The Service's name.
    #[serde(default)]
    pub service_name: String,
    /// The Service's namespace.
    #[serde(default)]
    pub service_namespace: String,
    /// The BGPPeers the Service is advertised to from that node (whether each session is up
    /// is in the announcer's session report, not here).
    #[serde(default)]
    pub peers: Vec<String>,
}

// ServiceL2Status (metallb.io/v1beta1): which node answers ARP/NDP for a Service in layer 2
// mode, and on which interfaces. The spec is empty; everything is in the status. Descriptions
// (the doc comments) and printer columns are MetalLB's.
/// ServiceL2StatusSpec defines the desired state of ServiceL2Status.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[kube(
    group = "metallb.io",
    version = "v1beta1",
    kind = "ServiceL2Status",
    namespaced,
    status = "ServiceL2StatusStatus",
    doc = "ServiceL2Status reveals the actual traffic status of loadbalancer services in layer2 mode.",
    printcolumn = r#"{"name":"Allocated Node","type":"string","jsonPath":".status.node"}"#,
    printcolumn = r#"{"name":"Service Name","type":"string","jsonPath":".status.serviceName"}"#,
    printcolumn = r#"{"name":"Service Namespace","type":"string","jsonPath":".status.serviceNamespace"}"#
)]
pub struct ServiceL2StatusSpec {}

/// MetalLBServiceL2Status defines the observed state of ServiceL2Status.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ServiceL2StatusStatus {
    /// Node indicates the node that receives the directed traffic
    #[serde(default)]
    pub node: String,
    /// ServiceName indicates the service this status represents
    #[serde(default)]
    pub service_name: String,
    /// ServiceNamespace indicates the namespace of the service
    #[serde(default)]
    pub service_namespace: String,
    /// Interfaces indicates the interfaces that receive the directed traffic
    #[serde(default)]
    pub interfaces: Vec<InterfaceInfo>,
}

/// InterfaceInfo defines interface info of layer2 announcement.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub struct InterfaceInfo {
    /// Name the name of network interface card
    #[serde(default)]
    pub name: String,
}
