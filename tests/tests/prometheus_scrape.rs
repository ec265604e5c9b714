//! A real Prometheus scrapes the whole system (tests/src/stack.rs: kube-apiserver, BIRD, the
//! allocator, the watcher and two announcers as processes) the way deploy/components/prometheus
//! has it scraped in a cluster: the allocator's and the watcher's admin endpoints over HTTP, the
//! announcers' metrics over HTTPS with a reader's token. With every feature that has series in
//! use (a pool announced over BGP with BFD and over layer 2, ARP asked from the segment, a gRPC
//! call refused), every series docs/metrics.md lists is there; and with the chart's alerting
//! rules loaded (the BGP alert's `for` shortened), killing the router's BIRD makes
//! MetalLBBGPSessionDown fire for each announcer, in a system where no alert was even pending.

use std::{collections::BTreeSet, time::Duration};

use metallb_tests::{
    grpcurl::{GrpcTarget, grpcurl},
    lab::ROUTER_V4,
    manifests::repo_dir,
    neighbor_probes::arping,
    prometheus::{Prometheus, PrometheusConfig},
    stack::{NODE_ASN, Stack, StackOptions, kube_objects::TrafficPolicy},
};
use serde_json::Value;

const SERVICE: &str = "web";
/// The first address of the pool, on the nodes' segment: announced over BGP and layer 2.
const SERVICE_IP: &str = "192.0.2.200";

/// Scrape and rule evaluation interval: short, so the test takes seconds.
const INTERVAL: Duration = Duration::from_millis(500);

/// The BGP alert's `for` in the test's copy of the rules (2m in the real ones).
const SHORTENED_FOR: &str = "3s";

/// Long enough for several scrapes and evaluations, and for BIRD's session to be seen down.
const WAIT: Duration = Duration::from_secs(60);

/// A pool on the segment advertised over BGP and layer 2, and the router as a peer with BFD.
fn resources(stack: &Stack) -> String {
    format!(
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata:\n  name: segment\n  namespace: metallb-system\nspec:\n  addresses:\n  - 192.0.2.200-192.0.2.209\n---\napiVersion: metallb.io/v1beta1\nkind: BFDProfile\nmetadata:\n  name: fast\n  namespace: metallb-system\nspec:\n  receiveInterval: 300\n  transmitInterval: 300\n  detectMultiplier: 3\n---\napiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata:\n  name: router\n  namespace: metallb-system\nspec:\n  myASN: {NODE_ASN}\n  peerASN: {}\n  peerAddress: {ROUTER_V4}\n  bfdProfile: fast\n---\napiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata:\n  name: segment\n  namespace: metallb-system\nspec: {{}}\n---\napiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata:\n  name: segment\n  namespace: metallb-system\n",
        stack.router_asn()
    )
}

/// The metric names in the first column of docs/metrics.md's tables: each backticked name in
/// it, without any `{labels}` written after it.
fn documented_metrics(markdown: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in markdown.lines().map(str::trim).filter(|line| line.starts_with('|')) {
        let first = line.trim_start_matches('|').split('|').next().unwrap_or("");
        for quoted in first.split('`').skip(1).step_by(2) {
            let name: String = quoted
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            if !name.is_empty() {
                names.insert(name);
            }
        }
    }
    names
}

/// Whether `name` is among the series: itself, or the samples of a counter (`_total`), a
/// histogram or summary (`_bucket`, `_count`, `_sum`) or an info metric (`_info`) of that name.
fn present(name: &str, series: &BTreeSet<String>) -> bool {
    ["", "_total", "_bucket", "_count", "_sum", "_info"]
        .iter()
        .any(|suffix| series.contains(&format!("{name}{suffix}")))
}

/// The chart's rule group with MetalLBBGPSessionDown's `for` shortened, as JSON (which is YAML).
fn test_rules() -> String {
    let path = repo_dir().join("charts/metallb-rs/files/prometheus-rules.yaml");
    let mut rules: Value = serde_saphyr::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut shortened = 0;
    for group in rules["groups"].as_array_mut().unwrap() {
        for rule in group["rules"].as_array_mut().unwrap() {
            if rule["alert"] == "MetalLBBGPSessionDown" {
                rule["for"] = Value::from(SHORTENED_FOR);
                shortened += 1;
            }
        }
    }
    assert_eq!(shortened, 1, "no MetalLBBGPSessionDown rule to shorten");
    rules.to_string()
}

#[test]
fn docs_tables_first_column_names_the_metrics() {
    let markdown = "| metric | type |\n|---|---|\n| `metallb_bgp_session_up` | gauge |\n| `process_cpu_seconds_total`, `process_open_fds` | counter |\n| `metallb_x{peer}` | gauge |\nnot | `a_table` |\n";
    let names: Vec<String> = documented_metrics(markdown).into_iter().collect();
    assert_eq!(
        names,
        ["metallb_bgp_session_up", "metallb_x", "process_cpu_seconds_total", "process_open_fds"]
    );
}

#[tokio::test]
async fn prometheus_scrapes_every_documented_series_and_the_bgp_alert_fires_when_bird_stops() {
    let markdown = std::fs::read_to_string(repo_dir().join("docs/metrics.md"))
        .expect("docs/metrics.md lists the metrics this test looks for");
    let documented = documented_metrics(&markdown);
    assert!(!documented.is_empty(), "no metric names found in docs/metrics.md's tables");

    let options = StackOptions {
        nodes: 2,
        scrape: true,
        bfd: true,
        segment_client: true,
        ..Default::default()
    };
    let mut stack = Stack::start(options).await.unwrap();
    stack.apply_yaml(&resources(&stack)).await.unwrap();
    stack.wait_for_sessions().await.unwrap();
    stack.set_endpoints(SERVICE, &["node-1"]).await.unwrap();
    stack.create_load_balancer(SERVICE, TrafficPolicy::Cluster).await.unwrap();
    stack.wait_for_ingress(SERVICE, SERVICE_IP).await.unwrap();
    stack
        .eventually("BFD up with every node at the router", || async {
            let nodes = stack.nodes().iter();
            nodes
                .map(|node| stack.router.bfd_up(node.address.into()))
                .all(|up| up.unwrap_or(false))
                .then_some(())
        })
        .await
        .unwrap();
    // Layer 2: the owner answers ARP from the segment.
    let client = stack.segment_client().unwrap().to_string();
    stack
        .eventually("a node answering ARP for the Service's IP", || {
            let answered = !arping(&client, SERVICE_IP.parse().unwrap(), 1).is_empty();
            async move { answered.then_some(()) }
        })
        .await
        .unwrap();
    // A call without a token: refused, and counted as such.
    let anonymous = GrpcTarget { token: None, ..stack.allocator_target(0) };
    let refused = grpcurl(&anonymous, Some("{}"), &["metallb.v1.Allocator/ListPools"]).unwrap();
    assert_ne!(refused.code, 0, "{refused:?}");

    let config = PrometheusConfig {
        jobs: stack.scrape_jobs().await.unwrap(),
        rule_files: vec![test_rules()],
        interval: INTERVAL,
    };
    let prometheus =
        Prometheus::start_in(&stack.lab.router, stack.router_address_from_root().into(), &config)
            .await
            .unwrap();
    let targets = prometheus
        .wait_for_targets_up(WAIT)
        .await
        .unwrap_or_else(|err| panic!("{err:#}\nPrometheus:\n{}", prometheus.log()));
    let jobs: BTreeSet<&str> = targets.iter().map(|t| t.labels["job"].as_str()).collect();
    assert_eq!(jobs, BTreeSet::from(["metallb-allocator", "metallb-announcer", "metallb-watcher"]));
    assert_eq!(targets.len(), 4, "{targets:?}");

    // (a) Every documented series, once each target has been scraped a few times.
    tokio::time::sleep(INTERVAL * 4).await;
    let series: BTreeSet<String> = prometheus.metric_names().await.unwrap().into_iter().collect();
    let missing: Vec<&String> = documented.iter().filter(|name| !present(name, &series)).collect();
    assert!(
        missing.is_empty(),
        "documented in docs/metrics.md but not scraped: {missing:?}\nscraped: {series:?}"
    );
    // A healthy system: the sessions are up, and no alert is even pending (the rules read the
    // real series as intended: one watcher, one allocator, a pool with room).
    let peer = ROUTER_V4.to_string();
    let up = prometheus.query("metallb_bgp_session_up").await.unwrap();
    assert_eq!(up.len(), 2, "{up:?}");
    assert!(up.iter().all(|sample| sample.value == 1.0 && sample.labels["peer"].contains(&peer)));
    let alerts = prometheus.alerts().await.unwrap();
    assert!(alerts.is_empty(), "alerts in a healthy system: {alerts:?}");

    // (b) The router goes away: both announcers' sessions drop, and after the (shortened)
    // `for` the alert fires for each of them.
    stack.router.stop();
    for node in stack.nodes().iter().map(|node| node.address.to_string()) {
        let alert = prometheus
            .wait_for_firing(
                "MetalLBBGPSessionDown",
                |alert| alert.labels.get("instance").is_some_and(|i| i.starts_with(&node)),
                WAIT,
            )
            .await
            .unwrap_or_else(|err| panic!("{err:#}\n{}", stack.diagnostics()));
        assert_eq!(alert.labels["severity"], "critical");
        assert!(alert.labels["peer"].contains(&peer), "{alert:?}");
        assert!(alert.annotations["summary"].contains(&peer), "{alert:?}");
    }
}
