//! deploy/ and the Helm chart installed on a real node, as a user installs them: the image
//! from `scripts/build-image.sh` imported into the node's containerd (no registry), then
//! `kubectl apply -k` of an overlay pinning that image (README.md's install path) or
//! `helm install` of charts/metallb-rs with the image values. Each install then has to work,
//! not only be accepted:
//!
//! - every pod is Running and Ready, and the processes run as the manifests say (user,
//!   capabilities, no new privileges, a read-only root filesystem), read from /proc;
//! - the announcer's BGP session to BIRD in the lab's router namespace is Established;
//! - a LoadBalancer Service in front of a real pod gets an IP from the pool, the router learns
//!   it with the node as next hop, and a TCP connection from the client namespace, through the
//!   router and kube-proxy, reaches that pod;
//! - the Service's trace (watcher, allocator, announcer's `send_update`) is in the Jaeger of
//!   deploy/components/jaeger, read through `kubectl port-forward`;
//! - deleting the Service withdraws the route.
//!
//! Topology: the node is a lab namespace (192.0.2.11 on the router's segment), reaching the
//! apiserver over a host link; the router (192.0.2.1, AS 64513) is BIRD; the client sits
//! behind the router. Cluster DNS is CoreDNS, which the manifests' Service names need.

use std::{
    collections::BTreeMap,
    net::IpAddr,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::{
    Api,
    api::{DeleteParams, ListParams},
};
use metallb_tests::{
    bgp_routers::{Neighbor, Router, RouterConfig, RouterKind},
    helm,
    host_link::HostLink,
    images::{ImageArchive, metallb_image, test_image},
    jaeger::{JaegerQuery, Span},
    kube_addons::install_cluster_dns,
    kube_control_plane::{ControlPlane, ControlPlaneOptions},
    kube_node::{CLUSTER_CIDR, ClusterControllers, DEFAULT_CLUSTER_DNS, KubeNode, KubeNodeOptions},
    lab::{Lab, ROUTER_V4, in_namespace},
    manifests::{deploy_dir, relative_path},
    port_forward::PortForward,
    tools::our_binary,
};

const NAMESPACE: &str = "metallb-system";
const NODE_ASN: u32 = 64512;
const ROUTER_ASN: u32 = 64513;
/// The pool's range (documentation addresses, only ever routed inside the lab).
const POOL: &str = "203.0.113.16/28";

/// How long the whole install may take to be Running and Ready. The allocator waits for the
/// certificate the watcher creates, which reaches it when the kubelet next syncs the Secret
/// volume (up to about a minute).
const PODS_READY_TIMEOUT: Duration = Duration::from_secs(300);
const SESSION_TIMEOUT: Duration = Duration::from_secs(60);
const SERVICE_TIMEOUT: Duration = Duration::from_secs(60);
const TRACE_TIMEOUT: Duration = Duration::from_secs(60);
const POLL_INTERVAL: Duration = Duration::from_secs(1);

const BGP_CONFIGURATION: &str = r#"
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: public, namespace: metallb-system}
spec: {addresses: [POOL]}
---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {name: router, namespace: metallb-system}
spec: {myASN: NODE_ASN, peerASN: ROUTER_ASN, peerAddress: ROUTER}
---
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata: {name: public, namespace: metallb-system}
spec: {ipAddressPools: [public]}
"#;

const ECHO: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: echo, namespace: default}
spec:
  replicas: 1
  selector:
    matchLabels: {app: echo}
  template:
    metadata:
      labels: {app: echo}
    spec:
      containers:
      - name: echo
        image: ECHO_IMAGE
        imagePullPolicy: Never
        args: ["serve", "0.0.0.0:8080", "$(POD_NAME)"]
        env:
        - name: POD_NAME
          valueFrom: {fieldRef: {fieldPath: metadata.name}}
        ports: [{containerPort: 8080}]
        readinessProbe:
          tcpSocket: {port: 8080}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata: {name: echo, namespace: default}
spec:
  type: LoadBalancer
  selector: {app: echo}
  ports:
  - {port: 80, targetPort: 8080}
"#;

/// How metallb-rs gets installed.
#[derive(Clone, Copy, Debug)]
enum Installer {
    /// `kubectl apply -k` of an overlay of deploy/ with its Jaeger component and the image.
    Kustomize,
    /// `helm install` of charts/metallb-rs with Jaeger on and the image.
    Helm,
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_apply_k_deploy_runs_on_a_real_node() {
    install_and_serve(Installer::Kustomize).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_helm_chart_runs_on_a_real_node() {
    install_and_serve(Installer::Helm).await;
}

async fn install_and_serve(installer: Installer) {
    // Images first: a build failure should not wait for a cluster.
    let metallb = metallb_image().unwrap();
    let images = [metallb.clone(), test_image("jaeger").unwrap()];
    let (coredns, echo) = (test_image("coredns").unwrap(), test_image("echo").unwrap());

    let mut lab = Lab::new(1).unwrap();
    let client = lab.add_client().unwrap();
    let node_lab = lab.nodes[0].clone();
    let link = HostLink::create(&node_lab.namespace).unwrap();
    let control_plane = ControlPlane::start_with(ControlPlaneOptions {
        node_facing_address: Some(link.host_address),
    })
    .await
    .unwrap();
    let _controllers = ClusterControllers::start(&control_plane, CLUSTER_CIDR).unwrap();
    let node =
        KubeNode::start(&control_plane, &node_lab.namespace, &link, KubeNodeOptions::default())
            .await
            .unwrap();
    for image in images.iter().chain([&coredns, &echo]) {
        node.import_image(&image.archive).await.unwrap();
    }
    install_cluster_dns(&control_plane, &coredns.reference, DEFAULT_CLUSTER_DNS.into())
        .await
        .unwrap();
    let router = Router::start(
        RouterKind::Bird,
        &lab.router,
        &RouterConfig {
            asn: ROUTER_ASN,
            router_id: ROUTER_V4,
            neighbors: vec![Neighbor::new(node_lab.v4.into(), NODE_ASN)],
        },
    )
    .unwrap();
    let diagnose = |what: &'static str| diagnostics(what, &control_plane, &node);

    let work = tempfile::tempdir().unwrap();
    install(installer, &control_plane, work.path(), &metallb, &images[1]).await;
    wait_for_pods_ready(&control_plane, NAMESPACE)
        .await
        .unwrap_or_else(|err| panic!("{err:#}\n{}", block_on(diagnose("pods not ready"))));
    check_processes_run_as_the_manifests_say(&node);

    control_plane
        .apply_yaml(
            &BGP_CONFIGURATION
                .replace("POOL", POOL)
                .replace("NODE_ASN", &NODE_ASN.to_string())
                .replace("ROUTER_ASN", &ROUTER_ASN.to_string())
                .replace("ROUTER", &ROUTER_V4.to_string()),
        )
        .await
        .unwrap();
    let node_address = IpAddr::from(node_lab.v4);
    router
        .wait_until("Established with the announcer", SESSION_TIMEOUT, |router| {
            router.established(node_address)
        })
        .unwrap_or_else(|err| panic!("{err:#}\n{}", block_on(diagnose("no BGP session"))));

    control_plane.apply_yaml(&ECHO.replace("ECHO_IMAGE", &echo.reference)).await.unwrap();
    let ip = wait_for_ingress_ip(&control_plane, "echo")
        .await
        .unwrap_or_else(|err| panic!("{err:#}\n{}", block_on(diagnose("no IP for the Service"))));
    assert!(in_pool(ip), "{ip} is outside the pool {POOL}");
    let prefix = format!("{ip}/32");
    router
        .wait_until("routing the Service's IP to the node", SERVICE_TIMEOUT, |router| {
            Ok(router
                .routes()?
                .iter()
                .any(|route| route.prefix == prefix && route.next_hops == [node_address]))
        })
        .unwrap();
    wait_for_pods_ready(&control_plane, "default").await.unwrap();
    let echo_pod = pod_names(&control_plane, "default", "app=echo").await.remove(0);
    let answer = connect_from(&client, ip).await;
    assert_eq!(answer.trim(), echo_pod, "the client reached another server");

    check_trace_in_jaeger(&control_plane).await;

    let services: Api<Service> = Api::namespaced(control_plane.client().await, "default");
    services.delete("echo", &DeleteParams::default()).await.unwrap();
    router
        .wait_until("withdrawing the route", SERVICE_TIMEOUT, |router| {
            Ok(!router.routes()?.iter().any(|route| route.prefix == prefix))
        })
        .unwrap();
}

/// Installs metallb-rs with `installer`, pointing it at the images built here.
async fn install(
    installer: Installer,
    control_plane: &ControlPlane,
    work: &Path,
    metallb: &ImageArchive,
    jaeger: &ImageArchive,
) {
    let (metallb_name, metallb_tag) = split_reference(&metallb.reference);
    let (jaeger_name, jaeger_tag) = split_reference(&jaeger.reference);
    match installer {
        Installer::Kustomize => {
            let overlay = image_overlay(work, metallb_name, metallb_tag, jaeger_name, jaeger_tag);
            control_plane.kubectl(&["apply", "-k", overlay.to_str().unwrap()]).await.unwrap();
        }
        Installer::Helm => {
            let image_repository = format!("image.repository={metallb_name}");
            let image_tag = format!("image.tag={metallb_tag}");
            let jaeger_image = format!("jaeger.image={}", jaeger.reference);
            helm::install_documented(
                work,
                control_plane.kubeconfig_path(),
                &[
                    "--set",
                    &image_repository,
                    "--set",
                    &image_tag,
                    "--set",
                    "jaeger.enabled=true",
                    "--set",
                    &jaeger_image,
                ],
            )
            .unwrap_or_else(|err| panic!("{err}"));
        }
    }
}

/// The overlay README.md shows for installing a built image, with deploy/'s Jaeger component
/// added as deploy/README.md shows: in its own directory, naming deploy/ by a relative path.
fn image_overlay(
    work: &Path,
    metallb_name: &str,
    metallb_tag: &str,
    jaeger_name: &str,
    jaeger_tag: &str,
) -> PathBuf {
    let overlay = work.join("my-metallb");
    std::fs::create_dir(&overlay).unwrap();
    let overlay = overlay.canonicalize().unwrap();
    let deploy = relative_path(&overlay, &deploy_dir());
    let deploy = deploy.display();
    let kustomization = format!(
        "apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
- {deploy}
components:
- {deploy}/components/jaeger
images:
- name: metallb-rs
  newName: {metallb_name}
  newTag: {metallb_tag}
- name: jaegertracing/jaeger
  newName: {jaeger_name}
  newTag: {jaeger_tag}
"
    );
    std::fs::write(overlay.join("kustomization.yaml"), kustomization).unwrap();
    overlay
}

/// `localhost/metallb-rs:0.1.0-abc` as (`localhost/metallb-rs`, `0.1.0-abc`).
fn split_reference(reference: &str) -> (&str, &str) {
    reference.rsplit_once(':').unwrap()
}

/// Waits until `namespace` has pods and every one of them is Running and Ready, and every
/// workload there has all its replicas ready (so that a StatefulSet's later replicas, created
/// one after the other, are waited for too).
async fn wait_for_pods_ready(control_plane: &ControlPlane, namespace: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + PODS_READY_TIMEOUT;
    loop {
        let state = readiness(control_plane, namespace).await?;
        if state.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            anyhow::bail!(
                "not Ready within {PODS_READY_TIMEOUT:?} in {namespace}: {}",
                state.join("; ")
            );
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// What is not ready yet in `namespace` (empty: everything is).
async fn readiness(control_plane: &ControlPlane, namespace: &str) -> anyhow::Result<Vec<String>> {
    let mut waiting = Vec::new();
    let workloads: serde_json::Value = serde_json::from_str(
        &control_plane
            .kubectl(&["get", "deployments,statefulsets,daemonsets", "-n", namespace, "-o", "json"])
            .await?,
    )?;
    for workload in workloads["items"].as_array().into_iter().flatten() {
        let status = &workload["status"];
        let (wanted, ready) = match workload["kind"].as_str() {
            Some("DaemonSet") => {
                (status["desiredNumberScheduled"].as_u64(), status["numberReady"].as_u64())
            }
            _ => (workload["spec"]["replicas"].as_u64(), status["readyReplicas"].as_u64()),
        };
        let (wanted, ready) = (wanted.unwrap_or(0), ready.unwrap_or(0));
        if wanted == 0 || ready < wanted {
            waiting.push(format!(
                "{} {}: {ready}/{wanted} ready",
                workload["kind"].as_str().unwrap_or_default(),
                workload["metadata"]["name"].as_str().unwrap_or_default()
            ));
        }
    }
    let pods: Api<Pod> = Api::namespaced(control_plane.client().await, namespace);
    let pods = pods.list(&ListParams::default()).await?;
    if pods.items.is_empty() {
        waiting.push("no pods yet".to_string());
    }
    for pod in pods.items {
        let name = pod.metadata.name.unwrap_or_default();
        let status = pod.status.unwrap_or_default();
        let phase = status.phase.unwrap_or_default();
        let ready = status
            .conditions
            .unwrap_or_default()
            .iter()
            .any(|condition| condition.type_ == "Ready" && condition.status == "True");
        if phase != "Running" || !ready {
            waiting.push(format!("pod {name}: {phase}, ready {ready}"));
        }
    }
    Ok(waiting)
}

async fn pod_names(control_plane: &ControlPlane, namespace: &str, selector: &str) -> Vec<String> {
    let pods: Api<Pod> = Api::namespaced(control_plane.client().await, namespace);
    let pods = pods.list(&ListParams::default().labels(selector)).await.unwrap();
    pods.items.into_iter().filter_map(|pod| pod.metadata.name).collect()
}

/// The processes of every metallb-rs container on the node, read from /proc: the allocator
/// and the watcher as user 65532 with no capabilities, the announcer as root with NET_RAW
/// alone; each with no new privileges and a read-only root filesystem.
fn check_processes_run_as_the_manifests_say(node: &KubeNode) {
    const CAP_NET_RAW: u64 = 1 << 13;
    let mut seen = BTreeMap::new();
    for (binary, uid, capabilities) in [
        ("metallb-allocator", 65532, 0),
        ("metallb-watcher", 65532, 0),
        ("metallb-announcer", 0, CAP_NET_RAW),
    ] {
        let processes = container_processes(node, &format!("/usr/local/bin/{binary}"));
        assert!(!processes.is_empty(), "no {binary} process in the node's cgroup");
        for pid in processes {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
            let field = |name: &str| {
                status
                    .lines()
                    .find_map(|line| line.strip_prefix(name))
                    .map(str::trim)
                    .unwrap_or_default()
                    .to_string()
            };
            let uids: Vec<u32> =
                field("Uid:").split_whitespace().map(|uid| uid.parse().unwrap()).collect();
            assert!(uids.iter().all(|id| *id == uid), "{binary} ({pid}) runs as {uids:?}");
            let effective = u64::from_str_radix(&field("CapEff:"), 16).unwrap();
            let bounding = u64::from_str_radix(&field("CapBnd:"), 16).unwrap();
            assert_eq!((effective, bounding), (capabilities, capabilities), "{binary} ({pid})");
            assert_eq!(field("NoNewPrivs:"), "1", "{binary} ({pid}) may gain privileges");
            let mounts = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
            let root = mounts
                .lines()
                .find(|line| line.split(' ').nth(4) == Some("/"))
                .expect("a root mount");
            let options = root.split(' ').nth(5).unwrap();
            assert!(options.split(',').any(|o| o == "ro"), "{binary}'s root is {options}");
            *seen.entry(binary).or_insert(0) += 1;
        }
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
}

/// Host PIDs of the processes running `executable` in containers of `node` (its cgroup).
fn container_processes(node: &KubeNode, executable: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(command_line) = std::fs::read(format!("/proc/{pid}/cmdline")) else { continue };
        let first = command_line.split(|byte| *byte == 0).next().unwrap_or_default();
        if first != executable.as_bytes() {
            continue;
        }
        let Ok(cgroups) = std::fs::read_to_string(format!("/proc/{pid}/cgroup")) else {
            continue;
        };
        if cgroups.contains(node.cgroup_root()) {
            pids.push(pid);
        }
    }
    pids
}

async fn wait_for_ingress_ip(control_plane: &ControlPlane, name: &str) -> anyhow::Result<IpAddr> {
    let services: Api<Service> = Api::namespaced(control_plane.client().await, "default");
    let deadline = Instant::now() + SERVICE_TIMEOUT;
    loop {
        let service = services.get(name).await?;
        let ingress = service
            .status
            .and_then(|status| status.load_balancer)
            .and_then(|load_balancer| load_balancer.ingress)
            .unwrap_or_default();
        if let Some(ip) = ingress.iter().find_map(|ingress| ingress.ip.as_ref()) {
            return Ok(ip.parse()?);
        }
        if Instant::now() >= deadline {
            anyhow::bail!("Service {name} has no ingress IP after {SERVICE_TIMEOUT:?}");
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

fn in_pool(ip: IpAddr) -> bool {
    let pool: ipnetwork::IpNetwork = POOL.parse().unwrap();
    pool.contains(ip)
}

/// What the echo server behind `ip:80` answers to a connection from the client namespace,
/// retried while kube-proxy may still be programming the Service (bounded).
async fn connect_from(client: &str, ip: IpAddr) -> String {
    let deadline = Instant::now() + SERVICE_TIMEOUT;
    loop {
        let output = in_namespace(client, &our_binary("metallb-test-echo"))
            .args(["connect", &format!("{ip}:80")])
            .output()
            .unwrap();
        if output.status.success() {
            return String::from_utf8(output.stdout).unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "no answer from {ip}:80 within {SERVICE_TIMEOUT:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// The echo Service's trace in the Jaeger deploy/components/jaeger installed: the watcher's
/// span for the Service, the allocator's, and the announcer's `send_update`.
async fn check_trace_in_jaeger(control_plane: &ControlPlane) {
    let forward =
        PortForward::start(control_plane, NAMESPACE, "svc/metallb-jaeger", 16686).await.unwrap();
    let jaeger = JaegerQuery::new(&format!("http://{}", forward.local_addr())).unwrap();
    let is_the_watchers_span = |span: &Span| {
        span.service_name == "metallb-watcher" && span.tag_str("service") == Some("default/echo")
    };
    jaeger
        .wait_for_operation_trace(
            "metallb-watcher",
            "watcher.service",
            |trace| {
                trace.spans.iter().any(is_the_watchers_span)
                    && trace.spans.iter().any(|span| span.service_name == "metallb-allocator")
                    && trace.spans.iter().any(|span| {
                        span.service_name == "metallb-announcer"
                            && span.operation_name == "send_update"
                    })
            },
            TRACE_TIMEOUT,
        )
        .await
        .unwrap_or_else(|err| panic!("{err:#}\nport-forward: {}", forward.log()));
}

/// What a failing step shows: pods, Events, the metallb-rs containers' logs, and the node's.
async fn diagnostics(what: &str, control_plane: &ControlPlane, node: &KubeNode) -> String {
    let mut report = format!("=== {what} ===\n");
    for args in [
        vec!["get", "pods", "-A", "-o", "wide"],
        vec!["get", "events", "-A", "--sort-by=.lastTimestamp"],
    ] {
        let output = control_plane.kubectl(&args).await.unwrap_or_else(|err| format!("{err:#}"));
        report.push_str(&format!("--- kubectl {} ---\n{output}\n", args.join(" ")));
    }
    // Each pod's own log: `kubectl logs -l` follows only a few pods at once.
    for pod in pod_names(control_plane, NAMESPACE, "app.kubernetes.io/part-of=metallb-rs").await {
        let args = ["logs", "-n", NAMESPACE, &pod, "--tail=40"];
        let output = control_plane.kubectl(&args).await.unwrap_or_else(|err| format!("{err:#}"));
        report.push_str(&format!("--- kubectl {} ---\n{output}\n", args.join(" ")));
    }
    report.push_str(&node.log_tails());
    report
}

/// Runs a diagnostics future to completion from inside a panic message (the runtime is
/// multi-threaded, so blocking this worker is fine).
fn block_on<F: std::future::Future<Output = String>>(future: F) -> String {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(future))
}
