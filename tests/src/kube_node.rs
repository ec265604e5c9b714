//! A real Kubernetes node for tests: containerd, kubelet and kube-proxy as processes inside a
//! network namespace the test created (a lab node), registered with a [`ControlPlane`] that
//! serves on the host end of a [`HostLink`] into that namespace. With [`ClusterControllers`]
//! (kube-controller-manager and kube-scheduler) beside it, Deployments get scheduled, pods run
//! in containers from images imported into the node's containerd (never pulled), get addresses
//! from the node's pod CIDR, and reach each other and the apiserver through kube-proxy's
//! Services.
//!
//! The components enter the namespace with `nsenter --net` only: they share the test's mount
//! namespace, so the kubelet's volume mounts are the ones containerd and runc see. Everything
//! else that is per node lives in the node's temporary directory or is named after it (cgroup
//! root, CNI network). Dropping the handle kills the processes, the containers and their shims,
//! unmounts what they mounted and removes their cgroups, also when the test panics.
//!
//! ```text
//! let mut lab = Lab::new(1)?;
//! let link = HostLink::create(&lab.nodes[0].namespace)?;
//! let control_plane = ControlPlane::start_with(ControlPlaneOptions {
//!     node_facing_address: Some(link.host_address),
//! }).await?;
//! let _controllers = ClusterControllers::start(&control_plane, CLUSTER_CIDR)?;
//! let node = KubeNode::start(&control_plane, &lab.nodes[0].namespace, &link,
//!     KubeNodeOptions::default()).await?;
//! node.import_image(&archive).await?;
//! ```

mod cleanup;
mod cni;
mod containerd;
mod controllers;
mod kernel_tunables;
mod kube_proxy;
mod kubelet;

use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::Command,
    sync::{
        Mutex,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context;
use k8s_openapi::api::core::v1::Node;
use kube::{
    Api,
    api::{Patch, PatchParams},
};

use self::containerd::ContainerdPaths;
pub use self::controllers::ClusterControllers;
use crate::{
    child::ChildProcess,
    host_link::HostLink,
    kube_control_plane::ControlPlane,
    lab::{ip_in, sysctl},
    tools::{INSTALL_HINT, cache_dir, system_tool},
};

/// The range every node's pod CIDR is taken from.
pub const CLUSTER_CIDR: &str = "10.244.0.0/16";

/// The address the kubelet tells pods their DNS server is at by default (the `kube-dns`
/// Service's ClusterIP in most clusters); nothing answers there unless a test installs DNS.
pub const DEFAULT_CLUSTER_DNS: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);

/// How long a node may take from start to Ready (usually 10-20 s).
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// How long containerd may take to answer on its socket.
const CONTAINERD_TIMEOUT: Duration = Duration::from_secs(30);

/// Pause between readiness checks.
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// How much of each log a failure shows.
const LOG_TAIL_LINES: usize = 60;

/// What the kubelet and kube-proxy log when their configuration has fields they do not know.
const LENIENT_DECODING: &str = "strict decoding failed";

static NEXT_NODE: AtomicU32 = AtomicU32::new(0);

/// What differs between nodes.
#[derive(Clone, Debug)]
pub struct KubeNodeOptions {
    /// The Node object's name.
    pub name: String,
    /// The node's pod CIDR, inside [`CLUSTER_CIDR`], different for each node.
    pub pod_cidr: String,
    /// The cluster DNS address written into pods' resolv.conf.
    pub cluster_dns: Ipv4Addr,
}

impl Default for KubeNodeOptions {
    fn default() -> Self {
        Self {
            name: "node-1".to_string(),
            pod_cidr: "10.244.1.0/24".to_string(),
            cluster_dns: DEFAULT_CLUSTER_DNS,
        }
    }
}

/// A running node; see the module documentation.
pub struct KubeNode {
    name: String,
    namespace: String,
    node_ip: Ipv4Addr,
    pod_cidr: String,
    cgroup_root: String,
    cni_network: String,
    containerd: ContainerdPaths,
    /// The node's processes, last started first: they are stopped in this order, so that
    /// containerd goes only after the kubelet, which would otherwise restart containers.
    processes: Mutex<Vec<ChildProcess>>,
    dir: tempfile::TempDir,
}

impl KubeNode {
    /// Starts containerd, the kubelet and kube-proxy inside `namespace`, reaching
    /// `control_plane` over `link` (a link into the same namespace), and waits (at most 120 s)
    /// until the node is Ready. Fails with the components' logs otherwise. The namespace, link
    /// and control plane must outlive the node.
    pub async fn start(
        control_plane: &ControlPlane,
        namespace: &str,
        link: &HostLink,
        options: KubeNodeOptions,
    ) -> anyhow::Result<Self> {
        crate::lab::ensure_root()?;
        for program in ["nsenter", "runc", "iptables", "conntrack"] {
            system_tool(program);
        }
        let pause = pause_image()?;
        let serial = NEXT_NODE.fetch_add(1, Ordering::Relaxed);
        let unique = format!("mlbrs-{}-{serial}", std::process::id());
        // The test's process ID in the name lets tests/scripts/remove-stale-namespaces.sh
        // clean up after a killed run.
        let dir = tempfile::Builder::new().prefix(&format!("metallb-node-{unique}-")).tempdir()?;
        let node = Self {
            name: options.name.clone(),
            namespace: namespace.to_string(),
            // The one address of the node the apiserver (in the test's own namespace) reaches
            // without leaving the machine: it calls kubelets for logs and exec, and a lab
            // address (192.0.2.x) would be looked for on the machine's real network instead.
            node_ip: link.namespace_address,
            pod_cidr: options.pod_cidr.clone(),
            cgroup_root: format!("/{unique}"),
            cni_network: unique,
            containerd: ContainerdPaths::new(dir.path()),
            processes: Mutex::new(Vec::new()),
            dir,
        };
        // From here on a failure drops `node`, which cleans up whatever was started.
        node.prepare_namespace(control_plane, link)?;
        node.start_containerd(&pause.reference).await?;
        node.import_image(&pause.archive).await.context("importing the pause image")?;
        // Held until the kubelet has come up (or failed to): then the machine's kernel
        // settings it changed are put back.
        let tunables = kernel_tunables::SavedKernelTunables::save().await;
        node.start_kubelet_and_proxy(control_plane, &options)?;
        node.wait_ready(control_plane).await?;
        tunables.restore_once_written().await;
        node.ensure_configurations_understood()?;
        Ok(node)
    }

    /// Routes to the apiserver, forwarding and bridge filtering inside the namespace (never
    /// outside it).
    fn prepare_namespace(
        &self,
        control_plane: &ControlPlane,
        link: &HostLink,
    ) -> anyhow::Result<()> {
        let apiserver = apiserver_address(control_plane)?;
        if apiserver != link.host_address {
            // Another node's link carries the apiserver's address; the machine delivers it
            // locally whichever link a packet comes in by.
            ip_in(
                &self.namespace,
                &[
                    "route",
                    "replace",
                    &format!("{apiserver}/32"),
                    "via",
                    &link.host_address.to_string(),
                ],
            )?;
        }
        sysctl(&self.namespace, "net.ipv4.ip_forward", "1")?;
        // Bridged traffic between pods goes through kube-proxy's rules too (a pod reaching a
        // Service whose endpoint sits on the same bridge). Per namespace; absent without
        // br_netfilter, and then only that case breaks.
        let _ = sysctl(&self.namespace, "net.bridge.bridge-nf-call-iptables", "1");
        cleanup::create_cgroups(&self.cgroup_root)
    }

    async fn start_containerd(&self, sandbox_image: &str) -> anyhow::Result<()> {
        let cni_conf_dir = self.dir.path().join("cni/net.d");
        cni::write_config(
            &cni_conf_dir,
            &self.cni_network,
            &self.pod_cidr,
            &self.dir.path().join("cni/ipam"),
        )?;
        containerd::write_config(&self.containerd, sandbox_image, &cni_conf_dir)?;
        self.spawn("containerd", containerd::command(&self.containerd))?;
        let deadline = Instant::now() + CONTAINERD_TIMEOUT;
        loop {
            self.ensure_running()?;
            let mut version = containerd::ctr(&self.containerd);
            version.arg("version");
            if run_bounded(version, CONTAINERD_TIMEOUT).await.is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                anyhow::bail!(
                    "containerd did not answer within {CONTAINERD_TIMEOUT:?}\n{}",
                    self.log_tails()
                );
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    fn start_kubelet_and_proxy(
        &self,
        control_plane: &ControlPlane,
        options: &KubeNodeOptions,
    ) -> anyhow::Result<()> {
        let kubelet = kubelet::command(&kubelet::KubeletConfig {
            dir: self.dir.path(),
            node_name: &self.name,
            node_ip: self.node_ip,
            kubeconfig: control_plane.kubeconfig_path(),
            ca_cert: control_plane.ca_cert_path(),
            containerd_socket: &self.containerd.socket,
            cgroup_root: &self.cgroup_root,
            cluster_dns: options.cluster_dns,
        })?;
        self.spawn("kubelet", kubelet)?;
        let kube_proxy = kube_proxy::command(
            self.dir.path(),
            &self.name,
            control_plane.kubeconfig_path(),
            CLUSTER_CIDR,
        )?;
        self.spawn("kube-proxy", kube_proxy)
    }

    /// Spawns `command` inside the node's namespace.
    fn spawn(&self, name: &str, command: Command) -> anyhow::Result<()> {
        let process =
            ChildProcess::spawn(name, self.command_in_namespace(command), self.dir.path())?;
        lock(&self.processes).insert(0, process);
        Ok(())
    }

    async fn wait_ready(&self, control_plane: &ControlPlane) -> anyhow::Result<()> {
        let nodes: Api<Node> = Api::all(control_plane.client().await);
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut pod_cidr_set = false;
        loop {
            self.ensure_running()?;
            let state = match nodes.get_opt(&self.name).await {
                Ok(Some(node)) => {
                    if !pod_cidr_set {
                        // What a controller manager allocating CIDRs would record; the CNI
                        // configuration already uses it.
                        let patch = serde_json::json!({
                            "spec": { "podCIDR": self.pod_cidr, "podCIDRs": [self.pod_cidr] }
                        });
                        nodes
                            .patch(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
                            .await?;
                        pod_cidr_set = true;
                    }
                    match ready_condition(&node) {
                        Some((true, _)) => return Ok(()),
                        Some((false, message)) => format!("not Ready: {message}"),
                        None => "no Ready condition yet".to_string(),
                    }
                }
                Ok(None) => "not registered".to_string(),
                Err(err) => format!("{err:#}"),
            };
            if Instant::now() >= deadline {
                anyhow::bail!(
                    "node {} not Ready within {READY_TIMEOUT:?} ({state})\n{}",
                    self.name,
                    self.log_tails()
                );
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// The kubelet and kube-proxy accept configuration fields they do not know (and ignore
    /// them), saying so only in their logs: a misspelt field here would silently fall back to a
    /// default, such as a directory outside the node's.
    fn ensure_configurations_understood(&self) -> anyhow::Result<()> {
        for process in lock(&self.processes).iter() {
            if let Some(line) = process.log().lines().find(|line| line.contains(LENIENT_DECODING)) {
                anyhow::bail!(
                    "{} did not understand its configuration: {line}",
                    process.log_path().display()
                );
            }
        }
        Ok(())
    }

    /// Imports the OCI (or Docker) archive at `path` into the node's containerd, under the
    /// names the archive gives its images; pods then run them with the default
    /// `imagePullPolicy` (IfNotPresent) for tagged images, or `imagePullPolicy: Never`.
    pub async fn import_image(&self, path: &Path) -> anyhow::Result<()> {
        let mut import = containerd::ctr(&self.containerd);
        import.args(["images", "import", "--local"]).arg(path);
        run_bounded(import, containerd::CTR_TIMEOUT)
            .await
            .with_context(|| format!("importing {} into node {}", path.display(), self.name))
            .map(drop)
    }

    /// The image references the node's containerd holds (for assertions and debugging).
    pub async fn image_references(&self) -> anyhow::Result<Vec<String>> {
        let mut list = containerd::ctr(&self.containerd);
        list.args(["images", "list", "--quiet"]);
        let output = run_bounded(list, containerd::CTR_TIMEOUT).await?;
        Ok(output.lines().map(str::to_string).collect())
    }

    /// `command` wrapped to run inside the node's network namespace (only: the mount
    /// namespace stays the test's), with /usr/sbin and /sbin on its PATH for the iptables,
    /// mount and CNI helpers the components call.
    pub fn command_in_namespace(&self, command: Command) -> Command {
        let mut wrapped = Command::new(system_tool("nsenter"));
        wrapped
            .arg(format!("--net=/run/netns/{}", self.namespace))
            .arg("--")
            .arg(command.get_program())
            .args(command.get_args());
        let mut path_set = false;
        for (key, value) in command.get_envs() {
            path_set |= key == "PATH";
            match value {
                Some(value) => wrapped.env(key, value),
                None => wrapped.env_remove(key),
            };
        }
        if !path_set {
            let path = std::env::var_os("PATH").unwrap_or_default();
            let dirs = std::env::split_paths(&path)
                .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from));
            wrapped.env("PATH", std::env::join_paths(dirs).expect("PATH entries"));
        }
        wrapped
    }

    /// Routes `pod_cidr` (another node's) via `next_hop` (that node's address on a segment both
    /// are on, e.g. the lab's 192.0.2.0/24), so pods reach pods on other nodes as with a
    /// flat pod network. Only inside this node's namespace.
    pub fn route_pod_cidr(&self, pod_cidr: &str, next_hop: Ipv4Addr) -> anyhow::Result<()> {
        ip_in(&self.namespace, &["route", "replace", pod_cidr, "via", &next_hop.to_string()])?;
        Ok(())
    }

    /// Fails with the log of whichever node process has exited.
    pub fn ensure_running(&self) -> anyhow::Result<()> {
        for process in lock(&self.processes).iter_mut() {
            process.ensure_running()?;
        }
        Ok(())
    }

    /// The last lines of the kubelet's, kube-proxy's and containerd's logs, for a failing
    /// test's message.
    pub fn log_tails(&self) -> String {
        lock(&self.processes)
            .iter()
            .map(|process| {
                let log = process.log();
                let lines: Vec<&str> = log.lines().collect();
                let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
                format!(
                    "--- last lines of {} ---\n{}",
                    process.log_path().display(),
                    tail.join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The Node object's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The network namespace the node runs in.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The node's InternalIP (and so pods' `status.hostIP`): the namespace end of its host
    /// link. Its lab addresses are still its own for everything inside the lab (BGP, ARP).
    pub fn node_ip(&self) -> Ipv4Addr {
        self.node_ip
    }

    /// The node's pod CIDR.
    pub fn pod_cidr(&self) -> &str {
        &self.pod_cidr
    }

    /// The node's directory: configurations, logs (`kubelet.log`, `containerd.log`,
    /// `kube-proxy.log`), containerd's and the kubelet's state, pod logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Process IDs of kube-proxy, the kubelet and containerd (those started).
    pub fn process_ids(&self) -> Vec<u32> {
        lock(&self.processes).iter().map(ChildProcess::pid).collect()
    }

    /// The cgroup (relative to each hierarchy's root) all pods of this node run under.
    pub fn cgroup_root(&self) -> &str {
        &self.cgroup_root
    }
}

impl Drop for KubeNode {
    fn drop(&mut self) {
        // kube-proxy, the kubelet, containerd (each with its process group), in that order.
        let processes = std::mem::take(&mut *lock(&self.processes));
        drop(processes);
        cleanup::kill_processes_with_argument(&self.containerd.socket);
        cleanup::kill_cgroup_processes(&self.cgroup_root);
        let task_ids = cleanup::containerd_task_ids(&self.containerd.state);
        cleanup::unmount_below(self.dir.path());
        cleanup::remove_cgroups(&self.cgroup_root);
        cleanup::remove_shim_sockets(&self.containerd.socket, &task_ids);
        cleanup::remove_system_files(self.dir.path(), &self.cni_network, &task_ids);
        // The directory itself goes with `dir`.
    }
}

/// The pause image: its archive and the reference it is imported under.
struct PauseImage {
    archive: PathBuf,
    reference: String,
}

/// The newest pause image `tests/scripts/build-pause-image.sh` left in the cache.
fn pause_image() -> anyhow::Result<PauseImage> {
    let dir = cache_dir().join("images");
    let mut versions: Vec<String> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|entry| {
                    let name = entry.file_name().into_string().ok()?;
                    Some(name.strip_prefix("pause-")?.strip_suffix(".tar")?.to_string())
                })
                .collect()
        })
        .unwrap_or_default();
    versions.sort_by_key(|version| {
        version.split('.').map(|part| part.parse::<u32>().unwrap_or(0)).collect::<Vec<_>>()
    });
    let Some(version) = versions.pop() else {
        panic!("the pause image is not built in {}: {INSTALL_HINT}", dir.display());
    };
    Ok(PauseImage {
        archive: dir.join(format!("pause-{version}.tar")),
        reference: format!("localhost/metallb-rs/pause:{version}"),
    })
}

/// The apiserver's IPv4 address, from its URL.
fn apiserver_address(control_plane: &ControlPlane) -> anyhow::Result<Ipv4Addr> {
    let uri: http::Uri = control_plane.server_url().parse()?;
    let host = uri.host().context("apiserver URL without a host")?;
    host.parse().with_context(|| {
        format!(
            "the apiserver serves on {host}: start it with ControlPlaneOptions::node_facing_address"
        )
    })
}

/// Whether the node's Ready condition is True, and its message.
fn ready_condition(node: &Node) -> Option<(bool, String)> {
    let conditions = node.status.as_ref()?.conditions.as_ref()?;
    let ready = conditions.iter().find(|condition| condition.type_ == "Ready")?;
    Some((ready.status == "True", ready.message.clone().unwrap_or_default()))
}

/// Runs `command` to completion within `timeout`, failing with its output; returns stdout.
async fn run_bounded(command: Command, timeout: Duration) -> anyhow::Result<String> {
    let mut command = tokio::process::Command::from(command);
    command.kill_on_drop(true);
    let program = format!("{:?}", command.as_std());
    let output = tokio::time::timeout(timeout, command.output())
        .await
        .with_context(|| format!("{program} did not finish within {timeout:?}"))??;
    anyhow::ensure!(
        output.status.success(),
        "{program} failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout).trim(),
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The process list is only locked for short, non-async sections; a panic while it was held
/// does not make the processes any less worth killing.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
