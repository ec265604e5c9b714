//! What the configuration tests share: a control plane serving `deploy/`'s metallb.io CRDs
//! with the configuration namespace, a watcher process on it, and the ConfigurationState it
//! reports.

use std::path::Path;

use crate::{
    daemons::{Allocator, Daemon},
    kube_control_plane::ControlPlane,
    trust::Trust,
};

/// Where the configuration lives.
pub const CONFIG_NAMESPACE: &str = "metallb-system";

const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// Every CRD `deploy/crds.yaml` holds.
pub const METALLB_CRDS: [&str; 9] = [
    "ipaddresspools.metallb.io",
    "bgppeers.metallb.io",
    "bgpadvertisements.metallb.io",
    "l2advertisements.metallb.io",
    "communities.metallb.io",
    "bfdprofiles.metallb.io",
    "configurationstates.metallb.io",
    "servicebgpstatuses.metallb.io",
    "servicel2statuses.metallb.io",
];

/// A control plane with `deploy/crds.yaml` served and the configuration namespace made.
pub async fn control_plane_with_crds() -> anyhow::Result<ControlPlane> {
    let control_plane = ControlPlane::start().await?;
    control_plane.apply_file(&Path::new(REPO).join("deploy/crds.yaml")).await?;
    // Every kind served before anything watches: a kind listed too early waits for its retry.
    for crd in METALLB_CRDS {
        control_plane.wait_for_crd(crd).await?;
    }
    control_plane.kubectl(&["create", "namespace", CONFIG_NAMESPACE]).await?;
    Ok(control_plane)
}

/// A watcher reaching the API server through `kubeconfig` and `allocator` with `trust`'s
/// credentials, with `extra` flags.
pub async fn start_watcher(
    kubeconfig: &Path,
    allocator: &Allocator,
    trust: &Trust,
    extra: &[&str],
    logs: &Path,
) -> anyhow::Result<Daemon> {
    let mut args: Vec<String> = ["--kubeconfig", &kubeconfig.to_string_lossy()]
        .into_iter()
        .chain(["--allocator-endpoint", &allocator.grpc_url()])
        .chain(extra.iter().copied())
        .map(String::from)
        .collect();
    args.extend(trust.watcher_args().await?);
    Daemon::start("metallb-watcher", &args, &[], logs)
}

/// `jsonpath` (e.g. "{.status.result}") of the watcher's ConfigurationState; empty while there
/// is none.
pub async fn configuration_state(control_plane: &ControlPlane, jsonpath: &str) -> String {
    control_plane
        .kubectl(&[
            "get",
            "configurationstates.metallb.io",
            "metallb-watcher",
            "-n",
            CONFIG_NAMESPACE,
            "-o",
            &format!("jsonpath={jsonpath}"),
        ])
        .await
        .unwrap_or_default()
}

/// Waits (30 s at most) until the ConfigurationState's error summary contains `expected`;
/// panics with what it says and `watcher`'s log otherwise.
pub async fn wait_for_error_summary(
    control_plane: &ControlPlane,
    expected: &str,
    watcher: &Daemon,
) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let summary = configuration_state(control_plane, "{.status.errorSummary}").await;
        if summary.contains(expected) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "ConfigurationState says {summary:?}; watcher log:\n{}",
            watcher.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Takes `echoMode` out of the BFDProfile `name`: MetalLB's documented example asks for BFD
/// echo, which metallb-rs refuses by name (`docs/migrating.md`); the rest of it must then be
/// accepted.
pub async fn remove_echo_mode(control_plane: &ControlPlane, name: &str) -> anyhow::Result<()> {
    let patch = r#"[{"op":"remove","path":"/spec/echoMode"}]"#;
    control_plane
        .kubectl(&[
            "patch",
            "bfdprofiles.metallb.io",
            name,
            "-n",
            CONFIG_NAMESPACE,
            "--type=json",
            "-p",
            patch,
        ])
        .await
        .map(drop)
}
