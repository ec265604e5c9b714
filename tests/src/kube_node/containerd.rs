//! containerd for a test node: its own root, state, socket and configuration in the node's
//! directory, so that several nodes (and the machine's own container runtime, if any) never
//! share anything. The CRI plugin uses the locally built pause image as the sandbox image,
//! runc from the system with cgroupfs, and the CNI configuration this node writes. Images are
//! only ever imported from archives: nothing is pulled.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use crate::tools::{cached_tool, system_tool};

/// The files of one containerd instance.
pub(super) struct ContainerdPaths {
    pub(super) config: PathBuf,
    pub(super) socket: PathBuf,
    pub(super) root: PathBuf,
    pub(super) state: PathBuf,
}

impl ContainerdPaths {
    pub(super) fn new(dir: &Path) -> Self {
        let base = dir.join("containerd");
        Self {
            config: base.join("config.toml"),
            socket: base.join("containerd.sock"),
            root: base.join("root"),
            state: base.join("state"),
        }
    }
}

/// Writes the configuration: `sandbox_image` is the pause image's reference, `cni_conf_dir`
/// the directory the node's CNI configuration is in.
pub(super) fn write_config(
    paths: &ContainerdPaths,
    sandbox_image: &str,
    cni_conf_dir: &Path,
) -> anyhow::Result<()> {
    let quote = |path: &Path| toml_string(&path.to_string_lossy());
    let config = format!(
        r#"version = 3
root = {root}
state = {state}
# Plugins that need kernel features or services a test node does not have; NRI would also
# listen on a fixed socket shared by all nodes.
disabled_plugins = [
  "io.containerd.nri.v1.nri",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.blockfile",
  "io.containerd.snapshotter.v1.erofs",
]

[grpc]
  address = {socket}

[plugins.'io.containerd.internal.v1.opt']
  path = {opt}

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = {sandbox_image}

[plugins.'io.containerd.cri.v1.runtime']
  # Pods' network namespaces under the state dir rather than /run/netns, where `ip netns`
  # and other tests would see them, and where a crash would leave them.
  netns_mounts_under_state_dir = true
  # Containers get no lower OOM score than containerd's own: the kubelet asks for -998 for
  # sandboxes, which needs CAP_SYS_RESOURCE, and a test machine (a VM or container) may not
  # grant that even to root.
  restrict_oom_score_adj = true
  tolerate_missing_hugetlb_controller = true
  disable_hugetlb_controller = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = {runc}
        Root = {runc_root}
        SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = [{cni_bin}]
    conf_dir = {cni_conf}

[plugins.'io.containerd.grpc.v1.cri']
  # exec, attach and port-forward streams: on the node's loopback, any free port.
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
"#,
        root = quote(&paths.root),
        state = quote(&paths.state),
        socket = quote(&paths.socket),
        opt = quote(&paths.root.join("opt")),
        sandbox_image = toml_string(sandbox_image),
        runc = quote(&system_tool("runc")),
        runc_root = quote(&paths.state.join("runc")),
        cni_bin = toml_string(CNI_BIN_DIR),
        cni_conf = quote(cni_conf_dir),
    );
    std::fs::create_dir_all(paths.config.parent().expect("config has a parent"))?;
    std::fs::write(&paths.config, config)?;
    Ok(())
}

/// Where Debian's containernetworking-plugins installs the CNI plugins.
pub(super) const CNI_BIN_DIR: &str = "/usr/lib/cni";

/// The command that runs containerd with `paths`. The shim must be found on PATH: it sits
/// beside containerd in the tool cache.
pub(super) fn command(paths: &ContainerdPaths) -> Command {
    let containerd = cached_tool("containerd");
    // The shim is looked up on PATH by name; the cache's bin directory holds it.
    cached_tool("containerd-shim-runc-v2");
    let bin_dir = containerd.parent().expect("tool has a directory").to_path_buf();
    let path = std::env::var_os("PATH").unwrap_or_default();
    let path = std::env::join_paths(std::iter::once(bin_dir).chain(std::env::split_paths(&path)))
        .expect("PATH entries without separators");
    let mut command = Command::new(containerd);
    command.arg("--config").arg(&paths.config).env("PATH", path);
    command
}

/// Bound on one `ctr` call (an import of a large image included).
pub(super) const CTR_TIMEOUT: Duration = Duration::from_secs(120);

/// The `ctr` command against this containerd's socket, in the namespace the CRI plugin uses.
pub(super) fn ctr(paths: &ContainerdPaths) -> Command {
    let mut command = Command::new(cached_tool("ctr"));
    command.arg("--address").arg(&paths.socket).args(["--namespace", "k8s.io"]);
    command
}

/// A TOML basic string (JSON's escaping is a subset TOML accepts).
fn toml_string(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}
