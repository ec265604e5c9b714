//! Switching from MetalLB: a cluster as a MetalLB 0.16 install leaves it (its metallb.io kinds
//! served by permissive CRDs, the objects MetalLB's documentation writes, Services holding IPs
//! MetalLB gave them, MetalLB's ValidatingWebhookConfiguration left behind) gets metallb-rs's
//! CRDs and components. Every object is still there with every field, every Service keeps its
//! IP, the configuration is in force, and the watcher says to delete the leftover webhook.

use std::time::{Duration, Instant};

use metallb_tests::{
    configuration::{CONFIG_NAMESPACE as NS, configuration_state, remove_echo_mode, start_watcher},
    daemons::Allocator,
    kube_control_plane::ControlPlane,
    trust::Trust,
};

const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// The kinds MetalLB 0.16 serves that hold configuration, as (plural, kind, versions).
const KINDS: [(&str, &str, &[&str]); 6] = [
    ("ipaddresspools", "IPAddressPool", &["v1beta1"]),
    ("bgppeers", "BGPPeer", &["v1beta2", "v1beta1"]),
    ("bgpadvertisements", "BGPAdvertisement", &["v1beta1"]),
    ("l2advertisements", "L2Advertisement", &["v1beta1"]),
    ("communities", "Community", &["v1beta1"]),
    ("bfdprofiles", "BFDProfile", &["v1beta1"]),
];

/// A CRD serving `kind` in `versions` (the first stored) that keeps whatever spec it is given:
/// the most lenient schema an earlier install could have left, so that any field MetalLB
/// stores is in etcd when metallb-rs's CRDs replace it.
fn lenient_crd(plural: &str, kind: &str, versions: &[&str]) -> String {
    let versions: String = versions
        .iter()
        .enumerate()
        .map(|(index, version)| {
            format!(
                "  - name: {version}\n    served: true\n    storage: {}\n    schema:\n      openAPIV3Schema:\n        type: object\n        x-kubernetes-preserve-unknown-fields: true\n",
                index == 0
            )
        })
        .collect();
    format!(
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: {plural}.metallb.io\nspec:\n  group: metallb.io\n  scope: Namespaced\n  names:\n    kind: {kind}\n    plural: {plural}\n    singular: {}\n    listKind: {kind}List\n  versions:\n{versions}",
        kind.to_lowercase()
    )
}

/// MetalLB's own webhook configuration, pointing at its controller, which is gone.
const LEFTOVER_WEBHOOK: &str = r#"apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {name: metallb-webhook-configuration}
webhooks:
- name: ipaddresspoolvalidationwebhook.metallb.io
  admissionReviewVersions: ["v1"]
  sideEffects: None
  failurePolicy: Fail
  clientConfig:
    service: {name: metallb-webhook-service, namespace: metallb-system, path: /validate-metallb-io-v1beta1-ipaddresspool}
  rules:
  - apiGroups: ["metallb.io"]
    apiVersions: ["v1beta1"]
    resources: ["ipaddresspools"]
    operations: ["CREATE", "UPDATE"]
"#;

async fn specs(control_plane: &ControlPlane) -> Vec<(String, serde_json::Value)> {
    let mut specs = Vec::new();
    for (plural, _, _) in KINDS {
        let listed = control_plane
            .kubectl(&["get", &format!("{plural}.metallb.io"), "-n", NS, "-o", "json"])
            .await
            .unwrap();
        let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
        for item in listed["items"].as_array().cloned().unwrap_or_default() {
            let name = format!("{plural}/{}", item["metadata"]["name"].as_str().unwrap_or(""));
            specs.push((name, item["spec"].clone()));
        }
    }
    specs.sort_by(|a, b| a.0.cmp(&b.0));
    specs
}

async fn ingress_of(control_plane: &ControlPlane, service: &str) -> String {
    control_plane
        .kubectl(&[
            "get",
            "service",
            service,
            "-n",
            "default",
            "-o",
            "jsonpath={.status.loadBalancer.ingress[*].ip}",
        ])
        .await
        .unwrap()
}

#[tokio::test]
async fn a_metallb_install_switches_without_losing_an_object_a_field_or_an_ip() {
    let logs = tempfile::tempdir().unwrap();
    let control_plane = ControlPlane::start().await.unwrap();
    control_plane.kubectl(&["create", "namespace", NS]).await.unwrap();

    // As MetalLB left the cluster.
    for (plural, kind, versions) in KINDS {
        control_plane.apply_yaml(&lenient_crd(plural, kind, versions)).await.unwrap();
        control_plane.wait_for_crd(&format!("{plural}.metallb.io")).await.unwrap();
    }
    for examples in ["metallb-io.yaml", "metallb-io-l2.yaml"] {
        let examples = format!("{REPO}/config-formats/tests/examples/{examples}");
        control_plane.apply_file(std::path::Path::new(&examples)).await.unwrap();
    }
    remove_echo_mode(&control_plane, "full1").await.unwrap();
    control_plane.apply_yaml(LEFTOVER_WEBHOOK).await.unwrap();
    for (name, ip) in [("web", "192.168.10.7"), ("db", "192.168.9.3")] {
        control_plane
            .apply_yaml(&format!(
                "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: default\n  annotations: {{metallb.io/ip-allocated-from-pool: first-pool}}\nspec:\n  type: LoadBalancer\n  ports: [{{port: 80}}]\n"
            ))
            .await
            .unwrap();
        let status = format!(r#"{{"status":{{"loadBalancer":{{"ingress":[{{"ip":"{ip}"}}]}}}}}}"#);
        control_plane
            .kubectl(&[
                "patch",
                "service",
                name,
                "-n",
                "default",
                "--subresource=status",
                "--type=merge",
                "-p",
                &status,
            ])
            .await
            .unwrap();
    }
    let before = specs(&control_plane).await;
    assert!(before.len() >= 16, "the MetalLB objects: {before:?}");

    // The switch: metallb-rs's CRDs (as `kubectl apply -k deploy/` applies them), then its
    // components.
    control_plane
        .apply_file(std::path::Path::new(&format!("{REPO}/deploy/crds.yaml")))
        .await
        .unwrap();
    for crd in ["servicebgpstatuses.metallb.io", "l2advertisements.metallb.io"] {
        control_plane.wait_for_crd(crd).await.unwrap();
    }
    let trust = Trust::new(&control_plane, &[]).await.unwrap();
    let allocator = Allocator::start(&trust, &[], logs.path()).await.unwrap();
    let kubeconfig = control_plane.kubeconfig_path();
    let extra = ["--manage-allocator-tls=false"];
    let watcher = start_watcher(kubeconfig, &allocator, &trust, &extra, logs.path()).await.unwrap();

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let state =
            configuration_state(&control_plane, "{.status.result}/{.status.errorSummary}").await;
        if state == "Valid/" && watcher.log().contains("full sync done") {
            break;
        }
        assert!(Instant::now() < deadline, "configuration {state:?}\n{}", watcher.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Every object, every field with its value (the new schema may fill in defaults that mean
    // what an absent field meant, such as `echoMode: false`).
    let after = specs(&control_plane).await;
    let names = |specs: &[(String, serde_json::Value)]| -> Vec<String> {
        specs.iter().map(|(name, _)| name.clone()).collect()
    };
    assert_eq!(names(&after), names(&before), "objects lost or added by the switch");
    for ((name, old), (_, new)) in before.iter().zip(&after) {
        assert_contains(name, old, new);
    }
    // Every Service keeps its IP: the allocator adopted them (another IP would be written to
    // the status within a pass).
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(ingress_of(&control_plane, "web").await, "192.168.10.7");
    assert_eq!(ingress_of(&control_plane, "db").await, "192.168.9.3");
    // And the leftover webhook is named, with what to do.
    assert!(
        watcher.log().contains("metallb-webhook-configuration"),
        "no word about MetalLB's webhook:\n{}",
        watcher.log()
    );
}

/// Fails unless every field of `old` is in `new` with the same value, and every field `new`
/// adds holds a default (false, zero, empty).
fn assert_contains(name: &str, old: &serde_json::Value, new: &serde_json::Value) {
    let (Some(old), Some(new)) = (old.as_object(), new.as_object()) else {
        assert_eq!(old, new, "{name}");
        return;
    };
    for (field, value) in old {
        assert_eq!(new.get(field), Some(value), "{name}: {field} lost or changed");
    }
    for (field, value) in new.iter().filter(|(field, _)| !old.contains_key(*field)) {
        let default = matches!(value, serde_json::Value::Bool(false))
            || value.as_array().is_some_and(Vec::is_empty)
            || value.as_u64() == Some(0);
        assert!(default, "{name}: {field} = {value} appeared");
    }
}
