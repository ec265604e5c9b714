//! The cases MetalLB's advanced BGP configuration page shows, each written out here as the
//! objects a user would apply, read and validated as the watcher and the allocator do: each
//! accepted and meaning what MetalLB says it means, but the VRF peer, which is refused naming
//! the field.

use metallb_allocator::{
    config::{Config, local_pref_conflicts, validate},
    nodes::NodeInfo,
};
use metallb_config_formats::resources::Resources;

const POOL: &str = "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: first-pool, namespace: metallb-system}\nspec:\n  addresses: [198.51.100.10/24]\n";

fn read(objects: &str) -> Result<Config, String> {
    let text = format!("{POOL}---\n{objects}");
    let resources = Resources::from_yaml(&text).map_err(|errors| format!("{errors:?}"))?;
    let config =
        resources.to_config(&Default::default()).map_err(|errors| format!("{errors:?}"))?;
    validate(&config).map_err(|errors| format!("{errors:?}"))
}

fn node(name: &str) -> NodeInfo {
    let labels = [("kubernetes.io/hostname".to_string(), name.to_string())].into();
    NodeInfo { name: name.into(), labels, excluded: false, ready: true }
}

#[test]
fn a_local_and_an_aggregated_advertisement_of_one_pool_coexist() {
    let config = read(
        "apiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {name: local, namespace: metallb-system}\nspec:\n  ipAddressPools: [first-pool]\n  aggregationLength: 32\n  localPref: 100\n  communities: [\"65535:65282\"]\n---\napiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {name: external, namespace: metallb-system}\nspec:\n  ipAddressPools: [first-pool]\n  aggregationLength: 24\n",
    )
    .unwrap();
    // Different aggregations are different UPDATEs: no LOCAL_PREF conflict, even on one node.
    assert!(local_pref_conflicts(&config, &[node("a")]).is_empty());
    let external = config.advertisements.iter().find(|ad| ad.name == "external").unwrap();
    assert_eq!(external.aggregation_length_v4, 24);
    // The pool written with host bits means its network, as in MetalLB.
    assert_eq!(config.pools["first-pool"].ranges[0].size(), 256);
}

#[test]
fn peers_with_ports_node_selectors_source_addresses_graceful_restart_and_local_asn() {
    let config = read(
        "apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {name: selected, namespace: metallb-system}\nspec:\n  myASN: 64512\n  peerASN: 64512\n  peerAddress: 172.30.0.3\n  peerPort: 180\n  nodeSelectors:\n  - matchLabels: {rack: frontend}\n    matchExpressions:\n    - {key: network-speed, operator: NotIn, values: [slow]}\n  - matchExpressions:\n    - {key: kubernetes.io/hostname, operator: In, values: [hostA, hostB]}\n---\napiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {name: sourced, namespace: metallb-system}\nspec:\n  myASN: 64512\n  peerASN: 64512\n  peerAddress: 172.30.0.3\n  peerPort: 179\n  sourceAddress: 172.30.0.2\n  nodeSelectors:\n  - matchLabels: {kubernetes.io/hostname: node-1}\n---\napiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {name: restarting, namespace: metallb-system}\nspec:\n  myASN: 64512\n  peerASN: 64513\n  peerAddress: 172.30.0.4\n  enableGracefulRestart: true\n---\napiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {name: local-as, namespace: metallb-system}\nspec:\n  myASN: 64512\n  peerASN: 64520\n  peerAddress: 172.30.0.5\n  localASN: 65410\n",
    )
    .unwrap();
    let selected = &config.peers["selected"];
    assert_eq!((selected.spec.peer_port, selected.node_selectors.len()), (180, 2));
    let rack_a = [("rack".to_string(), "frontend".to_string())].into();
    assert!(selected.node_selectors[0].matches(&rack_a), "NotIn matches a node without the label");
    assert_eq!(config.peers["sourced"].spec.source_address, "172.30.0.2");
    assert!(config.peers["restarting"].spec.enable_graceful_restart);
    assert_eq!(config.peers["local-as"].spec.local_asn, 65410);
}

#[test]
fn advertisements_by_node_by_peer_by_service_and_with_community_aliases() {
    let config = read(
        "apiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {name: by-node, namespace: metallb-system}\nspec:\n  ipAddressPools: [first-pool]\n  nodeSelectors:\n  - matchLabels: {kubernetes.io/hostname: NodeA}\n  - matchLabels: {kubernetes.io/hostname: NodeB}\n---\napiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {name: by-peer, namespace: metallb-system}\nspec:\n  ipAddressPools: [PoolA]\n  peers: [PeerA, PeerB]\n---\napiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {name: production-services, namespace: metallb-system}\nspec:\n  ipAddressPools: [first-pool]\n  localPref: 200\n  serviceSelectors:\n  - matchLabels: {environment: production}\n---\napiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {name: staging-services, namespace: metallb-system}\nspec:\n  ipAddressPools: [first-pool]\n  localPref: 100\n  serviceSelectors:\n  - matchLabels: {environment: staging}\n---\napiVersion: metallb.io/v1beta1\nkind: Community\nmetadata: {name: communities, namespace: metallb-system}\nspec:\n  communities:\n  - {name: vpn-only, value: \"1234:1\"}\n  - {name: NO_ADVERTISE, value: \"65535:65282\"}\n---\napiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {name: with-alias, namespace: metallb-system}\nspec:\n  ipAddressPools: [first-pool]\n  aggregationLength: 32\n  localPref: 100\n  communities: [vpn-only]\n",
    )
    .unwrap();
    let ad = |name: &str| config.advertisements.iter().find(|ad| ad.name == name).unwrap();
    assert_eq!(ad("by-node").node_selectors.len(), 2);
    assert!(ad("by-peer").pools.is_empty(), "PoolA does not exist: it selects nothing");
    assert_eq!(ad("by-peer").peers, ["PeerA", "PeerB"]);
    assert_eq!(ad("production-services").service_selectors.len(), 1);
    // Service-selecting advertisements are left out of the LOCAL_PREF rule, as in MetalLB.
    assert!(local_pref_conflicts(&config, &[node("NodeA")]).iter().all(|error| {
        !error.object.contains("production") && !error.object.contains("staging")
    }));
    assert_eq!(ad("with-alias").communities.len(), 1, "the alias resolved");
}

#[test]
fn a_peer_in_a_vrf_is_refused_naming_the_field() {
    let refused = read(
        "apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {name: in-vrf, namespace: metallb-system}\nspec:\n  myASN: 64512\n  peerASN: 64512\n  peerAddress: 172.30.0.3\n  peerPort: 179\n  vrf: red\n",
    )
    .unwrap_err();
    assert!(refused.contains("spec.vrf is not supported"), "{refused}");
}
