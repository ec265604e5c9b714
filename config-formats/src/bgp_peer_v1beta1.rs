//! `BGPPeer` in `metallb.io/v1beta1`, the version MetalLB still serves beside v1beta2. Its
//! fields are a subset of v1beta2's with the same JSON shapes, so the API server converts
//! between the two by changing `apiVersion` alone (no conversion webhook), and the reader turns
//! a v1beta1 peer into a v1beta2 one field by field, as MetalLB's conversion does.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{resources::BgpPeerSpec, selector::LabelSelector};

/// A BGP peer in MetalLB's older version: prefer metallb.io/v1beta2, which adds passwordSecret,
/// connectTime, graceful restart, dynamicASN, localASN and the address-family settings.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[kube(
    group = "metallb.io",
    version = "v1beta1",
    kind = "BGPPeer",
    namespaced,
    doc = "A BGP router the nodes peer with (metallb.io/v1beta1; v1beta2 is the stored version).",
    printcolumn = r#"{"name":"Address","type":"string","jsonPath":".spec.peerAddress"}"#,
    printcolumn = r#"{"name":"ASN","type":"string","jsonPath":".spec.peerASN"}"#,
    printcolumn = r#"{"name":"BFD Profile","type":"string","jsonPath":".spec.bfdProfile"}"#,
    printcolumn = r#"{"name":"Multi Hops","type":"string","jsonPath":".spec.ebgpMultiHop"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BgpPeerV1beta1Spec {
    /// The AS number the nodes speak as.
    #[serde(rename = "myASN")]
    pub my_asn: u32,
    /// The AS number the router must have.
    #[serde(rename = "peerASN")]
    pub peer_asn: u32,
    /// The router's address.
    pub peer_address: String,
    /// The local address sessions are made from.
    pub source_address: Option<String>,
    /// The router's TCP port (default 179).
    pub peer_port: Option<u32>,
    /// Proposed hold time, a Go duration ("90s"): 0 or at least 3s.
    pub hold_time: Option<String>,
    /// Keepalive interval, a Go duration; at most the hold time.
    pub keepalive_time: Option<String>,
    /// BGP identifier (an IPv4 address); default the node's address.
    #[serde(rename = "routerID")]
    pub router_id: Option<String>,
    /// Nodes that peer with this router; any one matching suffices; none means every node.
    #[serde(default)]
    pub node_selectors: Vec<LabelSelector>,
    /// TCP MD5 password, in plain text.
    pub password: Option<String>,
    /// The BFDProfile watching the path to the router.
    pub bfd_profile: Option<String>,
    /// The router may be more than one hop away (eBGP only).
    #[serde(default)]
    pub ebgp_multi_hop: bool,
}

impl From<BgpPeerV1beta1Spec> for BgpPeerSpec {
    fn from(old: BgpPeerV1beta1Spec) -> Self {
        Self {
            my_asn: old.my_asn,
            peer_asn: old.peer_asn,
            peer_address: old.peer_address,
            source_address: old.source_address,
            peer_port: old.peer_port,
            hold_time: old.hold_time,
            keepalive_time: old.keepalive_time,
            router_id: old.router_id,
            node_selectors: old.node_selectors,
            password: old.password,
            bfd_profile: old.bfd_profile,
            ebgp_multi_hop: old.ebgp_multi_hop,
            ..Self::default()
        }
    }
}
