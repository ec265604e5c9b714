//! Leaving nothing behind when a node goes: a kubelet and containerd that are killed rather
//! than drained leave container processes (in the node's cgroups), shims (which detach from
//! containerd's process group), mounts (overlay root filesystems, tmpfs volumes, network
//! namespace files), cgroup directories, and a few files in fixed system locations. Each
//! function here removes one of these, only what belongs to this node, and reports nothing:
//! they run from `Drop`.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

/// Where the cgroup v1 hierarchies (and the hybrid layout's cgroup2 at `unified`) are mounted.
const CGROUP_MOUNT_ROOT: &str = "/sys/fs/cgroup";

/// Bound on waiting for killed processes to leave their cgroups.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);

/// The node's cgroup directory in every hierarchy mounted under /sys/fs/cgroup.
pub(super) fn cgroup_dirs(cgroup_root: &str) -> Vec<PathBuf> {
    let relative = cgroup_root.trim_start_matches('/');
    std::fs::read_dir(CGROUP_MOUNT_ROOT)
        .map(|entries| {
            entries.filter_map(Result::ok).map(|entry| entry.path().join(relative)).collect()
        })
        .unwrap_or_default()
}

/// Creates the node's cgroup in every hierarchy: the kubelet insists that its cgroup root
/// exists in each one it uses.
pub(super) fn create_cgroups(cgroup_root: &str) -> anyhow::Result<()> {
    for dir in cgroup_dirs(cgroup_root) {
        std::fs::create_dir_all(&dir)
            .map_err(|err| anyhow::anyhow!("creating cgroup {}: {err}", dir.display()))?;
    }
    Ok(())
}

/// Kills every process in the node's cgroups (the pods' containers, and shims placed there)
/// and waits, bounded, until the cgroups are empty.
pub(super) fn kill_cgroup_processes(cgroup_root: &str) {
    let deadline = Instant::now() + KILL_TIMEOUT;
    loop {
        let pids: Vec<String> =
            cgroup_dirs(cgroup_root).iter().flat_map(|dir| processes_below(dir)).collect();
        if pids.is_empty() || Instant::now() >= deadline {
            return;
        }
        kill(&pids);
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn processes_below(dir: &Path) -> Vec<String> {
    let mut pids: Vec<String> = std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.filter_map(Result::ok) {
            if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                pids.extend(processes_below(&entry.path()));
            }
        }
    }
    pids
}

/// Removes the node's cgroups, children first (a cgroup directory only goes when empty).
pub(super) fn remove_cgroups(cgroup_root: &str) {
    for dir in cgroup_dirs(cgroup_root) {
        remove_cgroup_tree(&dir);
    }
}

fn remove_cgroup_tree(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.filter_map(Result::ok) {
            if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                remove_cgroup_tree(&entry.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// Kills the processes whose command line contains `marker` as one argument: containerd's
/// shims carry the containerd socket's path (`-address PATH`), which is unique to the node.
pub(super) fn kill_processes_with_argument(marker: &Path) {
    let marker = marker.as_os_str().as_encoded_bytes();
    let Ok(entries) = std::fs::read_dir("/proc") else { return };
    let pids: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            name.parse::<u32>().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            cmdline.split(|byte| *byte == 0).any(|argument| argument == marker).then_some(name)
        })
        .collect();
    kill(&pids);
}

fn kill(pids: &[String]) {
    if pids.is_empty() {
        return;
    }
    let _ = Command::new("kill")
        .arg("-9")
        .arg("--")
        .args(pids)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Unmounts everything mounted at or below `dir`, deepest first, lazily (a mount a dying
/// process still holds goes once it lets go).
pub(super) fn unmount_below(dir: &Path) {
    let mut mount_points: Vec<PathBuf> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(unescape_mount_point(field)))
        .filter(|mount_point| mount_point.starts_with(dir))
        .collect();
    mount_points.sort_by_key(|mount_point| std::cmp::Reverse(mount_point.as_os_str().len()));
    mount_points.dedup();
    for mount_point in mount_points {
        let _ = Command::new("umount")
            .arg("--lazy")
            .arg(&mount_point)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// mountinfo writes space, tab, newline and backslash in paths as octal escapes.
fn unescape_mount_point(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            let digits: String = chars.by_ref().take(3).collect();
            match u8::from_str_radix(&digits, 8) {
                Ok(byte) => out.push(char::from(byte)),
                Err(_) => {
                    out.push('\\');
                    out.push_str(&digits);
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The kubelet links every container's log into this fixed directory, whatever its other
/// paths are.
const CONTAINER_LOG_LINKS: &str = "/var/log/containers";

/// libcni caches each attachment's result here (containerd offers no setting for it), in files
/// named after the network.
const CNI_RESULT_CACHE: &str = "/var/lib/cni/results";

/// Where every containerd's shims put their sockets, whatever containerd's own state dir is.
const SHIM_SOCKET_DIR: &str = "/run/containerd/s";

/// The IDs of the pod sandboxes and containers containerd (state dir `state`) ran, read before
/// the state dir goes: a killed containerd leaves files named after them elsewhere.
pub(super) fn containerd_task_ids(state: &Path) -> Vec<String> {
    ["io.containerd.grpc.v1.cri/sandboxes", "io.containerd.runtime.v2.task/k8s.io"]
        .iter()
        .filter_map(|relative| std::fs::read_dir(state.join(relative)).ok())
        .flat_map(|entries| entries.filter_map(Result::ok))
        .filter_map(|entry| entry.file_name().into_string().ok())
        .collect()
}

/// Removes what killed shims of the containerd at `socket` left in /run/containerd/s: a shim's
/// socket is named by the SHA-256 of `<containerd socket>/<namespace>/<task id>`.
pub(super) fn remove_shim_sockets(socket: &Path, task_ids: &[String]) {
    for id in task_ids {
        let key = socket.join("k8s.io").join(id);
        if let Some(digest) = sha256_hex(key.as_os_str().as_encoded_bytes()) {
            let _ = std::fs::remove_file(Path::new(SHIM_SOCKET_DIR).join(digest));
        }
    }
}

/// coreutils' sha256sum: the harness has no hashing crate, and this runs once per container.
fn sha256_hex(data: &[u8]) -> Option<String> {
    use std::io::Write as _;
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    child.stdin.take()?.write_all(data).ok()?;
    let output = child.wait_with_output().ok()?;
    String::from_utf8(output.stdout).ok()?.split_whitespace().next().map(str::to_string)
}

/// Removes the links the kubelet made in /var/log/containers that point into `dir`, and the CNI
/// result cache entries of network `cni_network` and of the loopback attachments of
/// `task_ids` (containerd names that network `cni-loopback` for every node).
pub(super) fn remove_system_files(dir: &Path, cni_network: &str, task_ids: &[String]) {
    if let Ok(entries) = std::fs::read_dir(CONTAINER_LOG_LINKS) {
        for entry in entries.filter_map(Result::ok) {
            if std::fs::read_link(entry.path()).is_ok_and(|target| target.starts_with(dir)) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    let prefix = format!("{cni_network}-");
    if let Ok(entries) = std::fs::read_dir(CNI_RESULT_CACHE) {
        for entry in entries.filter_map(Result::ok) {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    for id in task_ids {
        let _ =
            std::fs::remove_file(Path::new(CNI_RESULT_CACHE).join(format!("cni-loopback-{id}-lo")));
    }
}

#[cfg(test)]
mod tests {
    use super::unescape_mount_point;

    #[test]
    fn mount_points_are_unescaped() {
        assert_eq!(unescape_mount_point(r"/tmp/a\040b"), "/tmp/a b");
        assert_eq!(unescape_mount_point("/run/plain"), "/run/plain");
    }
}
