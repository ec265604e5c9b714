//! The metallb.io CRDs in deploy/ are generated from the Rust types, a real kube-apiserver
//! accepts them together with the objects MetalLB's documentation shows (the layer 2 kinds
//! included), and the watcher configures the allocator from those objects, running with the
//! RBAC from deploy/.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use kube::{Api, api::PostParams};
use metallb_tests::{
    configuration::{
        METALLB_CRDS, configuration_state, control_plane_with_crds, remove_echo_mode,
        start_watcher, wait_for_error_summary,
    },
    daemons::Allocator,
    kube_control_plane::ControlPlane,
    stack::kube_objects::event_notes,
    tools::our_binary,
    trust::Trust,
};

const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

#[test]
fn deploy_holds_the_crds_the_types_generate() {
    let output = std::process::Command::new(our_binary("metallb-crds")).output().unwrap();
    assert!(output.status.success());
    let committed = std::fs::read_to_string(format!("{REPO}/deploy/crds.yaml")).unwrap();
    assert!(
        String::from_utf8(output.stdout).unwrap() == committed,
        "deploy/crds.yaml is stale: cargo run -q -p metallb-config-formats --bin metallb-crds > deploy/crds.yaml"
    );
}

async fn control_plane_with_crds_and_examples() -> ControlPlane {
    let control_plane = control_plane_with_crds().await.unwrap();
    for crd in METALLB_CRDS {
        control_plane.wait_for_crd(crd).await.unwrap();
    }
    for examples in ["metallb-io.yaml", "metallb-io-l2.yaml"] {
        let examples = format!("{REPO}/config-formats/tests/examples/{examples}");
        control_plane.apply_file(std::path::Path::new(&examples)).await.unwrap();
    }
    remove_echo_mode(&control_plane, "full1").await.unwrap();
    control_plane
}

#[tokio::test]
async fn the_watcher_configures_the_allocator_from_metallb_io_resources() {
    let logs = tempfile::tempdir().unwrap();
    let control_plane = control_plane_with_crds_and_examples().await;
    let pools = control_plane
        .kubectl(&["get", "ipaddresspools.metallb.io", "-n", "metallb-system", "-o", "name"])
        .await
        .unwrap();
    assert!(pools.contains("first-pool") && pools.contains("ns-pool"), "{pools}");

    // The watcher runs as its ServiceAccount with the RBAC from deploy/, not as an admin.
    control_plane
        .apply_file(std::path::Path::new(&format!("{REPO}/deploy/rbac-watcher.yaml")))
        .await
        .unwrap();
    let kubeconfig = control_plane
        .kubeconfig_for_user(
            "system:serviceaccount:metallb-system:metallb-watcher",
            &["system:serviceaccounts", "system:serviceaccounts:metallb-system"],
        )
        .unwrap();
    let trust = Trust::new(&control_plane, &[]).await.unwrap();
    let allocator = Allocator::start(&trust, &[], logs.path()).await.unwrap();
    // The Trust stands in for the Secret and ConfigMap the watcher would issue.
    let extra = ["--manage-allocator-tls=false"];
    let watcher =
        start_watcher(&kubeconfig, &allocator, &trust, &extra, logs.path()).await.unwrap();
    let client = control_plane.client().await;
    let services: Api<Service> = Api::namespaced(client, "default");
    let service: Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]},
    }))
    .unwrap();
    services.create(&PostParams::default(), &service).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let web = services.get("web").await.unwrap();
        let pool = web
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("metallb.io/ip-allocated-from-pool"))
            .cloned();
        if let Some(pool) = pool {
            assert_eq!(pool, "first-pool");
            assert_eq!(metallb_watcher::translate::ingress_ips(&web), ["192.168.10.0"]);
            let state = configuration_state(&control_plane, "{.status.result}").await;
            assert_eq!(state, "Valid");
            // The pool's status counts the address, as MetalLB's does.
            let counted = Instant::now() + Duration::from_secs(20);
            loop {
                let assigned = control_plane
                    .kubectl(&[
                        "get",
                        "ipaddresspools.metallb.io",
                        "first-pool",
                        "-n",
                        "metallb-system",
                        "-o",
                        "jsonpath={.status.assignedIPv4}/{.status.availableIPv4}",
                    ])
                    .await
                    .unwrap();
                // 192.168.10.0/24 and 192.168.9.1-5: 261 addresses, one assigned.
                if assigned == "1/260" {
                    break;
                }
                assert!(Instant::now() < counted, "status {assigned:?}\n{}", watcher.log());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no IP from the resources' pool; watcher log:\n{}",
            watcher.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Two broken pools among good ones: each InvalidConfig Event is on the pool it is about.
    for name in ["zz-broken-1", "zz-broken-2"] {
        let broken = format!(
            "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata:\n  name: {name}\n  namespace: metallb-system\nspec:\n  addresses:\n  - 10.0.0.9-10.0.0.1\n"
        );
        control_plane.apply_yaml(&broken).await.unwrap();
    }
    let client = control_plane.client().await;
    for (name, other) in [("zz-broken-1", "zz-broken-2"), ("zz-broken-2", "zz-broken-1")] {
        let deadline = Instant::now() + Duration::from_secs(30);
        let notes = loop {
            let notes = event_notes(&client, "metallb-system", name, "InvalidConfig").await;
            if notes.iter().any(|note| note.contains(name)) {
                break notes;
            }
            assert!(
                Instant::now() < deadline,
                "no InvalidConfig about {name} on it: {notes:?}; watcher log:\n{}",
                watcher.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert!(notes.iter().all(|note| !note.contains(other)), "{name} got {other}'s: {notes:?}");
    }
    for good in ["first-pool", "ns-pool"] {
        let misplaced = event_notes(&client, "metallb-system", good, "InvalidConfig").await;
        assert!(misplaced.is_empty(), "{good} got {misplaced:?}");
    }

    // L2Advertisements are watched (with deploy/'s RBAC) and reach the allocator: one naming
    // a pool twice comes back as the allocator's reason, in the ConfigurationState.
    control_plane
        .apply_yaml(
            "apiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata:\n  name: zz-twice\n  namespace: metallb-system\nspec:\n  ipAddressPools: [first-pool, first-pool]\n",
        )
        .await
        .unwrap();
    let expected = "L2Advertisement/zz-twice ipAddressPools[1]: \"first-pool\" is listed twice";
    wait_for_error_summary(&control_plane, expected, &watcher).await;
}

/// What MetalLB 0.16 serves and this schema once refused or pruned.
const METALLB_0_16_OBJECTS: &str = r#"
apiVersion: metallb.io/v1beta1
kind: BGPPeer
metadata: {name: old-style, namespace: metallb-system}
spec:
  myASN: 64512
  peerASN: 64500
  peerAddress: 192.0.2.1
  holdTime: 3.5s
  nodeSelectors:
  - matchLabels: {rack: a}
---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {name: learnt-as, namespace: metallb-system}
spec:
  myASN: 64512
  dynamicASN: external
  localASN: 64999
  peerAddress: 192.0.2.2
  dualStackAddressFamily: true
  disableMP: false
---
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata: {name: bare, namespace: metallb-system}
---
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata: {name: web-only, namespace: metallb-system}
spec:
  serviceSelectors:
  - matchLabels: {app: web}
"#;

/// An L2Advertisement with every field MetalLB 0.16 serves.
fn every_l2_field() -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "metallb.io/v1beta1",
        "kind": "L2Advertisement",
        "metadata": {"name": "every-field", "namespace": "metallb-system"},
        "spec": {
            "ipAddressPools": ["first-pool", "ns-pool"],
            "ipAddressPoolSelectors": [
                {"matchLabels": {"zone": "east"}},
                {"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["bgp-only"]}]},
            ],
            "nodeSelectors": [
                {"matchLabels": {"kubernetes.io/hostname": "NodeA"}},
                {"matchExpressions": [{"key": "rack", "operator": "Exists"}]},
            ],
            "interfaces": ["eth0", "eth1"],
            "serviceSelectors": [{"matchLabels": {"tier": "frontend"}}],
        },
    })
}

/// A ServiceL2Status; its status is written through the status subresource.
const SERVICE_L2_STATUS: &str = r#"
apiVersion: metallb.io/v1beta1
kind: ServiceL2Status
metadata:
  name: l2-web
  namespace: metallb-system
spec: {}
"#;

#[tokio::test]
async fn metallb_s_versions_fields_columns_and_descriptions_are_served() {
    let control_plane = control_plane_with_crds_and_examples().await;
    control_plane.apply_yaml(METALLB_0_16_OBJECTS).await.unwrap();
    let get = |args: Vec<&'static str>| {
        let control_plane = &control_plane;
        async move { control_plane.kubectl(&args).await.unwrap() }
    };
    let ns = "metallb-system";
    // The v1beta1 peer is stored as v1beta2, every field kept.
    let old =
        get(vec!["get", "bgppeers.v1beta2.metallb.io", "old-style", "-n", ns, "-o", "json"]).await;
    let old: serde_json::Value = serde_json::from_str(&old).unwrap();
    assert_eq!(old["apiVersion"], "metallb.io/v1beta2");
    assert_eq!(old["spec"]["holdTime"], "3.5s");
    assert_eq!(old["spec"]["nodeSelectors"][0]["matchLabels"]["rack"], "a");
    // v1beta2's newer fields are not pruned.
    let learnt = get(vec!["get", "bgppeers", "learnt-as", "-n", ns, "-o", "json"]).await;
    let learnt: serde_json::Value = serde_json::from_str(&learnt).unwrap();
    assert_eq!(learnt["spec"]["localASN"], 64999);
    assert_eq!(learnt["spec"]["dynamicASN"], "external");
    assert_eq!(learnt["spec"]["dualStackAddressFamily"], true);
    let web = get(vec![
        "get",
        "bgpadvertisements",
        "web-only",
        "-n",
        ns,
        "-o",
        "jsonpath={.spec.serviceSelectors[0].matchLabels.app}",
    ])
    .await;
    assert_eq!(web, "web");
    // Printer columns and descriptions as MetalLB's.
    let peers = get(vec!["get", "bgppeers", "-n", ns]).await;
    let header = peers.lines().next().unwrap_or_default().to_string();
    for column in ["ADDRESS", "ASN", "BFD PROFILE", "MULTI HOPS"] {
        assert!(header.contains(column), "{peers}");
    }
    let pools = get(vec!["get", "ipaddresspools", "-n", ns]).await;
    assert!(pools.contains("AUTO ASSIGN") && pools.contains("AVOID BUGGY IPS"), "{pools}");
    let explained = get(vec!["explain", "ipaddresspools.metallb.io"]).await;
    assert!(explained.contains("LoadBalancer Services get their IPs from"), "{explained}");
    let explained = get(vec!["explain", "bgppeers.metallb.io.spec.dynamicASN"]).await;
    assert!(explained.contains("internal"), "{explained}");

    // An L2Advertisement comes back with every field, none pruned.
    let applied = every_l2_field();
    control_plane.apply_yaml(&applied.to_string()).await.unwrap();
    let every = get(vec!["get", "l2advertisements", "every-field", "-n", ns, "-o", "json"]).await;
    let every: serde_json::Value = serde_json::from_str(&every).unwrap();
    // The one difference: the schema fills in the Exists expression's empty values, which
    // means what the absent list meant.
    let mut expected = applied["spec"].clone();
    expected["nodeSelectors"][1]["matchExpressions"][0]["values"] = serde_json::json!([]);
    assert_eq!(every["spec"], expected, "pruned or changed");
    // Its columns and descriptions are MetalLB's; the node selectors show with -o wide.
    let l2 = get(vec!["get", "l2advertisements", "-n", ns]).await;
    let header = l2.lines().next().unwrap_or_default().to_string();
    for column in ["IPADDRESSPOOLS", "IPADDRESSPOOL SELECTORS", "INTERFACES"] {
        assert!(header.contains(column), "{l2}");
    }
    assert!(!header.contains("NODE SELECTORS"), "{l2}");
    let wide = get(vec!["get", "l2advertisements", "every-field", "-n", ns, "-o", "wide"]).await;
    assert!(wide.contains("NODE SELECTORS") && wide.contains("NodeA"), "{wide}");
    assert!(wide.contains("[\"eth0\",\"eth1\"]"), "{wide}");
    let explained = get(vec!["explain", "l2advertisements.metallb.io"]).await;
    assert!(
        explained.contains("advertise the LoadBalancer IPs provided")
            && explained.contains("via L2"),
        "{explained}"
    );
    let explained = get(vec!["explain", "l2advertisements.metallb.io.spec.interfaces"]).await;
    assert!(explained.contains("A list of interfaces to announce from"), "{explained}");

    // A ServiceL2Status holds its status (through the status subresource, as for the others),
    // shown in MetalLB's columns.
    control_plane.apply_yaml(SERVICE_L2_STATUS).await.unwrap();
    let status = r#"{"status":{"node":"node-a","serviceName":"web","serviceNamespace":"default","interfaces":[{"name":"eth0"},{"name":"eth1"}]}}"#;
    let patch = ["patch", "servicel2statuses", "l2-web", "-n", ns, "--subresource=status"];
    let patch: Vec<&str> = patch.into_iter().chain(["--type=merge", "-p", status]).collect();
    control_plane.kubectl(&patch).await.unwrap();
    let stored = get(vec!["get", "servicel2statuses", "l2-web", "-n", ns, "-o", "json"]).await;
    let stored: serde_json::Value = serde_json::from_str(&stored).unwrap();
    let expected: serde_json::Value = serde_json::from_str(status).unwrap();
    assert_eq!(stored["status"], expected["status"], "status pruned or changed");
    let listed = get(vec!["get", "servicel2statuses", "-n", ns]).await;
    let header = listed.lines().next().unwrap_or_default().to_string();
    for column in ["ALLOCATED NODE", "SERVICE NAME", "SERVICE NAMESPACE"] {
        assert!(header.contains(column), "{listed}");
    }
    let row = listed.lines().find(|line| line.starts_with("l2-web")).unwrap_or_default();
    assert!(row.contains("node-a") && row.contains("web") && row.contains("default"), "{listed}");
    let explained = get(vec!["explain", "servicel2statuses.metallb.io.status.interfaces"]).await;
    assert!(explained.contains("interfaces that receive the directed traffic"), "{explained}");

    // The watcher reads them all into a configuration the allocator accepts.
    let client = control_plane.client().await;
    let mut objects = Vec::new();
    let kinds =
        [("BGPPeer", "v1beta2"), ("BGPAdvertisement", "v1beta1"), ("L2Advertisement", "v1beta1")];
    for (kind, version) in kinds {
        let gvk = kube::api::GroupVersionKind::gvk("metallb.io", version, kind);
        let resource = kube::api::ApiResource::from_gvk(&gvk);
        let api: Api<kube::api::DynamicObject> =
            Api::namespaced_with(client.clone(), ns, &resource);
        // every-field has serviceSelectors, which the reader refuses on an L2Advertisement.
        let ours = ["old-style", "learnt-as", "bare", "web-only", "nodes-a-and-b", "by-label"];
        objects.extend(
            api.list(&Default::default())
                .await
                .unwrap()
                .items
                .into_iter()
                .filter(|object| ours.contains(&object.metadata.name.as_deref().unwrap_or(""))),
        );
    }
    let config = metallb_watcher::translate::config(ns, None, &objects, &[]).unwrap();
    let learnt = config.peers.iter().find(|peer| peer.name == "learnt-as").unwrap();
    assert_eq!(
        (learnt.peer_asn, learnt.dynamic_asn.as_str(), learnt.local_asn),
        (0, "external", 64999)
    );
    let old = config.peers.iter().find(|peer| peer.name == "old-style").unwrap();
    assert_eq!(old.hold_time_seconds, Some(3), "3.5s truncated to whole seconds, as MetalLB");
    let bare = config.advertisements.iter().find(|ad| ad.name == "bare").unwrap();
    assert!(bare.ip_address_pools.is_empty() && bare.peers.is_empty());
    // L2Advertisements by kind, then name, as the watcher reads every kind.
    let l2: Vec<&str> = config.l2_advertisements.iter().map(|ad| ad.name.as_str()).collect();
    assert_eq!(l2, ["by-label", "nodes-a-and-b"]);
    assert_eq!(config.l2_advertisements[1].node_selectors.len(), 2);
}
