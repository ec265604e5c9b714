//! Where the external programs are. Go-built tools live in the cache that
//! `tests/scripts/install-tools.sh` fills; Debian's live on PATH; ours in the Cargo target dir.
//! A missing program is a setup error: the test fails and says how to install it.

use std::path::{Path, PathBuf};

/// The command that installs every external component.
pub const INSTALL_HINT: &str =
    "run tests/scripts/install-tools.sh (the README's test command does)";

/// Root of the tool cache (`METALLB_RS_CACHE`, default `~/.cache/metallb-rs`).
pub fn cache_dir() -> PathBuf {
    match std::env::var_os("METALLB_RS_CACHE") {
        Some(dir) => PathBuf::from(dir),
        None => home_dir().join(".cache/metallb-rs"),
    }
}

fn home_dir() -> PathBuf {
    std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/root"))
}

/// Path of a Go-built tool from the cache: "etcd", "kube-apiserver", "kubectl", "jaeger",
/// "grpcurl", "helm", "prometheus", "promtool". Panics with the install hint when it is missing.
pub fn cached_tool(name: &str) -> PathBuf {
    let path = cache_dir().join("bin").join(name);
    if !is_executable(&path) {
        panic!("{name} is not installed at {}: {INSTALL_HINT}", path.display());
    }
    path
}

/// Path of a program expected on PATH ("bird", "birdc", "gobgpd", "vtysh", ...), also looking
/// in the sbin directories Debian puts daemons in. Panics with the install hint when missing.
pub fn system_tool(name: &str) -> PathBuf {
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    let extra = ["/usr/sbin", "/sbin", "/usr/lib/frr"].map(PathBuf::from);
    std::env::split_paths(&path_var)
        .chain(extra)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
        .unwrap_or_else(|| panic!("{name} is not on PATH: {INSTALL_HINT}"))
}

/// Path of one of our binaries ("metallb-allocator", ...), built by `cargo build --bins` into
/// the same target directory as the running test. Panics saying how to build it.
pub fn our_binary(name: &str) -> PathBuf {
    let path = target_profile_dir().join(name);
    if !is_executable(&path) {
        panic!(
            "{} does not exist: build the binaries first with `cargo build --bins` (the README's test command does)",
            path.display()
        );
    }
    path
}

/// target/<profile>: test executables live in its deps/ subdirectory, the demo beside the
/// binaries themselves.
fn target_profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("path of the running executable");
    let dir = exe.parent().expect("directory of the running executable");
    if dir.file_name().is_some_and(|name| name == "deps") {
        dir.parent().map(Path::to_path_buf).expect("target/<profile> directory")
    } else {
        dir.to_path_buf()
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}
