//! Kubeconfig files for the control plane's users. They name the CA, certificate and key files
//! by path rather than embedding them, so they stay short and readable when a test fails; every
//! file lives in the control plane's directory and is valid exactly as long as it is.

use std::path::Path;

use super::certificates::PemFiles;

/// Writes a kubeconfig at `path` for `user` with the client certificate `credentials`, talking
/// to `server_url` and trusting `ca_cert`.
pub(super) fn write(
    path: &Path,
    server_url: &str,
    ca_cert: &Path,
    user: &str,
    credentials: &PemFiles,
) -> anyhow::Result<()> {
    // JSON strings are valid YAML scalars, so quoting through serde_json copes with any user
    // name or path.
    let quote = |text: &str| serde_json::Value::from(text).to_string();
    let quote_path = |path: &Path| quote(&path.to_string_lossy());
    let yaml = format!(
        "apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: {server}
    certificate-authority: {ca}
users:
- name: {user}
  user:
    client-certificate: {cert}
    client-key: {key}
contexts:
- name: test
  context:
    cluster: test
    user: {user}
current-context: test
",
        server = quote(server_url),
        ca = quote_path(ca_cert),
        user = quote(user),
        cert = quote_path(&credentials.cert),
        key = quote_path(&credentials.key),
    );
    std::fs::write(path, yaml)?;
    Ok(())
}

/// A kube client configured from the kubeconfig at `path`.
pub async fn client_from_kubeconfig(path: &Path) -> anyhow::Result<kube::Client> {
    let kubeconfig = kube::config::Kubeconfig::read_from(path)?;
    let options = kube::config::KubeConfigOptions::default();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options).await?;
    Ok(kube::Client::try_from(config)?)
}
