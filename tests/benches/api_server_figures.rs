//! The floor under the end-to-end burst figure: how fast the test control plane (etcd and
//! kube-apiserver on this machine) accepts 1,000 LoadBalancer Services created at once, with
//! nothing of ours running. Prints the figure.
//!
//! With `-- watches` (issue 17, part 4): what the whole system asks of the API server as nodes
//! grow (3, 30, 100 Node objects made by the bench), read from kube-apiserver's own metrics with
//! our watcher running: its watches (`apiserver_longrunning_requests`, verb WATCH), the bytes of
//! its initial lists (`apiserver_response_sizes`, verb LIST) and of the watch events a fixed
//! workload sends it (`apiserver_watch_events_sizes`). Beside them, what MetalLB's design asks,
//! computed from the same measurement: a speaker per node opens the same watch set (Services,
//! EndpointSlices, Nodes, the configuration kinds) and receives the same lists and events, plus
//! one set for the controller.
//!
//! Run: `cargo build --release --bins && cargo bench -p metallb-tests --bench api_server_figures`
//! (`-- watches` for the watch figures)

use std::{collections::BTreeMap, time::Instant};

use futures::StreamExt;
use metallb_tests::{
    configuration, daemons::Allocator, kube_control_plane::ControlPlane, stack::kube_objects,
    trust::Trust,
};

const BURST: usize = 1000;
/// As many concurrent clients as the end-to-end burst uses.
const CREATORS: usize = 32;

#[tokio::main]
async fn main() {
    if std::env::args().any(|arg| arg == "watches") {
        watches().await;
        return;
    }
    let control_plane = ControlPlane::start().await.expect("the control plane starts");
    let client = control_plane.client().await;
    let services: kube::Api<k8s_openapi::api::core::v1::Service> =
        kube::Api::namespaced(client, "default");
    let started = Instant::now();
    futures::stream::iter(0..BURST)
        .map(|n| {
            let services = services.clone();
            async move {
                let service = kube_objects::load_balancer(
                    &format!("burst-{n}"),
                    None,
                    kube_objects::TrafficPolicy::Cluster,
                );
                services.create(&Default::default(), &service).await.expect("created");
            }
        })
        .buffer_unordered(CREATORS)
        .collect::<Vec<()>>()
        .await;
    println!(
        "{BURST} LoadBalancer Services created at once by {CREATORS} clients against the bare control plane: {:.2} s",
        started.elapsed().as_secs_f64()
    );
}

/// Node counts of the watch figures.
const NODE_COUNTS: [usize; 3] = [3, 30, 100];
/// Services created one after another as the workload whose watch events are counted.
const WORKLOAD_SERVICES: usize = 50;

/// The samples of metric `name` in Prometheus text, as (labels, value).
fn samples(text: &str, name: &str) -> Vec<(BTreeMap<String, String>, f64)> {
    let mut found = Vec::new();
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        let Some(rest) = line.strip_prefix(name) else { continue };
        let (labels, value) = match rest.strip_prefix('{') {
            Some(rest) => match rest.rsplit_once("} ") {
                Some((labels, value)) => (labels, value),
                None => continue,
            },
            None => match rest.strip_prefix(' ') {
                Some(value) => ("", value),
                None => continue,
            },
        };
        let labels = labels
            .split("\",")
            .filter_map(|pair| pair.split_once("=\""))
            .map(|(key, value)| {
                (key.trim_matches(',').to_string(), value.trim_end_matches('"').to_string())
            })
            .collect();
        let Ok(value) = value.trim().parse::<f64>() else { continue };
        found.push((labels, value));
    }
    found
}

/// The sum of metric `name`'s samples whose label `key` is `value` (any, when `None`), by
/// label `by`.
fn sum_by(text: &str, name: &str, filter: Option<(&str, &str)>, by: &str) -> BTreeMap<String, f64> {
    let mut sums = BTreeMap::new();
    for (labels, value) in samples(text, name) {
        if let Some((key, wanted)) = filter
            && labels.get(key).map(String::as_str) != Some(wanted)
        {
            continue;
        }
        *sums.entry(labels.get(by).cloned().unwrap_or_default()).or_insert(0.0) += value;
    }
    sums
}

fn total(sums: &BTreeMap<String, f64>) -> f64 {
    sums.values().sum()
}

async fn metrics(control_plane: &ControlPlane) -> String {
    control_plane.kubectl(&["get", "--raw", "/metrics"]).await.expect("kube-apiserver's /metrics")
}

/// Fails the bench: a figure cannot be measured.
fn fail(why: &str) -> ! {
    eprintln!("api_server_figures: {why}");
    std::process::exit(1)
}

async fn watches() {
    let logs = tempfile::tempdir().unwrap();
    let control_plane = configuration::control_plane_with_crds().await.expect("the control plane");
    control_plane
        .apply_yaml(&format!(
            "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {{name: bench, namespace: {}}}\nspec:\n  addresses: [198.18.0.0/15]\n",
            configuration::CONFIG_NAMESPACE
        ))
        .await
        .expect("the pool");
    let trust = Trust::new(&control_plane, &[]).await.expect("the trust");
    let allocator = Allocator::start(&trust, &[], logs.path()).await.expect("the allocator");
    let client = control_plane.client().await;
    let nodes: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(client.clone());
    let services: kube::Api<k8s_openapi::api::core::v1::Service> =
        kube::Api::namespaced(client.clone(), "default");
    let mut made = 0;
    let mut rows = Vec::new();
    for count in NODE_COUNTS {
        for n in made..count {
            let node: k8s_openapi::api::core::v1::Node = serde_json::from_value(serde_json::json!({
                "metadata": {"name": format!("sim-node-{n}"), "labels": {"kubernetes.io/hostname": format!("sim-node-{n}")}},
            }))
            .unwrap();
            nodes.create(&Default::default(), &node).await.expect("a Node");
        }
        made = count;
        let before_start = metrics(&control_plane).await;
        let mut watcher = configuration::start_watcher(
            control_plane.kubeconfig_path(),
            &allocator,
            &trust,
            &["--log-filter", "warn", "--manage-allocator-tls=false"],
            logs.path(),
        )
        .await
        .expect("the watcher starts");
        watcher.wait_ready().await.expect("the watcher is ready");
        let ready = metrics(&control_plane).await;
        let lists = |text: &str| {
            total(&sum_by(text, "apiserver_response_sizes_sum", Some(("verb", "LIST")), "resource"))
        };
        let list_bytes = lists(&ready) - lists(&before_start);
        // kube-apiserver watches itself through its loopback client: only the growth is ours.
        let watching = |text: &str| {
            sum_by(text, "apiserver_longrunning_requests", Some(("verb", "WATCH")), "resource")
        };
        let baseline = watching(&before_start);
        let all_watches = watching(&ready);
        let open: BTreeMap<String, f64> = all_watches
            .clone()
            .into_iter()
            .map(|(resource, n)| {
                let ours = n - baseline.get(&resource).copied().unwrap_or(0.0);
                (resource, ours)
            })
            .filter(|(_, n)| *n > 0.0)
            .collect();
        if open.is_empty() {
            fail("kube-apiserver reports no apiserver_longrunning_requests with verb WATCH");
        }

        // The workload: Services created one after another until each holds an IP, then a
        // label change on every Node.
        // Labelled by resource since Kubernetes 1.30 (by kind before).
        let events =
            |text: &str| sum_by(text, "apiserver_watch_events_sizes_sum", None, "resource");
        let before = events(&ready);
        if before.keys().any(String::is_empty) {
            fail("apiserver_watch_events_sizes has samples without a resource label");
        }
        for n in 0..WORKLOAD_SERVICES {
            let name = format!("w{count}-{n}");
            let service =
                kube_objects::load_balancer(&name, None, kube_objects::TrafficPolicy::Cluster);
            services.create(&Default::default(), &service).await.expect("created");
        }
        let deadline = Instant::now() + std::time::Duration::from_secs(120);
        loop {
            let list = services.list(&Default::default()).await.expect("Services");
            let waiting = list
                .items
                .iter()
                .filter(|s| {
                    s.metadata.name.as_deref().is_some_and(|n| n.starts_with(&format!("w{count}-")))
                })
                .filter(|s| metallb_watcher::translate::ingress_ips(s).is_empty())
                .count();
            if waiting == 0 {
                break;
            }
            if Instant::now() > deadline {
                fail(&format!("{waiting} workload Services without an IP after 120 s"));
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        for n in 0..count {
            let patch =
                serde_json::json!({"metadata": {"labels": {"bench/round": count.to_string()}}});
            nodes
                .patch(
                    &format!("sim-node-{n}"),
                    &Default::default(),
                    &kube::api::Patch::Merge(&patch),
                )
                .await
                .expect("a Node patched");
        }
        // Events are counted as they are sent; let the last ones go out.
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        let after = events(&metrics(&control_plane).await);
        // The metric sums what every watcher of a resource was sent, kube-apiserver's own
        // included, and names no watcher: ours is taken as our watches' share of each
        // resource's watches (each watcher of a resource is sent its events; the few watches
        // that filter by namespace are sent fewer, so this errs towards more for ours).
        let event_bytes: BTreeMap<String, f64> = after
            .iter()
            .map(|(resource, bytes)| {
                let sent = bytes - before.get(resource).copied().unwrap_or(0.0);
                let ours = open.get(resource).copied().unwrap_or(0.0);
                let all = all_watches.get(resource).copied().unwrap_or(0.0).max(1.0);
                (resource.clone(), sent * ours / all)
            })
            .filter(|(_, bytes)| *bytes > 0.0)
            .collect();
        watcher.terminate(std::time::Duration::from_secs(15)).expect("the watcher stops");
        rows.push((count, open, baseline, list_bytes, event_bytes));
    }
    println!(
        "kube-apiserver's view, our watcher running (one for the cluster); workload: {WORKLOAD_SERVICES} LoadBalancer Services created until each holds an IP, then a label change on every Node"
    );
    for (count, open, baseline, list_bytes, event_bytes) in rows {
        let watches = total(&open);
        let events = total(&event_bytes);
        let per_resource: Vec<String> =
            open.iter().map(|(resource, n)| format!("{resource} {n}")).collect();
        let per_kind: Vec<String> = event_bytes
            .iter()
            .map(|(resource, bytes)| format!("{resource} {:.1} KiB", bytes / 1024.0))
            .collect();
        let its_own: Vec<String> =
            baseline.iter().filter(|(_, n)| **n > 0.0).map(|(r, n)| format!("{r} {n}")).collect();
        println!(
            "{count} nodes: ours: {watches} watches ({}), initial lists {:.1} KiB, watch events of the workload {:.1} KiB ({}); \
             MetalLB's design (a watch set per speaker plus the controller's, {} sets): {} watches, initial lists {:.1} KiB, watch events {:.1} KiB \
             (kube-apiserver's own watches, not counted: {})",
            per_resource.join(", "),
            list_bytes / 1024.0,
            events / 1024.0,
            per_kind.join(", "),
            count + 1,
            watches * (count + 1) as f64,
            list_bytes * (count + 1) as f64 / 1024.0,
            events * (count + 1) as f64 / 1024.0,
            its_own.join(", "),
        );
    }
}
