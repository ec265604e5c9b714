//! charts/metallb-rs is deploy/ for Helm users: `helm lint --strict` passes; with default values
//! `helm template` renders exactly the objects of `kubectl kustomize deploy/` (and, with Jaeger
//! on, those of deploy/ plus its Jaeger component), compared as parsed objects; every value
//! changes what it says; the chart's CRDs are the generator's; the Prometheus objects are those
//! of deploy/components/prometheus, whose alerting rules are the chart's one copy of them
//! (files/prometheus-rules.yaml); and a real kube-apiserver accepts
//! the renders with strict field validation (dry run).

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    process::Command,
};

use metallb_tests::{
    helm::{chart_dir, helm, install_documented},
    kube_control_plane::ControlPlane,
    manifests::{component_overlay, deploy_dir, jaeger_overlay, kustomize, parse_objects},
    tools::our_binary,
};
use serde_json::{Value, json};

const RELEASE: &str = "metallb-rs";
const NAMESPACE: &str = "metallb-system";

/// `helm template` of the chart into `namespace` with `values` (a values file as JSON, which is
/// YAML), as text.
fn render_text(namespace: &str, values: &Value) -> Result<String, String> {
    let home = tempfile::tempdir().unwrap();
    let values_file = home.path().join("values.json");
    std::fs::write(&values_file, values.to_string()).unwrap();
    let chart = chart_dir();
    helm(
        home.path(),
        &[
            "template",
            RELEASE,
            chart.to_str().unwrap(),
            "--namespace",
            namespace,
            "--values",
            values_file.to_str().unwrap(),
        ],
    )
}

/// The objects `helm template` renders.
fn render_in(namespace: &str, values: &Value) -> Vec<Value> {
    let text = render_text(namespace, values).unwrap_or_else(|err| panic!("{err}"));
    parse_objects(&text).unwrap()
}

fn render(values: Value) -> Vec<Value> {
    render_in(NAMESPACE, &values)
}

/// The objects `kubectl kustomize dir` renders.
fn kustomized(dir: &Path) -> Vec<Value> {
    parse_objects(&kustomize(dir).unwrap()).unwrap()
}

/// What names an object in a cluster.
type Key = (String, String, String, String);

fn key(object: &Value) -> Key {
    let text = |pointer: &str| object.pointer(pointer).and_then(Value::as_str).unwrap_or("");
    (
        text("/apiVersion").to_string(),
        text("/kind").to_string(),
        text("/metadata/namespace").to_string(),
        text("/metadata/name").to_string(),
    )
}

fn by_key(objects: Vec<Value>) -> BTreeMap<Key, Value> {
    let mut map = BTreeMap::new();
    for object in objects {
        let key = key(&object);
        assert!(map.insert(key.clone(), object).is_none(), "{key:?} rendered twice");
    }
    map
}

/// The chart's CRDs carry `helm.sh/resource-policy: keep` (crds.keep, on by default) so that
/// `helm uninstall` does not delete every pool and peer with them; deploy/ has no such
/// annotation, since kubectl never deletes what it is not asked to. It tells Helm what not to
/// delete and changes nothing in the cluster: checked present on each CRD, then taken off, and
/// nothing else is.
fn without_keep_annotation(mut objects: Vec<Value>) -> Vec<Value> {
    for object in objects.iter_mut().filter(|o| o["kind"] == "CustomResourceDefinition") {
        let name = object["metadata"]["name"].to_string();
        let metadata = object["metadata"].as_object_mut().unwrap();
        let annotations = metadata
            .get_mut("annotations")
            .and_then(Value::as_object_mut)
            .unwrap_or_else(|| panic!("CRD {name} has no annotations"));
        let policy = annotations.remove("helm.sh/resource-policy");
        assert_eq!(policy, Some(json!("keep")), "CRD {name}");
        if annotations.is_empty() {
            metadata.remove("annotations");
        }
    }
    objects
}

/// The same objects, each equal field by field; on a difference, names the object and shows
/// both.
fn assert_same_objects(chart: Vec<Value>, expected: Vec<Value>) {
    let chart = by_key(chart);
    let expected = by_key(expected);
    let chart_keys: BTreeSet<&Key> = chart.keys().collect();
    let expected_keys: BTreeSet<&Key> = expected.keys().collect();
    assert_eq!(
        chart_keys.difference(&expected_keys).collect::<Vec<_>>(),
        Vec::<&&Key>::new(),
        "rendered by the chart only"
    );
    assert_eq!(
        expected_keys.difference(&chart_keys).collect::<Vec<_>>(),
        Vec::<&&Key>::new(),
        "missing from the chart"
    );
    for (key, object) in &expected {
        let rendered = &chart[key];
        assert!(
            rendered == object,
            "{key:?} differs:\nchart: {}\nexpected: {}",
            serde_json::to_string_pretty(rendered).unwrap(),
            serde_json::to_string_pretty(object).unwrap()
        );
    }
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} rendered"))
}

fn pod_spec(workload: &Value) -> &Value {
    &workload["spec"]["template"]["spec"]
}

fn container(workload: &Value) -> &Value {
    &pod_spec(workload)["containers"][0]
}

fn env_value<'a>(workload: &'a Value, variable: &str) -> Option<&'a str> {
    container(workload)["env"].as_array()?.iter().find(|entry| entry["name"] == variable)?["value"]
        .as_str()
}

fn volume<'a>(workload: &'a Value, name: &str) -> &'a Value {
    pod_spec(workload)["volumes"]
        .as_array()
        .and_then(|volumes| volumes.iter().find(|v| v["name"] == name))
        .unwrap_or_else(|| panic!("{} has no volume {name}", workload["metadata"]["name"]))
}

/// The three metallb-rs workloads of a render.
fn workloads(objects: &[Value]) -> [&Value; 3] {
    [
        find(objects, "StatefulSet", "metallb-allocator"),
        find(objects, "Deployment", "metallb-watcher"),
        find(objects, "DaemonSet", "metallb-announcer"),
    ]
}

/// Whether every label `selector` requires is on `labels`.
fn selects(selector: &Value, labels: &Value) -> bool {
    let selector = selector.as_object().unwrap();
    !selector.is_empty() && selector.iter().all(|(key, value)| &labels[key] == value)
}

#[test]
fn helm_lint_strict_passes_with_default_values_and_with_every_option_on() {
    let home = tempfile::tempdir().unwrap();
    let chart = chart_dir();
    let chart = chart.to_str().unwrap();
    helm(home.path(), &["lint", "--strict", chart, "--namespace", NAMESPACE])
        .unwrap_or_else(|err| panic!("{err}"));
    let values = home.path().join("everything.json");
    std::fs::write(&values, every_option_on().to_string()).unwrap();
    helm(
        home.path(),
        &[
            "lint",
            "--strict",
            chart,
            "--namespace",
            NAMESPACE,
            "--values",
            values.to_str().unwrap(),
        ],
    )
    .unwrap_or_else(|err| panic!("{err}"));
}

fn every_option_on() -> Value {
    json!({
        "tls": {"provider": "cert-manager"},
        "jaeger": {"enabled": true},
        "prometheus": {
            "podMonitors": {
                "enabled": true,
                "announcerTokenSecret": {"name": "prometheus-token", "key": "token"},
            },
            "prometheusRule": {"enabled": true},
        },
    })
}

#[test]
fn the_chart_version_is_the_crates() {
    let text = std::fs::read_to_string(chart_dir().join("Chart.yaml")).unwrap();
    let chart = &parse_objects(&text).unwrap()[0];
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(chart["version"], version, "Chart.yaml version");
    assert_eq!(chart["appVersion"], version, "Chart.yaml appVersion");
}

#[test]
fn the_charts_crds_are_the_generators() {
    let output = Command::new(our_binary("metallb-crds")).output().unwrap();
    assert!(output.status.success());
    let copy = std::fs::read_to_string(chart_dir().join("files/crds.yaml")).unwrap();
    assert!(
        String::from_utf8(output.stdout).unwrap() == copy,
        "charts/metallb-rs/files/crds.yaml is stale: cargo run -q -p metallb-config-formats --bin metallb-crds > charts/metallb-rs/files/crds.yaml"
    );
}

#[test]
fn default_values_render_the_objects_of_deploy() {
    let chart = without_keep_annotation(render(json!({})));
    assert_same_objects(chart, kustomized(&deploy_dir()));
}

#[test]
fn jaeger_on_renders_deploy_with_its_jaeger_component() {
    let dir = tempfile::tempdir().unwrap();
    let overlay = jaeger_overlay(dir.path());
    let chart = without_keep_annotation(render(json!({"jaeger": {"enabled": true}})));
    assert_same_objects(chart, kustomized(&overlay));
}

/// The values deploy/components/prometheus stands for (its kustomization.yaml names them).
fn prometheus_component_values() -> Value {
    json!({"prometheus": {
        "podMonitors": {"enabled": true, "announcerTokenSecret": {"name": "metallb-prometheus-token"}},
        "prometheusRule": {"enabled": true},
    }})
}

#[test]
fn prometheus_on_renders_deploy_with_its_prometheus_component() {
    let dir = tempfile::tempdir().unwrap();
    let overlay = component_overlay(dir.path(), "prometheus");
    let chart = without_keep_annotation(render(prometheus_component_values()));
    assert_same_objects(chart, kustomized(&overlay));
}

/// The rule group lives once, in the chart's files/prometheus-rules.yaml; the component holds a
/// copy under its PrometheusRule's spec, which must not drift (as files/crds.yaml must not).
#[test]
fn the_components_alerting_rules_are_the_charts() {
    let source = std::fs::read_to_string(chart_dir().join("files/prometheus-rules.yaml")).unwrap();
    let source = &parse_objects(&source).unwrap()[0];
    let component = deploy_dir().join("components/prometheus/prometheusrule.yaml");
    let copy = &parse_objects(&std::fs::read_to_string(&component).unwrap()).unwrap()[0];
    assert!(
        &copy["spec"] == source,
        "{} differs from charts/metallb-rs/files/prometheus-rules.yaml: copy that file's groups under its spec",
        component.display()
    );
}

#[test]
fn the_prometheus_rule_follows_its_values() {
    let values = json!({"prometheus": {"prometheusRule": {
        "enabled": true,
        "namespace": "monitoring",
        "labels": {"release": "kube-prometheus"},
    }}});
    let objects = render(values);
    let rule = find(&objects, "PrometheusRule", "metallb-rs");
    assert_eq!(rule["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(rule["metadata"]["namespace"], "monitoring");
    assert_eq!(rule["metadata"]["labels"]["release"], "kube-prometheus");
    assert_eq!(rule["metadata"]["labels"]["app.kubernetes.io/name"], "metallb-rs");
    let source = std::fs::read_to_string(chart_dir().join("files/prometheus-rules.yaml")).unwrap();
    assert_eq!(rule["spec"], parse_objects(&source).unwrap()[0]);
    let alerts = rule["spec"]["groups"][0]["rules"].as_array().unwrap();
    assert!(alerts.iter().any(|a| a["alert"] == "MetalLBBGPSessionDown"), "{alerts:?}");

    // Its own switch: the PodMonitors neither need it nor bring it.
    let monitors_only = render(json!({"prometheus": {"podMonitors": {"enabled": true}}}));
    assert!(!monitors_only.iter().any(|o| o["kind"] == "PrometheusRule"));
    let rule_only = render(json!({"prometheus": {"prometheusRule": {"enabled": true}}}));
    let monitoring: Vec<&Value> =
        rule_only.iter().filter(|o| o["apiVersion"] == "monitoring.coreos.com/v1").collect();
    assert_eq!(monitoring.len(), 1, "{monitoring:?}");
    assert_eq!(
        find(&rule_only, "PrometheusRule", "metallb-rs")["metadata"]["namespace"],
        NAMESPACE
    );
}

/// Values that differ from every default they touch.
fn changed_values() -> Value {
    json!({
        "image": {"repository": "registry.example/metallb-rs", "tag": "9.8.7", "pullPolicy": "Always"},
        "imagePullSecrets": [{"name": "registry-login"}],
        "allocator": {
            "replicas": 3,
            "resources": {"requests": {"cpu": "150m", "memory": "96Mi"}, "limits": {"memory": "300Mi"}},
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "lb", "effect": "NoSchedule"}],
            "priorityClassName": "system-cluster-critical",
            "minAvailable": 2,
        },
        "watcher": {
            "replicas": 1,
            "resources": {"requests": {"cpu": "200m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
            "nodeSelector": {"node-role.example/lb": "true"},
            "affinity": null,
            "priorityClassName": "system-cluster-critical",
            "minAvailable": null,
        },
        "announcer": {
            "resources": {"requests": {"cpu": "20m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}},
            "tolerations": [{"operator": "Exists"}],
            "priorityClassName": "system-node-critical",
            "metricsReaders": "monitoring/prometheus,monitoring/vmagent",
            "layer2": false,
        },
        "tokenIssuer": "https://issuer.example",
        "networkPolicy": {"announcerCIDRs": ["192.0.2.0/24", "2001:db8::/64"]},
        "otlpEndpoint": "http://collector.tracing:4317",
    })
}

#[test]
fn values_change_what_they_say() {
    let objects = render(changed_values());
    let [allocator, watcher, announcer] = workloads(&objects);
    for workload in [allocator, watcher, announcer] {
        let name = workload["metadata"]["name"].as_str().unwrap();
        assert_eq!(container(workload)["image"], "registry.example/metallb-rs:9.8.7", "{name}");
        assert_eq!(container(workload)["imagePullPolicy"], "Always", "{name}");
        assert_eq!(pod_spec(workload)["imagePullSecrets"], json!([{"name": "registry-login"}]));
        assert_eq!(
            env_value(workload, "OTEL_EXPORTER_OTLP_ENDPOINT"),
            Some("http://collector.tracing:4317"),
            "{name}"
        );
    }

    // Replicas, and the watcher's list of allocator replicas follows the allocator's count.
    assert_eq!(allocator["spec"]["replicas"], 3);
    assert_eq!(watcher["spec"]["replicas"], 1);
    let endpoints: Vec<&str> =
        env_value(watcher, "METALLB_ALLOCATOR_ENDPOINT").unwrap().split(',').collect();
    let headless = allocator["spec"]["serviceName"].as_str().unwrap();
    let expected: Vec<String> = (0..3)
        .map(|i| format!("https://metallb-allocator-{i}.{headless}.$(METALLB_NAMESPACE).svc:50051"))
        .collect();
    assert_eq!(endpoints, expected);
    find(&objects, "Service", headless);

    // Resources, scheduling, priority.
    assert_eq!(
        container(allocator)["resources"],
        json!({"requests": {"cpu": "150m", "memory": "96Mi"}, "limits": {"memory": "300Mi"}})
    );
    assert_eq!(
        container(watcher)["resources"],
        json!({"requests": {"cpu": "200m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}})
    );
    assert_eq!(
        container(announcer)["resources"],
        json!({"requests": {"cpu": "20m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}})
    );
    assert_eq!(
        pod_spec(allocator)["tolerations"],
        json!([{"key": "dedicated", "operator": "Equal", "value": "lb", "effect": "NoSchedule"}])
    );
    assert_eq!(pod_spec(announcer)["tolerations"], json!([{"operator": "Exists"}]));
    // A map value merges with the default: the watcher's nodeSelector gains a label.
    assert_eq!(
        pod_spec(watcher)["nodeSelector"],
        json!({"kubernetes.io/os": "linux", "node-role.example/lb": "true"})
    );
    assert!(pod_spec(watcher)["affinity"].is_null(), "affinity: null drops the spreading");
    assert!(!pod_spec(allocator)["affinity"]["podAntiAffinity"].is_null());
    assert_eq!(pod_spec(allocator)["priorityClassName"], "system-cluster-critical");
    assert_eq!(pod_spec(watcher)["priorityClassName"], "system-cluster-critical");
    assert_eq!(pod_spec(announcer)["priorityClassName"], "system-node-critical");

    // Disruption budgets: changed and dropped.
    assert_eq!(
        find(&objects, "PodDisruptionBudget", "metallb-allocator")["spec"]["minAvailable"],
        2
    );
    assert!(
        !objects
            .iter()
            .any(|o| o["kind"] == "PodDisruptionBudget"
                && o["metadata"]["name"] == "metallb-watcher")
    );

    // Token issuer, metrics readers, layer 2 off (no capability, not root).
    assert_eq!(env_value(allocator, "METALLB_TOKEN_ISSUER"), Some("https://issuer.example"));
    assert_eq!(env_value(announcer, "METALLB_TOKEN_ISSUER"), Some("https://issuer.example"));
    assert_eq!(
        env_value(announcer, "METALLB_METRICS_READER_SERVICE_ACCOUNTS"),
        Some("monitoring/prometheus,monitoring/vmagent")
    );
    let security = &container(announcer)["securityContext"];
    assert_eq!(security["capabilities"], json!({"drop": ["ALL"]}));
    assert_eq!((&security["runAsNonRoot"], &security["runAsUser"]), (&json!(true), &json!(65532)));

    // The NetworkPolicy admits the announcers from exactly the given addresses.
    let policy = find(&objects, "NetworkPolicy", "metallb-allocator");
    let blocks: Vec<&Value> = policy["spec"]["ingress"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|rule| rule["from"].as_array().into_iter().flatten())
        .filter_map(|peer| peer.pointer("/ipBlock/cidr"))
        .collect();
    assert_eq!(blocks, [&json!("192.0.2.0/24"), &json!("2001:db8::/64")]);
}

#[test]
fn another_namespace_is_named_wherever_deploy_names_metallb_system() {
    let objects = render_in("lb", &json!({}));
    for object in &objects {
        let namespace = object["metadata"]["namespace"].as_str();
        assert!(namespace.is_none_or(|ns| ns == "lb"), "{:?} in {namespace:?}", key(object));
    }
    find(&objects, "Namespace", "lb");
    let [allocator, ..] = workloads(&objects);
    // The allocator's role defaults name metallb-system's accounts.
    assert_eq!(env_value(allocator, "METALLB_WRITER_SERVICE_ACCOUNTS"), Some("lb/metallb-watcher"));
    assert_eq!(
        env_value(allocator, "METALLB_ANNOUNCER_SERVICE_ACCOUNTS"),
        Some("lb/metallb-announcer")
    );
    let webhook =
        &find(&objects, "ValidatingWebhookConfiguration", "metallb-rs-webhook")["webhooks"][0];
    assert_eq!(webhook["clientConfig"]["service"]["namespace"], "lb");
    assert_eq!(webhook["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"], "lb");
    for binding in objects.iter().filter(|o| o["kind"].as_str().unwrap().ends_with("RoleBinding")) {
        for subject in binding["subjects"].as_array().unwrap() {
            assert_eq!(subject["namespace"], "lb", "{:?}", key(binding));
        }
    }
    // Nothing else spells out the default namespace.
    let text = render_text("lb", &json!({})).unwrap();
    assert!(!text.contains("metallb-system"), "the render still names metallb-system");
}

#[test]
fn pod_monitors_select_each_workloads_metrics_port() {
    let values = json!({"prometheus": {"podMonitors": {
        "enabled": true,
        "namespace": "monitoring",
        "labels": {"release": "kube-prometheus"},
        "interval": "15s",
        "announcerTokenSecret": {"name": "prometheus-token"},
    }}});
    let objects = render(values);
    let monitors: Vec<&Value> = objects.iter().filter(|o| o["kind"] == "PodMonitor").collect();
    assert_eq!(monitors.len(), 3);
    for workload in workloads(&objects) {
        let labels = &workload["spec"]["template"]["metadata"]["labels"];
        let monitor = monitors
            .iter()
            .find(|m| selects(&m["spec"]["selector"]["matchLabels"], labels))
            .unwrap_or_else(|| panic!("no PodMonitor for {}", workload["metadata"]["name"]));
        assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
        assert_eq!(monitor["metadata"]["namespace"], "monitoring");
        assert_eq!(monitor["metadata"]["labels"]["release"], "kube-prometheus");
        assert_eq!(monitor["spec"]["namespaceSelector"]["matchNames"], json!([NAMESPACE]));
        let endpoint = &monitor["spec"]["podMetricsEndpoints"][0];
        assert_eq!(endpoint["interval"], "15s");
        let port = endpoint["port"].as_str().unwrap();
        let ports = container(workload)["ports"].as_array().unwrap();
        assert!(ports.iter().any(|p| p["name"] == port), "no port {port}");
        if workload["kind"] == "DaemonSet" {
            assert_eq!(endpoint["scheme"], "https");
            assert_eq!(
                endpoint["authorization"]["credentials"],
                json!({"name": "prometheus-token", "key": "token"})
            );
        }
    }

    // Without a token for the announcers, only the two plain endpoints; off, none.
    let values = json!({"prometheus": {"podMonitors": {"enabled": true}}});
    assert_eq!(render(values).iter().filter(|o| o["kind"] == "PodMonitor").count(), 2);
    assert!(!render(json!({})).iter().any(|o| o["apiVersion"] == "monitoring.coreos.com/v1"));
}

#[test]
fn cert_manager_issues_the_secret_the_allocator_mounts_and_the_ca_the_clients_trust() {
    let objects = render(json!({"tls": {"provider": "cert-manager"}}));
    let [allocator, watcher, announcer] = workloads(&objects);

    // The allocator's certificate lands in the Secret it mounts, covering the name the watcher
    // checks.
    let certificate = find(&objects, "Certificate", "metallb-allocator");
    let secret = volume(allocator, "tls")["secret"]["secretName"].as_str().unwrap();
    assert_eq!(certificate["spec"]["secretName"], secret);
    let server_name = env_value(watcher, "METALLB_ALLOCATOR_SERVER_NAME")
        .unwrap()
        .replace("$(METALLB_NAMESPACE)", NAMESPACE);
    let dns_names = certificate["spec"]["dnsNames"].as_array().unwrap();
    assert!(dns_names.contains(&json!(server_name)), "{dns_names:?}");
    // rustls reads PKCS#8 for any algorithm.
    assert_eq!(certificate["spec"]["privateKey"]["encoding"], "PKCS8");

    // Its issuer is the chart's CA Issuer, made from a self-signed CA certificate.
    let issuer_name = certificate["spec"]["issuerRef"]["name"].as_str().unwrap();
    let issuer = find(&objects, "Issuer", issuer_name);
    let ca_secret = issuer["spec"]["ca"]["secretName"].as_str().unwrap();
    let ca = objects
        .iter()
        .find(|o| o["kind"] == "Certificate" && o["spec"]["secretName"] == ca_secret)
        .expect("a Certificate for the CA");
    assert_eq!(ca["spec"]["isCA"], true);
    let root = find(&objects, "Issuer", ca["spec"]["issuerRef"]["name"].as_str().unwrap());
    assert_eq!(root["spec"]["selfSigned"], json!({}));

    // The clients trust ca.crt of that Secret (cert-manager's CA issuer writes it there), at the
    // path their flags default to; the watcher neither issues nor rotates anything.
    for client in [watcher, announcer] {
        assert_eq!(
            volume(client, "allocator-ca")["secret"],
            json!({"secretName": secret, "optional": true, "items": [{"key": "ca.crt", "path": "ca.crt"}]})
        );
    }
    assert_eq!(env_value(watcher, "METALLB_MANAGE_ALLOCATOR_TLS"), Some("false"));

    // The webhook: a certificate for its Service, read by the watcher from files, and the CA
    // injected into the configuration by cert-manager.
    let webhook_certificate = find(&objects, "Certificate", "metallb-watcher-webhook");
    let webhook_secret = webhook_certificate["spec"]["secretName"].as_str().unwrap();
    assert_eq!(volume(watcher, "webhook-tls")["secret"]["secretName"], webhook_secret);
    let mounts = container(watcher)["volumeMounts"].as_array().unwrap();
    let mount = mounts.iter().find(|m| m["name"] == "webhook-tls").unwrap();
    let mount_path = mount["mountPath"].as_str().unwrap();
    assert_eq!(
        env_value(watcher, "METALLB_WEBHOOK_CERT_FILE"),
        Some(format!("{mount_path}/tls.crt").as_str())
    );
    assert_eq!(
        env_value(watcher, "METALLB_WEBHOOK_KEY_FILE"),
        Some(format!("{mount_path}/tls.key").as_str())
    );
    let service = find(&objects, "Service", "metallb-watcher-webhook");
    let webhook_name = format!("{}.{NAMESPACE}.svc", service["metadata"]["name"].as_str().unwrap());
    assert!(
        webhook_certificate["spec"]["dnsNames"].as_array().unwrap().contains(&json!(webhook_name))
    );
    let configuration = find(&objects, "ValidatingWebhookConfiguration", "metallb-rs-webhook");
    assert_eq!(
        configuration["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
        format!("{NAMESPACE}/metallb-watcher-webhook")
    );

    // The watcher's RBAC no longer lets it write the TLS Secrets or the CA ConfigMap.
    let role = find(&objects, "Role", "metallb-watcher");
    for rule in role["rules"].as_array().unwrap() {
        let verbs = rule["verbs"].as_array().unwrap();
        assert!(
            !(rule["resources"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r == "secrets" || r == "configmaps")
                && verbs.iter().any(|v| v == "create" || v == "patch")),
            "{rule}"
        );
    }

    // An issuer of the user's own replaces the chart's CA.
    let issuer_ref =
        json!({"name": "corporate-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"});
    let objects = render(
        json!({"tls": {"provider": "cert-manager", "certManager": {"issuerRef": issuer_ref}}}),
    );
    assert!(!objects.iter().any(|o| o["kind"] == "Issuer"));
    for name in ["metallb-allocator", "metallb-watcher-webhook"] {
        assert_eq!(find(&objects, "Certificate", name)["spec"]["issuerRef"], issuer_ref);
    }

    // A misspelt provider is refused, not taken for the default.
    let err = render_text(NAMESPACE, &json!({"tls": {"provider": "certmanager"}})).unwrap_err();
    assert!(err.contains("tls.provider must be watcher or cert-manager"), "{err}");
}

/// Objects of kinds the test apiserver serves: cert-manager's and the Prometheus Operator's
/// CRDs are not installed there.
fn served_kinds_only(objects: Vec<Value>) -> Vec<Value> {
    objects
        .into_iter()
        .filter(|o| {
            let api_version = o["apiVersion"].as_str().unwrap();
            !api_version.starts_with("cert-manager.io/")
                && !api_version.starts_with("monitoring.coreos.com/")
        })
        .collect()
}

#[tokio::test]
async fn a_real_apiserver_accepts_the_renders_and_the_documented_helm_install() {
    let control_plane = ControlPlane::start().await.unwrap();
    // The namespace for real (a dry run creates nothing for the other objects to go in), bare,
    // as `helm install --create-namespace` leaves it.
    control_plane.kubectl(&["create", "namespace", NAMESPACE]).await.unwrap();

    let default = render(json!({}));
    let renders = [
        ("default", default.clone()),
        ("jaeger", render(json!({"jaeger": {"enabled": true}}))),
        ("changed values", render(changed_values())),
        ("every option on", served_kinds_only(render(every_option_on()))),
    ];
    for (label, objects) in renders {
        let path = write_list(control_plane.dir(), label, &objects);
        let output = control_plane
            .kubectl(&["apply", "--dry-run=server", "--validate=strict", "-f", &path])
            .await
            .unwrap_or_else(|err| panic!("{label}: {err:#}"));
        let accepted = output.lines().filter(|line| line.ends_with("(server dry run)")).count();
        assert_eq!(accepted, objects.len(), "{label}: {output}");
    }

    // The install command of README.md: the release adopts the namespace and labels it, and
    // every object of the default render is on the server.
    let home = tempfile::tempdir().unwrap();
    install_documented(home.path(), control_plane.kubeconfig_path(), &[])
        .unwrap_or_else(|err| panic!("{err}"));
    let path = write_list(control_plane.dir(), "installed", &default);
    let installed: Value = serde_json::from_str(
        &control_plane.kubectl(&["get", "-f", &path, "-o", "json"]).await.unwrap(),
    )
    .unwrap();
    assert_eq!(installed["items"].as_array().unwrap().len(), default.len());
    let namespace: Value = serde_json::from_str(
        &control_plane.kubectl(&["get", "namespace", NAMESPACE, "-o", "json"]).await.unwrap(),
    )
    .unwrap();
    assert_eq!(namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"], "privileged");
}

/// Writes `objects` as a v1 List into `dir` for kubectl's `-f`; returns the path.
fn write_list(dir: &Path, label: &str, objects: &[Value]) -> String {
    let path = dir.join(format!("{}.json", label.replace(' ', "-")));
    let list = json!({"apiVersion": "v1", "kind": "List", "items": objects});
    std::fs::write(&path, list.to_string()).unwrap();
    path.to_str().unwrap().to_string()
}
