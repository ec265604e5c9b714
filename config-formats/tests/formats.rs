//! The formats users bring, read from MetalLB's documented examples.

use std::collections::BTreeMap;

use metallb_config_formats::{
    configmap,
    resources::{Resources, SecretReference},
};

const TUTORIAL: &str = include_str!("examples/v0.1-tutorial.yaml");
const CONFIGMAP_LATER: &str = include_str!("examples/configmap-0.13.yaml");
const RESOURCES: &str = include_str!("examples/metallb-io.yaml");
const L2_RESOURCES: &str = include_str!("examples/metallb-io-l2.yaml");
const DEPLOY_RESOURCES: &str = include_str!("../../deploy/examples/resources.yaml");
const DEPLOY_CONFIGMAP: &str = include_str!("../../deploy/examples/configmap-v0.1.yaml");

#[test]
fn the_v0_1_tutorial_configmap_reads() {
    let config = configmap::parse("ConfigMap metallb-system/config", TUTORIAL).unwrap();
    assert_eq!(config.peers.len(), 1);
    let peer = &config.peers[0];
    assert_eq!((peer.name.as_str(), peer.my_asn, peer.peer_asn), ("10.96.0.100", 64512, 64512));
    assert_eq!(config.pools[0].addresses, ["198.51.100.0/24"]);
    assert!(config.pools[0].auto_assign, "v0.1 pools always auto-assign");
    let ad = &config.advertisements[0];
    assert_eq!((ad.aggregation_length, ad.local_pref), (Some(32), Some(100)));
    assert_eq!(ad.ip_address_pools, ["my-ip-space"]);
    assert_eq!(config.communities[0].name, "no-advertise");
}

#[test]
fn the_later_configmap_format_reads() {
    let config = configmap::parse("ConfigMap metallb-system/config", CONFIGMAP_LATER).unwrap();
    let peer = &config.peers[0];
    assert_eq!(peer.hold_time_seconds, Some(90));
    assert_eq!((peer.router_id.as_str(), peer.password.as_str()), ("10.0.0.10", "s3cret"));
    assert_eq!(peer.node_selectors[0].match_expressions[0].operator, "NotIn");
    let pool = &config.pools[0];
    assert_eq!(pool.addresses.len(), 2);
    assert!(!pool.auto_assign && pool.avoid_buggy_ips);
    assert_eq!(config.advertisements.len(), 2);
    assert_eq!(config.advertisements[1].aggregation_length, Some(24));
    assert_eq!(config.bfd_profiles[0].minimum_ttl, Some(254));
}

#[test]
fn a_pool_without_advertisements_is_announced_as_plain_host_routes() {
    let config =
        configmap::parse("cm", "address-pools:\n- name: p\n  cidr: [192.0.2.0/24]\n").unwrap();
    assert_eq!(config.advertisements.len(), 1);
    assert_eq!(config.advertisements[0].aggregation_length, None);
}

#[test]
fn the_configmap_reads_yaml_as_metallb_does() {
    // MetalLB reads the ConfigMap with Go's YAML 1.1 reader, where yes/no/on/off are booleans
    // and numbers may be quoted or not; the YAML crate here (kube-client's) reads them alike.
    let config = configmap::parse(
        "cm",
        "peers:\n- peer-address: 192.0.2.1\n  peer-asn: \"64500\"\n  my-asn: 64512\naddress-pools:\n- name: p\n  protocol: bgp\n  addresses: [192.0.2.0/24]\n  auto-assign: no\n  avoid-buggy-ips: yes\n",
    );
    let config = config.unwrap_or_else(|err| panic!("{err}"));
    assert!(!config.pools[0].auto_assign && config.pools[0].avoid_buggy_ips);
    assert_eq!(config.peers[0].peer_asn, 64500);
}

#[test]
fn metallb_v0_1_s_own_example_reads() {
    // As MetalLB's first release documented it: a unitless hold time, community aliases
    // inside the pool, and a top-level key this reader does not know.
    let text = "peers:\n- peer-address: 10.0.0.100\n  peer-asn: 64512\n  my-asn: 64512\n  peer-port: 179\n  hold-time: 120\naddress-pools:\n- name: my-ip-space\n  cidr:\n  - 198.51.100.0/24\n  advertisements:\n  - aggregation-length: 32\n    localpref: 100\n    communities:\n    - 64512:1\n    - no-export\n  communities:\n    no-export: 65535:65281\nsome-future-key: {}\n";
    let config = configmap::parse("cm", text).unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(config.peers[0].hold_time_seconds, Some(120));
    assert_eq!(config.communities[0].name, "no-export");
    assert_eq!(config.advertisements[0].communities, ["64512:1", "no-export"]);
    let fractional = configmap::parse(
        "cm",
        "peers:\n- peer-address: 10.0.0.100\n  peer-asn: 1\n  my-asn: 2\n  hold-time: 3.9s\n",
    )
    .unwrap();
    assert_eq!(fractional.peers[0].hold_time_seconds, Some(3), "truncated, as MetalLB does");
}

#[test]
fn configmap_errors_are_precise() {
    let typo =
        configmap::parse("cm", "peers:\n- my-asn: 1\n  peer-asn: 2\n  peer-adress: 192.0.2.1\n")
            .unwrap_err();
    assert!(typo.to_string().contains("peer-adress"), "{typo}");
    let twice = configmap::parse(
        "cm",
        "address-pools:\n- name: p\n  cidr: [192.0.2.0/28]\n- name: p\n  cidr: [192.0.2.16/28]\n",
    )
    .unwrap_err();
    assert_eq!(
        twice.message,
        "address-pools[1]: another pool (address-pools[0]) is also named \"p\""
    );
    let hold = configmap::parse(
        "cm",
        "peers:\n- my-asn: 1\n  peer-asn: 2\n  peer-address: 192.0.2.1\n  hold-time: 90x\n",
    )
    .unwrap_err();
    assert!(hold.message.contains("peers[0].hold-time"), "{hold}");
    let asn = configmap::parse(
        "cm",
        "peers:\n- my-asn: 4294967296\n  peer-asn: 2\n  peer-address: 192.0.2.1\n",
    )
    .unwrap_err();
    assert!(asn.message.contains("my-asn") || asn.message.contains("invalid value"), "{asn}");
}

#[test]
fn the_documented_metallb_io_resources_read_unchanged() {
    let resources = Resources::from_yaml(RESOURCES).unwrap();
    assert_eq!(resources.pools.len(), 2);
    let secrets = BTreeMap::from([(
        SecretReference { name: "secretname".into(), namespace: "metallb-system".into() },
        "s3cret".to_string(),
    )]);
    let config = resources.to_config(&secrets).unwrap();
    let pool = &config.pools[1];
    assert!(!pool.auto_assign && pool.avoid_buggy_ips);
    assert_eq!(pool.service_allocation.as_ref().unwrap().priority, 50);
    assert_eq!(config.pools[0].labels["zone"], "east");
    let peer = &config.peers[0];
    assert_eq!((peer.hold_time_seconds, peer.keepalive_time_seconds), (Some(90), Some(30)));
    assert_eq!((peer.password.as_str(), peer.router_id.as_str()), ("s3cret", "10.10.10.10"));
    assert_eq!(config.advertisements[0].communities, ["NO_ADVERTISE", "large:123:456:789"]);
    assert_eq!(config.advertisements[1].ip_address_pool_selectors[0].match_labels["zone"], "east");
    assert_eq!(config.communities[0].value, "65535:65282");
    assert_eq!(config.bfd_profiles[0].detect_multiplier, Some(37));
}

#[test]
fn resource_errors_are_precise() {
    let missing_secret =
        Resources::from_yaml(RESOURCES).unwrap().to_config(&BTreeMap::new()).unwrap_err();
    assert!(
        missing_secret[0]
            .to_string()
            .contains("BGPPeer/sample: spec.passwordSecret metallb-system/secretname"),
        "{missing_secret:?}"
    );
    let unknown_field = Resources::from_yaml(
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: p}\nspec: {addreses: [192.0.2.0/24]}\n",
    )
    .unwrap_err();
    assert!(
        unknown_field[0].to_string().contains("IPAddressPool/p: spec: unknown field `addreses`"),
        "{unknown_field:?}"
    );
}

/// The `config` key of a ConfigMap manifest, as the watcher hands it to `configmap::parse`.
fn config_key(manifest: &str) -> String {
    let object: serde_json::Value = serde_saphyr::from_str(manifest).unwrap();
    assert_eq!(object["kind"].as_str(), Some("ConfigMap"));
    object["data"]["config"].as_str().expect("a data.config key").to_string()
}

/// What an example configures, without the names each form derives differently.
type Essentials = (
    Vec<(String, Vec<String>)>,
    Vec<(u32, u32, String, Option<u32>)>,
    Vec<(Option<u32>, Vec<String>, Vec<String>)>,
    Vec<(String, String)>,
);

fn essentials(config: &metallb_proto::pb::Config) -> Essentials {
    (
        config.pools.iter().map(|p| (p.name.clone(), p.addresses.clone())).collect(),
        config
            .peers
            .iter()
            .map(|p| (p.my_asn, p.peer_asn, p.peer_address.clone(), p.hold_time_seconds))
            .collect(),
        config
            .advertisements
            .iter()
            .map(|a| (a.aggregation_length, a.communities.clone(), a.ip_address_pools.clone()))
            .collect(),
        config.communities.iter().map(|c| (c.name.clone(), c.value.clone())).collect(),
    )
}

#[test]
fn the_deploy_examples_read_and_say_the_same_in_both_forms() {
    let from_resources =
        Resources::from_yaml(DEPLOY_RESOURCES).unwrap().to_config(&BTreeMap::new()).unwrap();
    let from_configmap =
        configmap::parse("ConfigMap metallb-system/config", &config_key(DEPLOY_CONFIGMAP)).unwrap();
    let expected: Essentials = (
        vec![("production".into(), vec!["203.0.113.0/24".into()])],
        vec![(64512, 64513, "192.0.2.1".into(), Some(90))],
        vec![(Some(32), vec!["no-export".into()], vec!["production".into()])],
        vec![("no-export".into(), "65535:65281".into())],
    );
    assert_eq!(essentials(&from_resources), expected);
    assert_eq!(essentials(&from_configmap), expected);
}

/// MetalLB's layer 2 ConfigMap, as its v0.12 configuration documentation shows it.
const LAYER2_CONFIGMAP: &str = "address-pools:\n- name: default\n  protocol: layer2\n  addresses:\n  - 192.168.1.240-192.168.1.250\n";

#[test]
fn a_layer2_configmap_pool_gets_an_l2advertisement_named_after_it_and_no_bgp() {
    let config = configmap::parse("cm", LAYER2_CONFIGMAP).unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(config.pools[0].addresses, ["192.168.1.240-192.168.1.250"]);
    assert!(config.advertisements.is_empty(), "{:?}", config.advertisements);
    let l2 = &config.l2_advertisements[..];
    assert_eq!(l2.len(), 1);
    assert_eq!(
        (l2[0].name.as_str(), &l2[0].ip_address_pools[..]),
        ("default", &["default".into()][..])
    );
    assert!(
        l2[0].node_selectors.is_empty() && l2[0].interfaces.is_empty(),
        "all nodes, interfaces"
    );
    assert!(l2[0].ip_address_pool_selectors.is_empty());
}

#[test]
fn layer2_and_bgp_pools_side_by_side_keep_their_own_advertisements() {
    // The layer 2 pool between two BGP ones, the second BGP pool with no protocol (v0.1's).
    let text = "address-pools:\n- name: routed\n  protocol: bgp\n  addresses: [198.51.100.0/24]\n  bgp-advertisements:\n  - aggregation-length: 32\n  - aggregation-length: 24\n- name: local\n  protocol: layer2\n  addresses: [192.168.1.240/28]\n- name: old\n  cidr: [203.0.113.0/24]\n";
    let config = configmap::parse("cm", text).unwrap_or_else(|err| panic!("{err}"));
    let pools: Vec<&str> = config.pools.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(pools, ["routed", "local", "old"]);
    let bgp: Vec<(&str, &[String])> = config
        .advertisements
        .iter()
        .map(|ad| (ad.name.as_str(), &ad.ip_address_pools[..]))
        .collect();
    let (routed, old) = (["routed".to_string()], ["old".to_string()]);
    assert_eq!(bgp, [("routed-0", &routed[..]), ("routed-1", &routed[..]), ("old-0", &old[..])]);
    let l2: Vec<&str> = config.l2_advertisements.iter().map(|ad| ad.name.as_str()).collect();
    assert_eq!(l2, ["local"]);
}

#[test]
fn a_layer2_pool_with_bgp_advertisements_or_an_unknown_protocol_is_refused() {
    // MetalLB: "cannot have bgp-advertisements configuration element in a layer2 address pool".
    for key in ["bgp-advertisements", "advertisements"] {
        let text = format!(
            "address-pools:\n- name: l2\n  protocol: layer2\n  addresses: [192.0.2.0/24]\n  {key}:\n  - aggregation-length: 32\n"
        );
        let err = configmap::parse("ConfigMap metallb-system/config", &text).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "ConfigMap metallb-system/config: address-pools[0] (l2): cannot have {key} in a layer2 address pool"
            )
        );
    }
    // An empty list says nothing, and MetalLB let it pass.
    let empty = "address-pools:\n- name: l2\n  protocol: layer2\n  addresses: [192.0.2.0/24]\n  bgp-advertisements: []\n";
    assert_eq!(configmap::parse("cm", empty).unwrap().l2_advertisements.len(), 1);
    let unknown = configmap::parse(
        "cm",
        "address-pools:\n- name: p\n  protocol: bgp\n  addresses: [192.0.2.0/28]\n- name: q\n  protocol: layer3\n  addresses: [192.0.2.16/28]\n",
    )
    .unwrap_err();
    assert_eq!(
        unknown.message,
        "address-pools[1] (q): unknown protocol \"layer3\" (bgp or layer2)"
    );
    // MetalLB 0.3 to 0.5's names for layer 2 mode are unknown since 0.6, as there.
    let arp = configmap::parse(
        "cm",
        "address-pools:\n- name: old\n  protocol: arp\n  addresses: [192.0.2.0/28]\n",
    )
    .unwrap_err();
    assert!(arp.message.contains("unknown protocol \"arp\"") && arp.message.contains("layer2"));
}

#[test]
fn metallb_s_basic_layer_2_configuration_reads() {
    // configuration/_index.md, "Layer 2 configuration": one pool, one L2Advertisement with no
    // spec, which applies to every pool.
    let text = "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata:\n  name: first-pool\n  namespace: metallb-system\nspec:\n  addresses:\n  - 192.168.1.240-192.168.1.250\n---\napiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata:\n  name: example\n  namespace: metallb-system\n";
    let config = Resources::from_yaml(text).unwrap().to_config(&BTreeMap::new()).unwrap();
    assert_eq!(config.pools[0].name, "first-pool");
    assert!(config.advertisements.is_empty());
    let ad = &config.l2_advertisements[0];
    assert_eq!(ad.name, "example");
    assert!(ad.ip_address_pools.is_empty() && ad.ip_address_pool_selectors.is_empty());
    assert!(ad.node_selectors.is_empty() && ad.interfaces.is_empty());
}

#[test]
fn the_documented_l2advertisements_read_unchanged() {
    let config = Resources::from_yaml(L2_RESOURCES)
        .unwrap_or_else(|err| panic!("{err:?}"))
        .to_config(&BTreeMap::new())
        .unwrap_or_else(|err| panic!("{err:?}"));
    let names: Vec<&str> = config.l2_advertisements.iter().map(|ad| ad.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "empty",
            "example",
            "nodes-a-and-b",
            "node-c",
            "two-interfaces",
            "node-a-eth3",
            "example-advertisement9",
            "example-advertisement10",
            "by-label",
        ],
        "in the order given"
    );
    let ad = |name: &str| config.l2_advertisements.iter().find(|ad| ad.name == name).unwrap();
    assert_eq!(ad("example").ip_address_pools, ["first-pool"]);
    // nodeSelectors: any one of them.
    let hosts: Vec<&str> = ad("nodes-a-and-b")
        .node_selectors
        .iter()
        .map(|s| s.match_labels["kubernetes.io/hostname"].as_str())
        .collect();
    assert_eq!(hosts, ["NodeA", "NodeB"]);
    // interfaces, alone and with nodeSelectors.
    assert_eq!(ad("two-interfaces").interfaces, ["eth0", "eth1"]);
    let eth3 = ad("node-a-eth3");
    assert_eq!(
        (&eth3.interfaces[..], &eth3.ip_address_pools[..]),
        (&["eth3".into()][..], &["fourth-pool".into()][..])
    );
    assert_eq!(eth3.node_selectors[0].match_labels["kubernetes.io/hostname"], "NodeA");
    assert!(ad("example-advertisement9").ip_address_pools.is_empty(), "every pool, from eno1");
    // ipAddressPoolSelectors, by labels and by expression.
    let by_label = &ad("by-label").ip_address_pool_selectors;
    assert_eq!(by_label[0].match_labels["zone"], "east");
    let expression = &by_label[1].match_expressions[0];
    assert_eq!((expression.key.as_str(), expression.operator.as_str()), ("tier", "In"));
    assert_eq!(expression.values, ["l2"]);
    assert!(config.advertisements.is_empty(), "layer 2 only");
}

#[test]
fn l2advertisement_errors_are_precise() {
    // serviceSelectors (MetalLB 0.16 has it) reaches the allocator.
    let selected = Resources::from_yaml(
        "apiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {name: frontend}\nspec:\n  ipAddressPools: [first-pool]\n  serviceSelectors:\n  - matchLabels: {tier: frontend}\n",
    )
    .unwrap()
    .to_config(&BTreeMap::new())
    .unwrap();
    let selectors = &selected.l2_advertisements[0].service_selectors;
    assert_eq!(selectors.len(), 1, "{selected:?}");
    assert_eq!(selectors[0].match_labels["tier"], "frontend");
    let misspelt = Resources::from_yaml(
        "apiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {name: l2}\nspec: {interface: [eth0]}\n",
    )
    .unwrap_err();
    assert!(
        misspelt[0].to_string().contains("L2Advertisement/l2: spec: unknown field `interface`"),
        "{misspelt:?}"
    );
    let other_version = Resources::from_yaml(
        "apiVersion: metallb.io/v1beta2\nkind: L2Advertisement\nmetadata: {name: l2}\n",
    )
    .unwrap_err();
    assert!(
        other_version[0].message.contains("unknown kind L2Advertisement in metallb.io/v1beta2")
    );
    // The status kinds are written by metallb-rs, never read as configuration.
    let status = Resources::from_yaml(
        "apiVersion: metallb.io/v1beta1\nkind: ServiceL2Status\nmetadata: {name: l2-abc}\nstatus: {node: a}\n",
    )
    .unwrap();
    assert!(status.to_config(&BTreeMap::new()).unwrap().l2_advertisements.is_empty());
}
