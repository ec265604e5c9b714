//! deploy/ is a real install: `kubectl apply -k deploy/` (and an overlay adding its Jaeger
//! component) is accepted object by object by a real kube-apiserver with strict field
//! validation, the objects are wired to each other as intended (Service and NetworkPolicy selectors match the pods, ports
//! match the flags, probes hit the admin endpoint, the announcer gets its node from the
//! downward API on the host network), the pods meet Pod Security's restricted level (the
//! announcer apart from hostNetwork and NET_RAW as root for layer 2), and the example configurations are accepted once the
//! CRDs are in. The apiserver runs no controllers, so no pod ever starts.

use std::{collections::BTreeSet, path::Path};

use metallb_tests::{
    kube_control_plane::ControlPlane,
    manifests::{deploy_dir, jaeger_overlay},
};
use serde_json::{Value, json};

const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
const NAMESPACE: &str = "metallb-system";

/// The documented install command, run as the admin on the kustomization in `dir`; returns
/// every object it created, read back from the apiserver (`kubectl get -k` fails if any
/// rendered object is missing).
async fn install(control_plane: &ControlPlane, dir: &Path) -> Installed {
    let dir = dir.to_str().unwrap();
    control_plane.kubectl(&["apply", "-k", dir]).await.unwrap();
    let list: Value = serde_json::from_str(
        &control_plane.kubectl(&["get", "-k", dir, "-o", "json"]).await.unwrap(),
    )
    .unwrap();
    let rendered = control_plane.kubectl(&["kustomize", dir]).await.unwrap();
    let documents = 1 + rendered.lines().filter(|line| *line == "---").count();
    let items = list["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), documents, "every rendered object is on the server");
    Installed { items }
}

/// The objects of one install.
struct Installed {
    items: Vec<Value>,
}

impl Installed {
    fn get(&self, kind: &str, name: &str) -> &Value {
        self.items
            .iter()
            .find(|item| item["kind"] == kind && item["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("the install has no {kind} {name}"))
    }

    fn of_kind(&self, kind: &str) -> impl Iterator<Item = &Value> {
        self.items.iter().filter(move |item| item["kind"] == kind)
    }

    fn workloads(&self) -> impl Iterator<Item = &Value> {
        let kinds = ["Deployment", "DaemonSet", "StatefulSet"];
        self.items.iter().filter(move |item| kinds.iter().any(|kind| item["kind"] == *kind))
    }
}

fn name(object: &Value) -> &str {
    object["metadata"]["name"].as_str().unwrap()
}

fn pod_spec(workload: &Value) -> &Value {
    &workload["spec"]["template"]["spec"]
}

fn volume<'a>(workload: &'a Value, volume_name: &str) -> &'a Value {
    pod_spec(workload)["volumes"]
        .as_array()
        .and_then(|volumes| volumes.iter().find(|v| v["name"] == volume_name))
        .unwrap_or_else(|| panic!("{} has no volume {volume_name}", name(workload)))
}

fn mount_path<'a>(workload: &'a Value, volume_name: &str) -> &'a str {
    container(workload)["volumeMounts"]
        .as_array()
        .and_then(|mounts| mounts.iter().find(|m| m["name"] == volume_name))
        .and_then(|mount| mount["mountPath"].as_str())
        .unwrap_or_else(|| panic!("{} does not mount {volume_name}", name(workload)))
}

fn container(workload: &Value) -> &Value {
    let containers = pod_spec(workload)["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1, "{}", name(workload));
    &containers[0]
}

fn env<'a>(container: &'a Value, variable: &str) -> Option<&'a Value> {
    container["env"].as_array()?.iter().find(|entry| entry["name"] == variable)
}

fn env_value<'a>(container: &'a Value, variable: &str) -> Option<&'a str> {
    env(container, variable)?["value"].as_str()
}

fn container_port(container: &Value, port_name: &str) -> u64 {
    container["ports"]
        .as_array()
        .and_then(|ports| ports.iter().find(|port| port["name"] == port_name))
        .and_then(|port| port["containerPort"].as_u64())
        .unwrap_or_else(|| panic!("no port named {port_name} in {}", container["name"]))
}

/// The port of a `host:port` flag value.
fn flag_port(address: &str) -> u64 {
    address.rsplit_once(':').and_then(|(_, port)| port.parse().ok()).unwrap()
}

/// Whether every label `selector` requires is on `labels`.
fn selects(selector: &Value, labels: &Value) -> bool {
    let selector = selector.as_object().unwrap();
    !selector.is_empty() && selector.iter().all(|(key, value)| &labels[key] == value)
}

fn template_labels(workload: &Value) -> &Value {
    &workload["spec"]["template"]["metadata"]["labels"]
}

/// What every metallb-rs container must have: its admin port as the flag says, probes on it,
/// requests and a memory limit, and nothing it does not need.
fn check_container_basics(workload: &Value) {
    let workload_name = name(workload);
    let container = container(workload);
    let admin_addr = env_value(container, "METALLB_ADMIN_ADDR").unwrap();
    assert_eq!(container_port(container, "admin"), flag_port(admin_addr), "{workload_name}");
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        let get = &container[probe]["httpGet"];
        assert_eq!((get["path"].as_str(), get["port"].as_str()), (Some(path), Some("admin")));
    }
    let resources = &container["resources"];
    for field in ["/requests/cpu", "/requests/memory", "/limits/memory"] {
        assert!(resources.pointer(field).is_some(), "{workload_name} has no {field}");
    }
    let security = &container["securityContext"];
    assert_eq!(security["capabilities"]["drop"], json!(["ALL"]), "{workload_name}");
    assert_eq!(security["readOnlyRootFilesystem"], true, "{workload_name}");
    assert_eq!(security["allowPrivilegeEscalation"], false, "{workload_name}");
    assert_eq!(pod_spec(workload)["securityContext"]["runAsNonRoot"], true, "{workload_name}");
    if workload_name == "metallb-announcer" {
        // Layer 2's raw sockets: NET_RAW and nothing else, which only root can use.
        assert_eq!(security["capabilities"]["add"], json!(["NET_RAW"]), "{workload_name}");
        assert_eq!((&security["runAsNonRoot"], &security["runAsUser"]), (&json!(false), &json!(0)));
    } else {
        assert!(security["capabilities"]["add"].is_null(), "{workload_name} adds capabilities");
        assert!(security["runAsUser"].is_null(), "{workload_name} overrides its pod's user");
    }
    let command = container["command"][0].as_str().unwrap();
    assert!(command.ends_with(workload_name), "{workload_name} runs {command}");
}

/// Creates a pod with `spec` in a namespace that enforces Pod Security's restricted level:
/// the apiserver's admission rejects it, naming every violation, unless it complies.
async fn assert_restricted(control_plane: &ControlPlane, pod_name: &str, spec: &Value) {
    let namespace = "pod-security-restricted";
    let namespace_object = json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": namespace,
            "labels": {
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/enforce-version": "latest",
            },
        },
    });
    control_plane.apply_yaml(&namespace_object.to_string()).await.unwrap();
    let pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": pod_name, "namespace": namespace},
        "spec": spec,
    });
    if let Err(err) = control_plane.apply_yaml(&pod.to_string()).await {
        panic!("{pod_name} does not meet the restricted level: {err:#}");
    }
}

#[tokio::test]
async fn kubectl_apply_k_deploy_installs_every_component_wired_as_intended() {
    let control_plane = ControlPlane::start().await.unwrap();
    let installed = install(&control_plane, &deploy_dir()).await;
    for item in &installed.items {
        let namespaced = item["metadata"]["namespace"].as_str();
        assert!(namespaced.is_none_or(|ns| ns == NAMESPACE), "{} in {namespaced:?}", name(item));
    }

    let allocator = installed.get("StatefulSet", "metallb-allocator");
    let watcher = installed.get("Deployment", "metallb-watcher");
    let announcer = installed.get("DaemonSet", "metallb-announcer");
    for workload in [allocator, watcher, announcer] {
        check_container_basics(workload);
    }

    // Two replicas of the allocator and of the watcher, spread over nodes where possible, one
    // of each kept through voluntary disruptions.
    for workload in [allocator, watcher] {
        assert_eq!(workload["spec"]["replicas"], 2, "{}", name(workload));
        let anti_affinity = &pod_spec(workload)["affinity"]["podAntiAffinity"];
        let term = &anti_affinity["preferredDuringSchedulingIgnoredDuringExecution"][0];
        assert_eq!(term["podAffinityTerm"]["topologyKey"], "kubernetes.io/hostname");
        assert!(selects(
            &term["podAffinityTerm"]["labelSelector"]["matchLabels"],
            template_labels(workload)
        ));
        let budget = installed
            .of_kind("PodDisruptionBudget")
            .find(|budget| {
                selects(&budget["spec"]["selector"]["matchLabels"], template_labels(workload))
            })
            .unwrap_or_else(|| panic!("no PodDisruptionBudget for {}", name(workload)));
        assert_eq!(budget["spec"]["minAvailable"], 1);
    }
    let allocator_container = container(allocator);
    let grpc_port = container_port(allocator_container, "grpc");
    assert_eq!(grpc_port, flag_port(env_value(allocator_container, "METALLB_GRPC_ADDR").unwrap()));

    // The announcers reach ready replicas through the Service; the watcher reaches every
    // replica, ready or not (its sync makes one ready), by its name under the headless Service.
    let service = installed.get("Service", "metallb-allocator");
    assert!(selects(&service["spec"]["selector"], template_labels(allocator)));
    assert!(!selects(&service["spec"]["selector"], template_labels(watcher)));
    assert_ne!(service["spec"]["publishNotReadyAddresses"], true);
    let service_port = &service["spec"]["ports"][0];
    assert_eq!(service_port["targetPort"], "grpc");
    let port = service_port["port"].as_i64().unwrap();
    let endpoint = env_value(container(announcer), "METALLB_ALLOCATOR_ENDPOINT").unwrap();
    assert_eq!(endpoint, format!("https://metallb-allocator.$(POD_NAMESPACE).svc:{port}"));
    let headless_name = allocator["spec"]["serviceName"].as_str().unwrap();
    let headless = installed.get("Service", headless_name);
    assert_eq!(headless["spec"]["clusterIP"], "None");
    assert_eq!(headless["spec"]["publishNotReadyAddresses"], true);
    assert!(selects(&headless["spec"]["selector"], template_labels(allocator)));
    let watcher_container = container(watcher);
    let replicas: Vec<String> = (0..2)
        .map(|index| {
            format!(
                "https://metallb-allocator-{index}.{headless_name}.$(METALLB_NAMESPACE).svc:{port}"
            )
        })
        .collect();
    assert_eq!(
        env_value(watcher_container, "METALLB_ALLOCATOR_ENDPOINT").unwrap(),
        replicas.join(",")
    );
    assert_eq!(
        env_value(watcher_container, "METALLB_ALLOCATOR_SERVER_NAME").unwrap(),
        "metallb-allocator.$(METALLB_NAMESPACE).svc"
    );
    let identity = &env(watcher_container, "METALLB_LEADER_IDENTITY").unwrap()["valueFrom"];
    assert_eq!(identity["fieldRef"]["fieldPath"], "metadata.name");

    // The announcer: on the host's network, its node from the downward API, an admin port of
    // its own on the node.
    let announcer_spec = pod_spec(announcer);
    assert_eq!(announcer_spec["hostNetwork"], true);
    assert_eq!(announcer_spec["dnsPolicy"], "ClusterFirstWithHostNet");
    let announcer_container = container(announcer);
    for (variable, field) in
        [("METALLB_NODE_NAME", "spec.nodeName"), ("METALLB_NODE_ADDRESS", "status.hostIP")]
    {
        let source = &env(announcer_container, variable).unwrap()["valueFrom"]["fieldRef"];
        assert_eq!(source["fieldPath"], field, "{variable}");
    }
    assert_ne!(
        container_port(announcer_container, "admin"),
        container_port(allocator_container, "admin"),
        "the announcer's admin port is a port of the node"
    );

    // Only the watcher talks to Kubernetes: the others have no role. The allocator's token
    // only reads the issuer's public keys; the announcer has no API-server token at all.
    let watcher_account = pod_spec(watcher)["serviceAccountName"].as_str().unwrap();
    assert_eq!(watcher_account, "metallb-watcher");
    installed.get("ServiceAccount", watcher_account);
    for workload in [allocator, announcer] {
        let account_name = pod_spec(workload)["serviceAccountName"].as_str().unwrap();
        for binding in
            installed.of_kind("RoleBinding").chain(installed.of_kind("ClusterRoleBinding"))
        {
            let subjects = binding["subjects"].as_array().unwrap();
            assert!(
                subjects.iter().all(|subject| subject["name"] != account_name),
                "{} binds {account_name}",
                name(binding)
            );
        }
    }
    assert_eq!(pod_spec(announcer)["automountServiceAccountToken"], false);

    // TLS and tokens: the allocator serves the certificate from the Secret the watcher keeps,
    // at the paths its flags default to; each client presents a projected token of the
    // allocator's audience and trusts the CA bundle, at the paths their flags default to.
    let tls_volume = volume(allocator, "tls");
    assert_eq!(tls_volume["secret"]["secretName"], "metallb-allocator-tls");
    assert_eq!(mount_path(allocator, "tls"), "/etc/metallb/tls");
    for client in [watcher, announcer] {
        let token =
            &volume(client, "allocator-token")["projected"]["sources"][0]["serviceAccountToken"];
        assert_eq!(token["audience"], "metallb-allocator", "{}", name(client));
        assert!(token["expirationSeconds"].as_i64().unwrap() <= 3600, "{}", name(client));
        let token_file = format!(
            "{}/{}",
            mount_path(client, "allocator-token"),
            token["path"].as_str().unwrap()
        );
        assert_eq!(token_file, "/var/run/secrets/metallb/allocator/token", "{}", name(client));
        assert_eq!(volume(client, "allocator-ca")["configMap"]["name"], "metallb-allocator-ca");
        assert_eq!(mount_path(client, "allocator-ca"), "/etc/metallb/allocator-ca");
    }

    // Metrics leave the node only over HTTPS, to scrapers with a token.
    let metrics_addr = env_value(announcer_container, "METALLB_METRICS_HTTPS_ADDR").unwrap();
    assert_eq!(container_port(announcer_container, "metrics-https"), flag_port(metrics_addr));
    assert_eq!(mount_path(announcer, "issuer"), "/var/run/secrets/metallb/issuer");

    // The announcer's admin endpoint is on the node's loopback only, where the kubelet probes it.
    assert!(
        env_value(announcer_container, "METALLB_ADMIN_ADDR").unwrap().starts_with("127.0.0.1:")
    );
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(announcer_container[probe]["httpGet"]["host"], "127.0.0.1", "{probe}");
    }

    // The allocator's gRPC port admits the watcher by pod selector and nothing else by pod.
    let policy = installed.get("NetworkPolicy", "metallb-allocator");
    assert!(selects(&policy["spec"]["podSelector"]["matchLabels"], template_labels(allocator)));
    let grpc_rules: Vec<&Value> = policy["spec"]["ingress"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|rule| rule["ports"].as_array().unwrap().iter().any(|port| port["port"] == "grpc"))
        .collect();
    assert!(!grpc_rules.is_empty());
    let pod_peers: Vec<&Value> = grpc_rules
        .iter()
        .flat_map(|rule| rule["from"].as_array().expect("gRPC rules name their sources"))
        .filter(|peer| !peer["podSelector"].is_null())
        .collect();
    assert_eq!(pod_peers.len(), 1, "{pod_peers:?}");
    assert!(selects(&pod_peers[0]["podSelector"]["matchLabels"], template_labels(watcher)));

    let images: BTreeSet<&str> =
        installed.workloads().map(|w| container(w)["image"].as_str().unwrap()).collect();
    // The base names the release tag (the crates' version), never latest.
    let release_image = format!("metallb-rs:{}", env!("CARGO_PKG_VERSION"));
    assert_eq!(images, BTreeSet::from([release_image.as_str()]));

    // Pod Security: the allocator and the watcher meet the restricted level as they are, the
    // announcer apart from the host network and layer 2's NET_RAW (as root) it needs.
    assert_restricted(&control_plane, "allocator", pod_spec(allocator)).await;
    assert_restricted(&control_plane, "watcher", pod_spec(watcher)).await;
    let mut announcer_off_host = announcer_spec.clone();
    announcer_off_host["hostNetwork"] = json!(false);
    for port in announcer_off_host["containers"][0]["ports"].as_array_mut().unwrap() {
        port.as_object_mut().unwrap().remove("hostPort");
    }
    // Probing the node's loopback is the other side of the host network: it keeps the admin
    // port off the network, and only makes sense there.
    for probe in ["livenessProbe", "readinessProbe"] {
        announcer_off_host["containers"][0][probe]["httpGet"]
            .as_object_mut()
            .unwrap()
            .remove("host");
    }
    let security = &mut announcer_off_host["containers"][0]["securityContext"];
    let security = security.as_object_mut().unwrap();
    for field in ["runAsNonRoot", "runAsUser"] {
        security.remove(field);
    }
    security["capabilities"].as_object_mut().unwrap().remove("add");
    assert_restricted(&control_plane, "announcer", &announcer_off_host).await;

    // With the CRDs in, both example configurations are accepted as they are (validated
    // strictly, so a misspelt field fails). Dry run: they say the same thing in two forms,
    // and a cluster has one or the other.
    for crd in ["ipaddresspools", "bgppeers", "bgpadvertisements", "communities"] {
        control_plane.wait_for_crd(&format!("{crd}.metallb.io")).await.unwrap();
    }
    for example in ["resources.yaml", "configmap-v0.1.yaml"] {
        let path = format!("{REPO}/deploy/examples/{example}");
        let output = control_plane
            .kubectl(&["apply", "--server-side", "--dry-run=server", "-f", &path])
            .await
            .unwrap_or_else(|err| panic!("{example}: {err:#}"));
        assert!(output.contains("serverside-applied (server dry run)"), "{example}: {output}");
    }
}

#[tokio::test]
async fn the_jaeger_component_adds_jaeger_and_points_every_workload_at_it() {
    let control_plane = ControlPlane::start().await.unwrap();
    let overlay = jaeger_overlay(control_plane.dir());
    let installed = install(&control_plane, &overlay).await;
    let jaeger = installed.get("Deployment", "metallb-jaeger");
    let service = installed.get("Service", "metallb-jaeger");
    assert_eq!(service["metadata"]["namespace"], NAMESPACE);
    assert!(selects(&service["spec"]["selector"], template_labels(jaeger)));
    let otlp = service["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|port| port["name"] == "otlp-grpc")
        .expect("an OTLP/gRPC port");
    assert_eq!(container_port(container(jaeger), otlp["targetPort"].as_str().unwrap()), 4317);
    let endpoint = format!("http://{}:{}", name(service), otlp["port"]);

    let mut pointed = BTreeSet::new();
    for workload in installed.workloads().filter(|w| name(w) != name(jaeger)) {
        let value = env_value(container(workload), "OTEL_EXPORTER_OTLP_ENDPOINT");
        assert_eq!(value, Some(endpoint.as_str()), "{}", name(workload));
        pointed.insert(name(workload));
    }
    assert_eq!(
        pointed,
        BTreeSet::from(["metallb-allocator", "metallb-announcer", "metallb-watcher"])
    );
    assert!(env_value(container(jaeger), "OTEL_EXPORTER_OTLP_ENDPOINT").is_none());
    assert_restricted(&control_plane, "jaeger", pod_spec(jaeger)).await;
}
