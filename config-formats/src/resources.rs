//! The `metallb.io` resources (IPAddressPool and BGPAdvertisement v1beta1, BGPPeer v1beta2,
//! Community and BFDProfile v1beta1) into one configuration. The spec types follow MetalLB's
//! published schema field for field, so the objects users already have read unchanged.

use std::collections::{BTreeMap, HashMap};

use kube::CustomResource;
use metallb_proto::pb;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{FormatError, duration::parse_seconds, selector::LabelSelector};

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
#[kube(group = "metallb.io", version = "v1beta1", kind = "IPAddressPool", namespaced)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IpAddressPoolSpec {
    /// CIDRs and ranges.
    pub addresses: Vec<String>,
    /// Default true.
    pub auto_assign: Option<bool>,
    /// Skip .0 and .255.
    #[serde(default, rename = "avoidBuggyIPs")]
    pub avoid_buggy_ips: bool,
    /// Which services the pool serves, in which order.
    pub service_allocation: Option<ServiceAllocation>,
}

/// IPAddressPool spec.serviceAllocation.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceAllocation {
    /// Lower first.
    #[serde(default)]
    pub priority: i32,
    /// Namespaces served.
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Namespace label selectors.
    #[serde(default)]
    pub namespace_selectors: Vec<LabelSelector>,
    /// Service label selectors.
    #[serde(default)]
    pub service_selectors: Vec<LabelSelector>,
}

/// BGPPeer v1beta2 spec.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[kube(group = "metallb.io", version = "v1beta2", kind = "BGPPeer", namespaced)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BgpPeerSpec {
    /// Our AS.
    #[serde(rename = "myASN")]
    pub my_asn: u32,
    /// The peer's AS.
    #[serde(rename = "peerASN", default)]
    pub peer_asn: u32,
    /// The peer's address.
    pub peer_address: String,
    /// Local address.
    pub source_address: Option<String>,
    /// The peer's port.
    pub peer_port: Option<u32>,
    /// Go duration.
    pub hold_time: Option<String>,
    /// Go duration.
    pub keepalive_time: Option<String>,
    /// Go duration.
    pub connect_time: Option<String>,
    /// BGP identifier.
    #[serde(rename = "routerID")]
    pub router_id: Option<String>,
    /// Nodes that peer.
    #[serde(default)]
    pub node_selectors: Vec<LabelSelector>,
    /// Plain-text MD5 password.
    pub password: Option<String>,
    /// Secret holding the MD5 password under key `password`.
    pub password_secret: Option<SecretReference>,
    /// BFD profile name.
    pub bfd_profile: Option<String>,
    /// eBGP multihop.
    #[serde(default)]
    pub ebgp_multi_hop: bool,
    /// Graceful restart.
    #[serde(default)]
    pub enable_graceful_restart: bool,
    /// VRF (not supported: sessions run in the node's default VRF).
    pub vrf: Option<String>,
    /// Unnumbered interface peering (not supported).
    pub interface: Option<String>,
    /// Dynamic peer AS (not supported).
    #[serde(rename = "dynamicASN")]
    pub dynamic_asn: Option<String>,
    /// Disable MP-BGP (accepted; MP-BGP is used for IPv6 regardless).
    #[serde(rename = "disableMP", default)]
    pub disable_mp: bool,
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
#[kube(group = "metallb.io", version = "v1beta1", kind = "BGPAdvertisement", namespaced)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BgpAdvertisementSpec {
    /// IPv4 aggregation length.
    pub aggregation_length: Option<u32>,
    /// IPv6 aggregation length.
    #[serde(rename = "aggregationLengthV6")]
    pub aggregation_length_v6: Option<u32>,
    /// LOCAL_PREF.
    pub local_pref: Option<u32>,
    /// Community values or Community alias names.
    #[serde(default)]
    pub communities: Vec<String>,
    /// Pools by name.
    #[serde(default)]
    pub ip_address_pools: Vec<String>,
    /// Pools by label.
    #[serde(default)]
    pub ip_address_pool_selectors: Vec<LabelSelector>,
    /// Nodes that announce.
    #[serde(default)]
    pub node_selectors: Vec<LabelSelector>,
    /// Peers by name.
    #[serde(default)]
    pub peers: Vec<String>,
}

/// Community spec.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[kube(group = "metallb.io", version = "v1beta1", kind = "Community", namespaced)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CommunitySpec {
    /// Aliases.
    #[serde(default)]
    pub communities: Vec<CommunityAliasEntry>,
}

/// One alias of a Community resource.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommunityAliasEntry {
    /// Alias.
    pub name: String,
    /// Value.
    pub value: String,
}

/// BFDProfile spec.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[kube(group = "metallb.io", version = "v1beta1", kind = "BFDProfile", namespaced)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BfdProfileSpec {
    /// ms.
    pub receive_interval: Option<u32>,
    /// ms.
    pub transmit_interval: Option<u32>,
    /// Packets.
    pub detect_multiplier: Option<u32>,
    /// ms.
    pub echo_interval: Option<u32>,
    /// Echo mode.
    #[serde(default)]
    pub echo_mode: bool,
    /// Passive mode.
    #[serde(default)]
    pub passive_mode: bool,
    /// TTL.
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
                return Err(FormatError {
                    object,
                    message: "metallb.io/v1beta1 BGPPeer is deprecated; use metallb.io/v1beta2 (the fields are the same apart from holdTime/keepaliveTime, which v1beta2 keeps)".into(),
                });
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
            ("L2Advertisement", _) => {
                return Err(FormatError {
                    object,
                    message: "L2Advertisement is not supported: metallb-rs announces over BGP only"
                        .into(),
                });
            }
            ("ServiceBGPStatus" | "ConfigurationState", _) => {}
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
            for (field, value) in [
                ("vrf", &spec.vrf),
                ("interface", &spec.interface),
                ("dynamicASN", &spec.dynamic_asn),
            ] {
                if value.as_deref().is_some_and(|v| !v.is_empty()) {
                    errors.push(FormatError {
                        object: object.clone(),
                        message: format!("spec.{field} is not supported"),
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
            Ok(pb::Config { pools, peers, advertisements, communities, bfd_profiles })
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
