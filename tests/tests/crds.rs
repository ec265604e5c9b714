//! The metallb.io CRDs in deploy/ are generated from the Rust types, a real kube-apiserver
//! accepts them together with the objects MetalLB's documentation shows, and the watcher
//! configures the allocator from those objects, running with the RBAC from deploy/.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use kube::{Api, api::PostParams};
use metallb_tests::{
    configuration::{
        configuration_state, control_plane_with_crds, remove_echo_mode, start_watcher,
    },
    daemons::Allocator,
    kube_control_plane::ControlPlane,
    stack::kube_objects::event_notes,
    tools::our_binary,
    trust::Trust,
};

const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
const CRDS: [&str; 7] = [
    "ipaddresspools.metallb.io",
    "bgppeers.metallb.io",
    "bgpadvertisements.metallb.io",
    "communities.metallb.io",
    "bfdprofiles.metallb.io",
    "configurationstates.metallb.io",
    "servicebgpstatuses.metallb.io",
];

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
    for crd in CRDS {
        control_plane.wait_for_crd(crd).await.unwrap();
    }
    let examples = format!("{REPO}/config-formats/tests/examples/metallb-io.yaml");
    control_plane.apply_file(std::path::Path::new(&examples)).await.unwrap();
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

    // The watcher reads them all into a configuration the allocator accepts.
    let client = control_plane.client().await;
    let mut objects = Vec::new();
    for (kind, version) in [("BGPPeer", "v1beta2"), ("BGPAdvertisement", "v1beta1")] {
        let gvk = kube::api::GroupVersionKind::gvk("metallb.io", version, kind);
        let resource = kube::api::ApiResource::from_gvk(&gvk);
        let api: Api<kube::api::DynamicObject> =
            Api::namespaced_with(client.clone(), ns, &resource);
        let ours = ["old-style", "learnt-as", "bare", "web-only"];
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
}
