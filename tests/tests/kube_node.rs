//! Smoke test of the real node harness: a kubelet, containerd and kube-proxy inside a lab
//! namespace register with the control plane and become Ready; the `kubernetes` Service leads
//! to the apiserver, whose certificate holds for it; a Deployment of the locally
//! built pause image runs; pods get addresses from the node's pod CIDR; a ClusterIP Service
//! leads, through kube-proxy's rules, to an echo server pod, from the node and from another
//! pod; and nothing of the node is left once the handle drops.

use std::{
    net::Ipv4Addr,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{Endpoints, Node, Pod, Service},
};
use kube::{Api, api::ListParams};
use metallb_tests::{
    host_link::HostLink,
    kube_control_plane::{ControlPlane, ControlPlaneOptions, KUBERNETES_SERVICE_IP},
    kube_node::{CLUSTER_CIDR, ClusterControllers, KubeNode, KubeNodeOptions},
    lab::Lab,
    tools::{our_binary, system_tool},
};

/// How long a Deployment's pods may take to become Ready (a first container start on a fresh
/// node included).
const POD_TIMEOUT: Duration = Duration::from_secs(90);

/// How long kube-proxy may take to program a new Service.
const SERVICE_TIMEOUT: Duration = Duration::from_secs(30);

const PAUSE_DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: pause
  namespace: default
spec:
  replicas: 1
  selector:
    matchLabels: {app: pause}
  template:
    metadata:
      labels: {app: pause}
    spec:
      containers:
      - name: pause
        image: PAUSE_IMAGE
        imagePullPolicy: Never
"#;

const ECHO_DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: echo
  namespace: default
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
        args: ["serve", "0.0.0.0:8080", "echo-pod"]
        ports: [{containerPort: 8080}]
        readinessProbe:
          tcpSocket: {port: 8080}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: echo
  namespace: default
spec:
  selector: {app: echo}
  ports:
  - port: 80
    targetPort: 8080
"#;

const ECHO_CLIENT_POD: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: echo-client
  namespace: default
spec:
  restartPolicy: Never
  containers:
  - name: client
    image: ECHO_IMAGE
    imagePullPolicy: Never
    args: ["connect", "SERVICE_ADDR"]
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_real_node_runs_pods_and_services() -> anyhow::Result<()> {
    let lab = Lab::new(1)?;
    let namespace = lab.nodes[0].namespace.clone();
    let link = HostLink::create(&namespace)?;
    let control_plane = ControlPlane::start_with(ControlPlaneOptions {
        node_facing_address: Some(link.host_address),
    })
    .await?;
    let mut controllers = ClusterControllers::start(&control_plane, CLUSTER_CIDR)?;
    let kernel_settings = machine_kernel_settings();
    let started = Instant::now();
    let node =
        KubeNode::start(&control_plane, &namespace, &link, KubeNodeOptions::default()).await?;
    eprintln!("node Ready {:?} after its start", started.elapsed());
    let client = control_plane.client().await;
    assert_eq!(
        machine_kernel_settings(),
        kernel_settings,
        "the kubelet's changes to machine-wide kernel settings were not undone"
    );

    // Pods reach the apiserver as in a real cluster: the `kubernetes` Service leads to the
    // host end of the node's link.
    let endpoints =
        Api::<Endpoints>::namespaced(client.clone(), "default").get("kubernetes").await?;
    let addresses: Vec<String> = endpoints
        .subsets
        .unwrap_or_default()
        .into_iter()
        .flat_map(|subset| subset.addresses.unwrap_or_default())
        .map(|address| address.ip)
        .collect();
    assert_eq!(addresses, [link.host_address.to_string()]);
    // Through kube-proxy's rules for that Service, verifying the serving certificate for its
    // ClusterIP as in-cluster clients do.
    run_in_node_until_success(&node, || {
        let mut curl = Command::new(system_tool("curl"));
        curl.args(["--silent", "--show-error", "--fail", "--max-time", "5", "--cacert"])
            .arg(control_plane.ca_cert_path())
            .arg(format!("https://{KUBERNETES_SERVICE_IP}/version"));
        curl
    })
    .await?;

    let registered = Api::<Node>::all(client.clone()).get(node.name()).await?;
    let addresses = registered.status.and_then(|status| status.addresses).unwrap_or_default();
    assert!(
        addresses.iter().any(|address| address.type_ == "InternalIP"
            && address.address == node.node_ip().to_string()),
        "node addresses {addresses:?} lack InternalIP {}",
        node.node_ip()
    );

    // The pause image is in the node's containerd already: it is the sandbox image.
    let pause = node
        .image_references()
        .await?
        .into_iter()
        .find(|reference| reference.contains("/pause:"))
        .expect("the pause image in the node's containerd");
    control_plane.apply_yaml(&PAUSE_DEPLOYMENT.replace("PAUSE_IMAGE", &pause)).await?;
    let pause_pod =
        wait_for_ready_pod(&control_plane, "app=pause", &node, &mut controllers).await?;
    let pod_ip: Ipv4Addr = pause_pod
        .status
        .and_then(|status| status.pod_ip)
        .expect("a Ready pod has an IP")
        .parse()?;
    assert!(in_cidr(pod_ip, node.pod_cidr()), "pod IP {pod_ip} outside {}", node.pod_cidr());

    // A ClusterIP Service in front of an echo server, reached through kube-proxy's rules.
    let (echo_reference, echo_archive) = echo_image()?;
    node.import_image(&echo_archive).await?;
    control_plane.apply_yaml(&ECHO_DEPLOYMENT.replace("ECHO_IMAGE", &echo_reference)).await?;
    wait_for_ready_pod(&control_plane, "app=echo", &node, &mut controllers).await?;
    let service = Api::<Service>::namespaced(client.clone(), "default").get("echo").await?;
    let cluster_ip = service.spec.and_then(|spec| spec.cluster_ip).expect("a ClusterIP");
    let service_addr = format!("{cluster_ip}:80");
    let answer = connect_from_node(&node, &service_addr).await?;
    assert_eq!(answer, "echo-pod");

    // And from another pod on the same bridge; its log comes back through the kubelet.
    control_plane
        .apply_yaml(
            &ECHO_CLIENT_POD
                .replace("ECHO_IMAGE", &echo_reference)
                .replace("SERVICE_ADDR", &service_addr),
        )
        .await?;
    wait_for_pod_phase(&client, "echo-client", "Succeeded", &node).await?;
    let log = control_plane.kubectl(&["logs", "--namespace=default", "echo-client"]).await?;
    assert_eq!(log.trim(), "echo-pod");

    // Nothing of the node outlives its handle.
    let pids = node.process_ids();
    let dir = node.dir().to_path_buf();
    let cgroup = node.cgroup_root().trim_start_matches('/').to_string();
    drop(node);
    let dir_bytes = dir.as_os_str().as_encoded_bytes().to_vec();
    for entry in std::fs::read_dir("/proc")?.filter_map(Result::ok) {
        // Shims and containers name the node's directory (the containerd socket, bundles).
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        assert!(
            !cmdline.windows(dir_bytes.len()).any(|window| window == dir_bytes),
            "process {:?} of the node survived: {}",
            entry.file_name(),
            String::from_utf8_lossy(&cmdline).replace('\0', " ")
        );
    }
    for link in std::fs::read_dir("/var/log/containers")?.filter_map(Result::ok) {
        let target = std::fs::read_link(link.path()).unwrap_or_default();
        assert!(!target.starts_with(&dir), "{} left behind", link.path().display());
    }
    for pid in pids {
        assert!(!Path::new(&format!("/proc/{pid}")).exists(), "node process {pid} survived");
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")?;
    let dir_text = dir.to_string_lossy();
    assert!(!mounts.lines().any(|line| line.contains(&*dir_text)), "mounts left below {dir_text}");
    assert!(!dir.exists(), "{dir_text} left behind");
    for hierarchy in std::fs::read_dir("/sys/fs/cgroup")? {
        let leftover = hierarchy?.path().join(&cgroup);
        assert!(!leftover.exists(), "cgroup {} left behind", leftover.display());
    }
    Ok(())
}

/// Waits until a pod matching `selector` in `default` is Ready and returns it; on timeout fails
/// with the pods' state and the node's logs.
async fn wait_for_ready_pod(
    control_plane: &ControlPlane,
    selector: &str,
    node: &KubeNode,
    controllers: &mut ClusterControllers,
) -> anyhow::Result<Pod> {
    let client = control_plane.client().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let deadline = Instant::now() + POD_TIMEOUT;
    loop {
        node.ensure_running()?;
        controllers.ensure_running()?;
        let list = pods.list(&ListParams::default().labels(selector)).await?;
        if let Some(pod) = list.items.iter().find(|pod| is_ready(pod)) {
            return Ok(pod.clone());
        }
        if Instant::now() >= deadline {
            let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
            let states: Vec<_> = list.items.iter().map(|pod| &pod.status).collect();
            anyhow::bail!(
                "no Ready pod for {selector} within {POD_TIMEOUT:?}\npods: {states:#?}\ndeployments: {:#?}\n{}",
                deployments
                    .list(&ListParams::default())
                    .await?
                    .items
                    .iter()
                    .map(|d| &d.status)
                    .collect::<Vec<_>>(),
                node.log_tails()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn wait_for_pod_phase(
    client: &kube::Client,
    name: &str,
    phase: &str,
    node: &KubeNode,
) -> anyhow::Result<()> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let deadline = Instant::now() + POD_TIMEOUT;
    loop {
        let pod = pods.get(name).await?;
        let current = pod.status.as_ref().and_then(|status| status.phase.clone());
        if current.as_deref() == Some(phase) {
            return Ok(());
        }
        anyhow::ensure!(
            current.as_deref() != Some("Failed"),
            "pod {name} failed: {:#?}\n{}",
            pod.status,
            node.log_tails()
        );
        if Instant::now() >= deadline {
            anyhow::bail!(
                "pod {name} not {phase} within {POD_TIMEOUT:?}: {:#?}\n{}",
                pod.status,
                node.log_tails()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn is_ready(pod: &Pod) -> bool {
    pod.status.as_ref().and_then(|status| status.conditions.as_ref()).is_some_and(|conditions| {
        conditions.iter().any(|condition| condition.type_ == "Ready" && condition.status == "True")
    })
}

/// Connects to `addr` from the node's namespace until the echo server answers; returns the
/// answer.
async fn connect_from_node(node: &KubeNode, addr: &str) -> anyhow::Result<String> {
    run_in_node_until_success(node, || {
        let mut connect = Command::new(our_binary("metallb-test-echo"));
        connect.args(["connect", addr]);
        connect
    })
    .await
}

/// Runs the command `make` returns in the node's namespace until it succeeds (kube-proxy
/// programs a new Service within a second or so, and its first sync follows the node's start);
/// returns its output.
async fn run_in_node_until_success(
    node: &KubeNode,
    make: impl Fn() -> Command,
) -> anyhow::Result<String> {
    let deadline = Instant::now() + SERVICE_TIMEOUT;
    loop {
        let command = make();
        let description = format!("{command:?}");
        let output = tokio::process::Command::from(node.command_in_namespace(command))
            .kill_on_drop(true)
            .output()
            .await?;
        if output.status.success() {
            return Ok(String::from_utf8_lossy(&output.stdout).trim().to_string());
        }
        if Instant::now() >= deadline {
            anyhow::bail!(
                "{description} failed in node {} for {SERVICE_TIMEOUT:?}: {}\n{}",
                node.name(),
                String::from_utf8_lossy(&output.stderr).trim(),
                node.log_tails()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The echo server's image, built by `tests/scripts/build-test-images.sh` from the
/// `metallb-test-echo` binary of this build: (reference, archive).
fn echo_image() -> anyhow::Result<(String, std::path::PathBuf)> {
    our_binary("metallb-test-echo");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/build-test-images.sh");
    let output = Command::new(script).arg("echo").output()?;
    anyhow::ensure!(
        output.status.success(),
        "{script} echo failed: {}",
        String::from_utf8_lossy(&output.stderr).trim()
    );
    let stdout = String::from_utf8(output.stdout)?;
    let (reference, archive) = stdout
        .trim()
        .split_once(' ')
        .ok_or_else(|| anyhow::anyhow!("{script} printed {stdout:?}"))?;
    Ok((reference.to_string(), archive.into()))
}

/// The machine-wide kernel settings a kubelet would change if the harness let it.
fn machine_kernel_settings() -> Vec<String> {
    ["vm/overcommit_memory", "kernel/panic", "kernel/panic_on_oops", "kernel/keys/root_maxkeys"]
        .iter()
        .map(|name| std::fs::read_to_string(Path::new("/proc/sys").join(name)).unwrap_or_default())
        .collect()
}

fn in_cidr(address: Ipv4Addr, cidr: &str) -> bool {
    let Some((network, length)) = cidr.split_once('/') else { return false };
    let (Ok(network), Ok(length)) = (network.parse::<Ipv4Addr>(), length.parse::<u32>()) else {
        return false;
    };
    let mask = u32::MAX.checked_shl(32 - length).unwrap_or(0);
    u32::from(address) & mask == u32::from(network) & mask
}
