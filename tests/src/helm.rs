//! The real `helm` (built from its Go module by install-tools.sh) on the repository's chart,
//! with its cache, configuration and data in a directory of the test's: nothing from the
//! user's own helm setup is read or written.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use crate::{manifests::repo_dir, tools::cached_tool};

/// charts/metallb-rs, absolute.
pub fn chart_dir() -> PathBuf {
    repo_dir().join("charts/metallb-rs")
}

/// Runs helm with `args` and its state under `home`; its standard output, or an error with
/// everything it printed.
pub fn helm(home: &Path, args: &[&str]) -> Result<String, String> {
    let output = Command::new(cached_tool("helm"))
        .args(args)
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .output()
        .map_err(|err| format!("running helm: {err}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if output.status.success() {
        Ok(stdout)
    } else {
        Err(format!("helm {args:?}: {stdout}{}", String::from_utf8_lossy(&output.stderr)))
    }
}

/// README.md's install command, `helm install metallb-rs charts/metallb-rs --namespace
/// metallb-system --create-namespace --take-ownership`, against the cluster of `kubeconfig`,
/// with `extra` arguments (`--set ...`) after it.
pub fn install_documented(
    home: &Path,
    kubeconfig: &Path,
    extra: &[&str],
) -> Result<String, String> {
    let chart = chart_dir();
    let chart = chart.to_str().ok_or("chart path is not UTF-8")?;
    let kubeconfig = kubeconfig.to_str().ok_or("kubeconfig path is not UTF-8")?;
    let mut args = vec![
        "install",
        "metallb-rs",
        chart,
        "--namespace",
        "metallb-system",
        "--create-namespace",
        "--take-ownership",
        "--kubeconfig",
        kubeconfig,
    ];
    args.extend_from_slice(extra);
    helm(home, &args)
}
