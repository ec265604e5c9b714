//! The install manifests as tests read them: deploy/ (and the overlay deploy/README.md shows
//! for its Jaeger component) rendered by kustomize, and multi-document YAML parsed into
//! objects, so that renders are compared as objects rather than as text.

use std::{
    path::{Component, Path, PathBuf},
    process::Command,
};

use serde_json::Value;

use crate::tools::cached_tool;

/// The repository's root.
pub fn repo_dir() -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/..")).canonicalize().unwrap()
}

/// deploy/, absolute.
pub fn deploy_dir() -> PathBuf {
    repo_dir().join("deploy")
}

/// Writes the overlay deploy/README.md shows for adding Jaeger: in a directory of its own
/// under `parent` (kustomize refuses an overlay inside its base's directory), naming deploy/
/// and its Jaeger component by relative paths.
pub fn jaeger_overlay(parent: &Path) -> PathBuf {
    component_overlay(parent, "jaeger")
}

/// Like `jaeger_overlay`, for the component `deploy/components/{component}`.
pub fn component_overlay(parent: &Path, component: &str) -> PathBuf {
    let overlay = parent.join(format!("overlay-{component}"));
    std::fs::create_dir(&overlay).unwrap();
    let overlay = overlay.canonicalize().unwrap();
    let deploy = relative_path(&overlay, &deploy_dir());
    let kustomization = format!(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n- {deploy}\ncomponents:\n- {deploy}/components/{component}\n",
        deploy = deploy.display()
    );
    std::fs::write(overlay.join("kustomization.yaml"), kustomization).unwrap();
    overlay
}

/// `to` as seen from `from` (both absolute): kustomize takes no absolute paths.
pub fn relative_path(from: &Path, to: &Path) -> PathBuf {
    let from: Vec<Component> = from.components().collect();
    let to: Vec<Component> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut path = PathBuf::new();
    for _ in common..from.len() {
        path.push("..");
    }
    path.extend(&to[common..]);
    path
}

/// `kubectl kustomize dir` (no API server involved): the objects `kubectl apply -k dir` would
/// apply, as YAML.
pub fn kustomize(dir: &Path) -> anyhow::Result<String> {
    let output = Command::new(cached_tool("kubectl")).arg("kustomize").arg(dir).output()?;
    if !output.status.success() {
        anyhow::bail!(
            "kubectl kustomize {}: {}",
            dir.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8(output.stdout)?)
}

/// The objects in a multi-document YAML stream, empty documents left out.
pub fn parse_objects(yaml: &str) -> anyhow::Result<Vec<Value>> {
    let documents: Vec<Value> =
        serde_saphyr::from_multiple(yaml).map_err(|err| anyhow::anyhow!("parsing YAML: {err}"))?;
    Ok(documents.into_iter().filter(|document| !document.is_null()).collect())
}
