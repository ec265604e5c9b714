//! The watcher against a real kube-apiserver and a real allocator: Services get their IPs in
//! status with the pool annotation and an IPAllocated Event; an IP outside every pool gets
//! AllocationFailed; a bad configuration gets InvalidConfig and an Invalid ConfigurationState
//! and changes nothing; restarting the
//! watcher or the allocator moves no IP; a Service that stops being a LoadBalancer loses its
//! status and annotation; deleting a Service releases its IP.

use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use kube::{
    Api,
    api::{DeleteParams, PostParams},
};
use metallb_tests::{
    daemons::{Allocator, Daemon},
    grpcurl::grpcurl,
    kube_control_plane::ControlPlane,
    stack::{
        kube_objects::{
            self, CONFIG_NAMESPACE as NAMESPACE, TrafficPolicy, apply_config_map as config_map,
            configuration_state, event_note, ingress, install_metallb,
        },
        wait,
    },
    trust::Trust,
};

const WAIT: Duration = Duration::from_secs(30);

const CONFIG: &str = "peers:\n- my-asn: 64512\n  peer-asn: 64500\n  peer-address: 192.0.2.1\naddress-pools:\n- name: my-ip-space\n  cidr:\n  - 203.0.113.0/24\n";

async fn watcher(
    control_plane: &ControlPlane,
    trust: &Trust,
    allocator: &Allocator,
    logs: &std::path::Path,
) -> Daemon {
    let mut args: Vec<String> = [
        "--kubeconfig",
        &control_plane.kubeconfig_path().to_string_lossy(),
        "--allocator-endpoint",
        &allocator.grpc_url(),
        "--config-namespace",
        NAMESPACE,
        // The Trust stands in for the Secret and ConfigMap the watcher would issue.
        "--manage-allocator-tls=false",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(trust.watcher_args().await.unwrap());
    Daemon::start("metallb-watcher", &args, &[], logs).unwrap()
}

fn load_balancer(name: &str, load_balancer_ip: Option<&str>) -> Service {
    kube_objects::load_balancer(name, load_balancer_ip, TrafficPolicy::Cluster)
}

/// The watcher's /metrics.
async fn watcher_metrics(watcher: &Daemon) -> String {
    let (status, metrics) = watcher.admin_get("/metrics").await.unwrap();
    assert_eq!(status, 200, "{metrics}");
    metrics
}

/// The value of the unlabelled series `name` in `metrics`.
fn sample(metrics: &str, name: &str) -> f64 {
    let value = metrics.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' '));
    value.unwrap_or_else(|| panic!("{name} missing:\n{metrics}")).trim().parse().unwrap()
}

/// Polls `check` until it returns `Some`, for at most `WAIT`; fails with the watcher's log.
async fn eventually<T, F: Future<Output = Option<T>>>(
    what: &str,
    watcher: &Daemon,
    check: impl FnMut() -> F,
) -> T {
    wait::eventually(what, WAIT, check)
        .await
        .unwrap_or_else(|err| panic!("{err}; watcher log:\n{}", watcher.log()))
}

/// A control plane with MetalLB's objects and the v0.1 configuration, an allocator, a watcher
/// (as the admin: the RBAC'd kubeconfig is not needed here) and the LoadBalancer Service `web`.
/// In the order they must drop in, last first.
async fn with_web()
-> (tempfile::TempDir, ControlPlane, kube::Client, Trust, Allocator, Daemon, Api<Service>) {
    let logs = tempfile::tempdir().unwrap();
    let control_plane = ControlPlane::start().await.unwrap();
    let client = control_plane.client().await;
    install_metallb(&control_plane).await.unwrap();
    config_map(&client, CONFIG).await.unwrap();
    let trust = Trust::new(&control_plane, &[]).await.unwrap();
    let allocator = Allocator::start(&trust, &[], logs.path()).await.unwrap();
    let watcher = watcher(&control_plane, &trust, &allocator, logs.path()).await;
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    services.create(&PostParams::default(), &load_balancer("web", None)).await.unwrap();
    (logs, control_plane, client, trust, allocator, watcher, services)
}

#[tokio::test]
async fn services_get_ips_events_and_keep_them_across_restarts() {
    let (logs, control_plane, client, trust, mut allocator, mut watcher, services) =
        with_web().await;

    let ip = eventually("given an IP", &watcher, || ingress(&client, "web")).await;
    assert_eq!(ip, "203.0.113.0");
    // The status is written first (it is what users wait for), the annotation right after.
    let pool = eventually("annotated with its pool", &watcher, || async {
        let web = services.get("web").await.ok()?;
        web.metadata.annotations?.get("metallb.io/ip-allocated-from-pool").cloned()
    })
    .await;
    assert_eq!(pool, "my-ip-space");
    // The watcher is metallb-rs's Kubernetes client: after a sync it has MetalLB's k8s client
    // series, and its own.
    let metrics = watcher_metrics(&watcher).await;
    for expected in [
        "metallb_k8s_client_config_loaded_bool 1",
        "metallb_k8s_client_config_stale_bool 0",
        "metallb_k8s_client_update_errors_total ",
        r#"metallb_watcher_writeback_duration_seconds_count{write="status"} "#,
        "metallb_watcher_write_queue_depth ",
        "process_resident_memory_bytes ",
        "process_cpu_seconds_total ",
    ] {
        assert!(metrics.contains(expected), "{expected} missing:\n{metrics}");
    }
    let updates = sample(&metrics, "metallb_k8s_client_updates_total");
    assert!(updates >= 2.0, "the ConfigMap, the Service and more were seen: {metrics}");
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
    config_map(&client, "address-pools:\n- name: my-ip-space\n  cidr: [203.0.113.0/33]\n")
        .await
        .unwrap();
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
    let metrics = watcher_metrics(&watcher).await;
    assert!(metrics.contains("metallb_k8s_client_config_stale_bool 1"), "{metrics}");
    assert!(metrics.contains("metallb_k8s_client_config_loaded_bool 1"), "{metrics}");
    assert_eq!(ingress(&client, "web").await.as_deref(), Some("203.0.113.0"));
    config_map(&client, CONFIG).await.unwrap();
    eventually("ConfigurationState Valid", &watcher, || {
        configuration_state(&control_plane, "Valid")
    })
    .await;
    // An unreadable version (never sent to the allocator), then the same valid one again: the
    // state follows, although the allocator has nothing new to hear.
    config_map(&client, "address-pools: [unclosed").await.unwrap();
    eventually("ConfigurationState Invalid (unreadable)", &watcher, || {
        configuration_state(&control_plane, "Invalid")
    })
    .await;
    config_map(&client, CONFIG).await.unwrap();
    eventually("ConfigurationState Valid again", &watcher, || {
        configuration_state(&control_plane, "Valid")
    })
    .await;

    // Restarts move nothing: the watcher, then the allocator.
    watcher.terminate(Duration::from_secs(10)).unwrap();
    let mut watcher = self::watcher(&control_plane, &trust, &allocator, logs.path()).await;
    watcher.wait_ready().await.unwrap();
    allocator.daemon.terminate(Duration::from_secs(10)).unwrap();
    let allocator = Allocator::start(&trust, &[], logs.path()).await.unwrap();
    watcher.terminate(Duration::from_secs(10)).unwrap();
    let watcher = self::watcher(&control_plane, &trust, &allocator, logs.path()).await;
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
            &allocator.target(),
            Some(r#"{"namespace": "default"}"#),
            &["metallb.v1.Allocator/ListLeases"],
        )
        .unwrap();
        async move { (!out.stdout.contains("\"web\"")).then_some(out.stdout) }
    })
    .await;
    assert!(!released.contains("\"web\""), "{released}");
}

#[tokio::test]
async fn an_allocator_restarted_while_kubernetes_is_quiet_is_synced_without_a_change() {
    let (_logs, _control_plane, client, trust, mut allocator, watcher, _services) =
        with_web().await;
    let ip = eventually("given an IP", &watcher, || ingress(&client, "web")).await;

    // A crash, and a new allocator in its place, with nothing changing in Kubernetes.
    allocator.daemon.kill().unwrap();
    let second_logs = tempfile::tempdir().unwrap();
    let mut restarted =
        Allocator::start_at(allocator.grpc_addr(), &trust, &[], &[], second_logs.path())
            .await
            .unwrap();
    restarted.daemon.wait_ready().await.unwrap_or_else(|err| {
        panic!("{err}\nthe watcher never re-synced it; watcher log:\n{}", watcher.log())
    });
    // It adopted the Service's IP from the full sync.
    let data = r#"{"service": {"namespace": "default", "name": "web"}}"#;
    let lease = grpcurl(&restarted.target(), Some(data), &["metallb.v1.Allocator/GetLease"]);
    let lease = lease.unwrap();
    assert_eq!(lease.code, 0, "{lease:?}");
    assert!(lease.stdout.contains(&ip), "{lease:?}");
    // Whether a probe or a pass met the new allocator first, the watcher said so.
    let log = watcher.log();
    assert!(
        log.contains("the primary allocator changed")
            || log.contains("the allocator gets everything again"),
        "{log}"
    );

    // A lease lost behind the watcher's back (here a hand-made call): the periodic comparison
    // of leases with status finds it, and a full sync gives the IP back, still with no change
    // in Kubernetes.
    let deleted = grpcurl(&restarted.target(), Some(data), &["metallb.v1.Allocator/DeleteService"]);
    assert_eq!(deleted.unwrap().code, 0);
    let get_lease = || async {
        let out = grpcurl(&restarted.target(), Some(data), &["metallb.v1.Allocator/GetLease"]);
        out.ok().filter(|out| out.code == 0 && out.stdout.contains(&ip)).map(drop)
    };
    eventually("the lost lease repaired", &watcher, get_lease).await;
    assert!(watcher.log().contains("leases differ from the status"), "{}", watcher.log());
}
