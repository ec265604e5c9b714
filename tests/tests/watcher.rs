//! The watcher against a real kube-apiserver and a real allocator: Services get their IPs in
//! status with the pool annotation and an IPAllocated Event; an IP outside every pool gets
//! AllocationFailed; a bad configuration gets InvalidConfig and an Invalid ConfigurationState
//! and changes nothing; restarting the
//! watcher or the allocator moves no IP; a Service that stops being a LoadBalancer loses its
//! status and annotation; deleting a Service releases its IP.

use std::time::{Duration, Instant};

use k8s_openapi::api::{
    core::v1::{ConfigMap, Namespace, Service},
    events::v1::Event,
};
use kube::{
    Api, Client,
    api::{DeleteParams, ObjectMeta, PostParams},
};
use metallb_tests::{
    daemons::{Allocator, Daemon},
    grpcurl::grpcurl,
    kube_control_plane::ControlPlane,
};

const NAMESPACE: &str = "metallb-system";
const WAIT: Duration = Duration::from_secs(30);

const CONFIG: &str = "peers:\n- my-asn: 64512\n  peer-asn: 64500\n  peer-address: 192.0.2.1\naddress-pools:\n- name: my-ip-space\n  cidr:\n  - 203.0.113.0/24\n";

fn watcher(control_plane: &ControlPlane, allocator: &Allocator, logs: &std::path::Path) -> Daemon {
    let args: Vec<String> = [
        "--kubeconfig",
        &control_plane.kubeconfig_path().to_string_lossy(),
        "--allocator-endpoint",
        &allocator.grpc_url(),
        "--config-namespace",
        NAMESPACE,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    Daemon::start("metallb-watcher", &args, &[], logs).unwrap()
}

fn load_balancer(name: &str, load_balancer_ip: Option<&str>) -> Service {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80}], "loadBalancerIP": load_balancer_ip},
    }))
    .unwrap()
}

async fn config_map(client: &Client, text: &str) {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), NAMESPACE);
    let object = ConfigMap {
        metadata: ObjectMeta { name: Some("config".into()), ..Default::default() },
        data: Some([("config".to_string(), text.to_string())].into()),
        ..Default::default()
    };
    let params = kube::api::PatchParams::apply("test").force();
    api.patch("config", &params, &kube::api::Patch::Apply(&object)).await.unwrap();
}

/// Polls `check` until it returns `Some`, for at most `WAIT`.
async fn eventually<T, F: Future<Output = Option<T>>>(
    what: &str,
    watcher: &Daemon,
    mut check: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "not {what} within {WAIT:?}; watcher log:\n{}",
            watcher.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn ingress(client: &Client, name: &str) -> Option<String> {
    let service = Api::<Service>::namespaced(client.clone(), "default").get(name).await.ok()?;
    metallb_watcher::translate::ingress_ips(&service).first().cloned()
}

async fn event_note(
    client: &Client,
    namespace: &str,
    object: &str,
    reason: &str,
) -> Option<String> {
    let events =
        Api::<Event>::namespaced(client.clone(), namespace).list(&Default::default()).await.ok()?;
    events
        .items
        .into_iter()
        .find(|e| {
            e.reason.as_deref() == Some(reason)
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(object)
        })
        .map(|e| e.note.unwrap_or_default())
}

/// The error summary of the watcher's ConfigurationState once its result is `result`.
async fn configuration_state(control_plane: &ControlPlane, result: &str) -> Option<String> {
    let path = "jsonpath={.status.result}|{.status.errorSummary}";
    let out = control_plane
        .kubectl(&[
            "get",
            "configurationstates.metallb.io",
            "metallb-watcher",
            "-n",
            NAMESPACE,
            "-o",
            path,
        ])
        .await
        .ok()?;
    let (found, summary) = out.split_once('|')?;
    (found == result).then(|| summary.to_string())
}

#[tokio::test]
async fn services_get_ips_events_and_keep_them_across_restarts() {
    let logs = tempfile::tempdir().unwrap();
    let control_plane = ControlPlane::start().await.unwrap();
    let client = control_plane.client().await;
    let namespace = Namespace {
        metadata: ObjectMeta { name: Some(NAMESPACE.into()), ..Default::default() },
        ..Default::default()
    };
    Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &namespace).await.unwrap();
    let crds = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/crds.yaml"));
    control_plane.apply_file(crds).await.unwrap();
    control_plane.wait_for_crd("configurationstates.metallb.io").await.unwrap();
    config_map(&client, CONFIG).await;

    let mut allocator = Allocator::start(&[], logs.path()).await.unwrap();
    let mut watcher = watcher(&control_plane, &allocator, logs.path());
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    services.create(&PostParams::default(), &load_balancer("web", None)).await.unwrap();

    let ip = eventually("given an IP", &watcher, || ingress(&client, "web")).await;
    assert_eq!(ip, "203.0.113.0");
    let web = services.get("web").await.unwrap();
    assert_eq!(
        web.metadata.annotations.unwrap()["metallb.io/ip-allocated-from-pool"],
        "my-ip-space"
    );
    let note = eventually("IPAllocated", &watcher, || {
        event_note(&client, "default", "web", "IPAllocated")
    })
    .await;
    assert!(note.contains("203.0.113.0"), "{note}");

    // An IP outside every pool.
    services
        .create(&PostParams::default(), &load_balancer("outside", Some("198.18.5.5")))
        .await
        .unwrap();
    let note = eventually("AllocationFailed", &watcher, || {
        event_note(&client, "default", "outside", "AllocationFailed")
    })
    .await;
    assert!(note.contains("198.18.5.5 is not in any pool"), "{note}");
    assert_eq!(ingress(&client, "outside").await, None);

    // A bad configuration: rejected with the reason, nothing changes.
    config_map(&client, "address-pools:\n- name: my-ip-space\n  cidr: [203.0.113.0/33]\n").await;
    let note = eventually("InvalidConfig", &watcher, || {
        event_note(&client, NAMESPACE, "config", "InvalidConfig")
    })
    .await;
    assert!(note.contains("/33"), "{note}");
    let state = eventually("ConfigurationState Invalid", &watcher, || {
        configuration_state(&control_plane, "Invalid")
    })
    .await;
    assert!(state.contains("/33"), "{state}");
    assert_eq!(ingress(&client, "web").await.as_deref(), Some("203.0.113.0"));
    config_map(&client, CONFIG).await;
    eventually("ConfigurationState Valid", &watcher, || {
        configuration_state(&control_plane, "Valid")
    })
    .await;

    // Restarts move nothing: the watcher, then the allocator.
    watcher.terminate(Duration::from_secs(10)).unwrap();
    let mut watcher = self::watcher(&control_plane, &allocator, logs.path());
    watcher.wait_ready().await.unwrap();
    allocator.daemon.terminate(Duration::from_secs(10)).unwrap();
    let allocator = Allocator::start(&[], logs.path()).await.unwrap();
    watcher.terminate(Duration::from_secs(10)).unwrap();
    let watcher = self::watcher(&control_plane, &allocator, logs.path());
    services.create(&PostParams::default(), &load_balancer("second", None)).await.unwrap();
    let second =
        eventually("the second service's IP", &watcher, || ingress(&client, "second")).await;
    assert_eq!(second, "203.0.113.1", "the restarted allocator adopted .0 before allocating");
    assert_eq!(ingress(&client, "web").await.as_deref(), Some("203.0.113.0"));

    // A Service that stops being a LoadBalancer loses what we wrote.
    let patch =
        serde_json::json!({"spec": {"type": "ClusterIP", "allocateLoadBalancerNodePorts": null}});
    services
        .patch("second", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(patch))
        .await
        .unwrap();
    eventually("ingress removed", &watcher, || async {
        let service = services.get("second").await.ok()?;
        let annotated = service
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key("metallb.io/ip-allocated-from-pool"));
        (metallb_watcher::translate::ingress_ips(&service).is_empty() && !annotated).then_some(())
    })
    .await;

    // Deleting a Service releases its IP.
    services.delete("web", &DeleteParams::default()).await.unwrap();
    let released = eventually("the lease released", &watcher, || {
        let out = grpcurl(
            allocator.grpc_addr(),
            Some(r#"{"namespace": "default"}"#),
            &["metallb.v1.Allocator/ListLeases"],
        )
        .unwrap();
        async move { (!out.stdout.contains("\"web\"")).then_some(out.stdout) }
    })
    .await;
    assert!(!released.contains("\"web\""), "{released}");
}
