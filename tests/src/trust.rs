//! What a secured allocator and its callers need in a test, made the way a cluster makes it:
//! the allocator's CA and serving certificate from the watcher's own PKI code, and real
//! projected ServiceAccount tokens issued by kube-apiserver (`kubectl create token`), bound
//! to pods on nodes for announcers.
//!
//! Files live in a temporary directory removed with the `Trust`.

use std::{
    net::{IpAddr, Ipv4Addr},
    path::{Path, PathBuf},
    time::Duration,
};

use metallb_watcher::pki::{self, PemPair};
use time::OffsetDateTime;

use crate::kube_control_plane::ControlPlane;

/// The namespace of our ServiceAccounts.
pub const NAMESPACE: &str = "metallb-system";
/// The audience tokens are issued for.
pub const AUDIENCE: &str = "metallb-allocator";
/// The name clients expect in the allocator's certificate.
pub const SERVER_NAME: &str = "metallb-allocator.metallb-system.svc";
/// The writer's ServiceAccount (`namespace/name` as the allocator's flags want it).
pub const WATCHER_ACCOUNT: &str = "metallb-watcher";
/// The announcers' ServiceAccount.
pub const ANNOUNCER_ACCOUNT: &str = "metallb-announcer";
/// A reader's ServiceAccount, as an operator would name one.
pub const READER_ACCOUNT: &str = "metallb-inspector";
/// A ServiceAccount with no role on the allocator.
pub const STRANGER_ACCOUNT: &str = "someone-else";

const TOKEN_DURATION: &str = "2h";
const DAY: Duration = Duration::from_secs(86_400);

/// Certificates, the issuer's keys and tokens for one test.
pub struct Trust {
    dir: tempfile::TempDir,
    /// When set, the allocator fetches the issuer's keys from kube-apiserver (URL, CA file,
    /// token file) instead of reading `jwks_file`.
    jwks_url: Option<(String, PathBuf, PathBuf)>,
    /// When set, the allocator serves this certificate and key instead of the Trust's own.
    serving_files: Option<(PathBuf, PathBuf)>,
    authority: PemPair,
    issuer: String,
    kubeconfig: PathBuf,
    kubectl_cache: PathBuf,
}

impl Trust {
    /// Makes the allocator's CA and serving certificate, and the ServiceAccounts (with a
    /// pod per node in `nodes` for announcers' tokens) in `control_plane`.
    pub async fn new(control_plane: &ControlPlane, nodes: &[&str]) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("metallb-trust-").tempdir()?;
        let now = OffsetDateTime::now_utc();
        let authority = pki::new_authority("metallb-allocator-ca test", now, 10 * DAY)?;
        std::fs::write(dir.path().join("ca.crt"), &authority.cert)?;
        let trust = Self {
            issuer: format!(
                "https://{}",
                control_plane.server_url().trim_start_matches("https://")
            ),
            kubeconfig: control_plane.kubeconfig_path().to_path_buf(),
            kubectl_cache: control_plane.dir().join("kubectl-cache"),
            authority,
            dir,
            jwks_url: None,
            serving_files: None,
        };
        trust.issue_serving_certificate()?;
        std::fs::write(
            trust.jwks_file(),
            control_plane.kubectl(&["get", "--raw", "/openid/v1/jwks"]).await?,
        )?;
        control_plane.apply_yaml(&accounts_yaml(nodes)).await?;
        Ok(trust)
    }

    /// Issues a new serving certificate (same CA) and swaps it in atomically, as the kubelet
    /// updates a mounted Secret.
    pub fn issue_serving_certificate(&self) -> anyhow::Result<()> {
        let names = vec![SERVER_NAME.to_string(), "localhost".to_string()];
        let ips = [IpAddr::V4(Ipv4Addr::LOCALHOST)];
        let serving =
            pki::issue_serving(&self.authority, &names, &ips, OffsetDateTime::now_utc(), DAY)?;
        for (name, text) in [("tls.crt", &serving.cert), ("tls.key", &serving.key)] {
            let staging = self.dir.path().join(format!(".{name}.new"));
            std::fs::write(&staging, text)?;
            std::fs::rename(&staging, self.dir.path().join(name))?;
        }
        Ok(())
    }

    /// The allocator's serving certificate, as a client would fetch it, for comparisons.
    pub fn serving_certificate(&self) -> anyhow::Result<String> {
        Ok(std::fs::read_to_string(self.dir.path().join("tls.crt"))?)
    }

    /// The CA bundle clients trust.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// The issuer's keys, as `kubectl get --raw /openid/v1/jwks` gave them.
    pub fn jwks_file(&self) -> PathBuf {
        self.dir.path().join("jwks.json")
    }

    /// The token issuer the allocator must trust.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Has the allocator fetch the issuer's keys from `control_plane` as it does in a cluster
    /// (`/openid/v1/jwks`, with a token of its own), for an allocator that can reach it.
    pub async fn use_jwks_url(&mut self, control_plane: &ControlPlane) -> anyhow::Result<()> {
        let token = self.token(STRANGER_ACCOUNT, None, &self.issuer.clone(), "1h").await?;
        let token_file = self.dir.path().join("jwks-reader-token");
        std::fs::write(&token_file, token)?;
        let url = format!("{}/openid/v1/jwks", control_plane.server_url());
        self.jwks_url = Some((url, control_plane.ca_cert_path().to_path_buf(), token_file));
        Ok(())
    }

    /// Has the allocator serve the certificate and key in `cert` and `key` (say, files a test
    /// wrote from the Secret the watcher issued, as the kubelet mounts it) instead of the
    /// Trust's own. Clients must then trust the CA bundle that goes with them, not `ca_file`.
    pub fn use_serving_files(&mut self, cert: &Path, key: &Path) {
        self.serving_files = Some((cert.to_path_buf(), key.to_path_buf()));
    }

    /// The allocator's security flags: its certificate (the Trust's own unless
    /// `use_serving_files` was called), and the issuer's keys from a file
    /// (the allocator may run in a namespace that cannot reach kube-apiserver's loopback)
    /// unless `use_jwks_url` was called.
    pub fn allocator_args(&self) -> Vec<String> {
        let path = |name: &str| self.dir.path().join(name).to_string_lossy().into_owned();
        let display = |path: &Path| path.to_string_lossy().into_owned();
        let keys = match &self.jwks_url {
            Some((url, ca, token)) => vec![
                ("--jwks-url", url.clone()),
                ("--jwks-ca-file", display(ca)),
                ("--jwks-token-file", display(token)),
            ],
            None => vec![("--jwks-file", display(&self.jwks_file()))],
        };
        let (cert, key) = match &self.serving_files {
            Some((cert, key)) => (display(cert), display(key)),
            None => (path("tls.crt"), path("tls.key")),
        };
        [
            ("--tls-cert-file", cert),
            ("--tls-key-file", key),
            ("--token-issuer", self.issuer.clone()),
            ("--token-audience", AUDIENCE.to_string()),
            ("--reader-service-accounts", format!("{NAMESPACE}/{READER_ACCOUNT}")),
        ]
        .into_iter()
        .chain(keys)
        .flat_map(|(flag, value)| [flag.to_string(), value])
        .collect()
    }

    /// A client's flags (watcher, announcer) presenting `token_file`.
    pub fn client_args(&self, token_file: &Path) -> Vec<String> {
        vec![
            "--allocator-ca-file".into(),
            self.ca_file().to_string_lossy().into_owned(),
            "--allocator-server-name".into(),
            SERVER_NAME.into(),
            "--allocator-token-file".into(),
            token_file.to_string_lossy().into_owned(),
        ]
    }

    /// A token of ServiceAccount `account` for the allocator, bound to the announcer pod on
    /// `node` when given, written to a file whose path is returned.
    pub async fn token_file(&self, account: &str, node: Option<&str>) -> anyhow::Result<PathBuf> {
        let token = self.token(account, node, AUDIENCE, TOKEN_DURATION).await?;
        let path = self.dir.path().join(format!("token-{account}-{}", node.unwrap_or("unbound")));
        std::fs::write(&path, token)?;
        Ok(path)
    }

    /// Token files of the announcers of `nodes`, for benches with hundreds of nodes: each
    /// node's announcer pod made and its token requested through the API (a TokenRequest bound
    /// to the pod, as the kubelet asks for a projected token), `concurrency` at a time, rather
    /// than one `kubectl` run per token. The files are in the order of `nodes`.
    pub async fn announcer_token_files(
        &self,
        client: &kube::Client,
        nodes: &[String],
        concurrency: usize,
    ) -> anyhow::Result<Vec<PathBuf>> {
        let mut files = Vec::with_capacity(nodes.len());
        for chunk in nodes.chunks(concurrency.max(1)) {
            let mut requests = tokio::task::JoinSet::new();
            for (index, node) in chunk.iter().enumerate() {
                let (client, node) = (client.clone(), node.clone());
                requests.spawn(async move { (index, announcer_token(client, &node).await) });
            }
            let mut tokens = vec![String::new(); chunk.len()];
            while let Some(joined) = requests.join_next().await {
                let (index, token) = joined?;
                tokens[index] = token?;
            }
            for (node, token) in chunk.iter().zip(tokens) {
                let path = self.dir.path().join(format!("token-{ANNOUNCER_ACCOUNT}-{node}"));
                std::fs::write(&path, token)?;
                files.push(path);
            }
        }
        Ok(files)
    }

    /// The watcher's flags to reach the allocator: the CA bundle and a writer's token.
    pub async fn watcher_args(&self) -> anyhow::Result<Vec<String>> {
        Ok(self.client_args(&self.token_file(WATCHER_ACCOUNT, None).await?))
    }

    /// The flags of the announcer on `node`: the CA bundle and a token bound to its pod.
    pub async fn announcer_args(&self, node: &str) -> anyhow::Result<Vec<String>> {
        Ok(self.client_args(&self.token_file(ANNOUNCER_ACCOUNT, Some(node)).await?))
    }

    /// A token as `kubectl create token` issues it.
    pub async fn token(
        &self,
        account: &str,
        node: Option<&str>,
        audience: &str,
        duration: &str,
    ) -> anyhow::Result<String> {
        let pod = node.map(announcer_pod);
        let mut args = vec![
            "create",
            "token",
            account,
            "-n",
            NAMESPACE,
            "--audience",
            audience,
            "--duration",
            duration,
        ];
        if let Some(pod) = &pod {
            args.extend(["--bound-object-kind", "Pod", "--bound-object-name", pod]);
        }
        let args: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
        let out =
            crate::kube_control_plane::run_kubectl(&self.kubeconfig, &self.kubectl_cache, &args)
                .await?;
        Ok(out.trim().to_string())
    }
}

/// A control plane and a `Trust` for tests of our daemons without Kubernetes objects of their
/// own: kube-apiserver is there to issue the tokens, as it is in a cluster.
pub async fn standalone(nodes: &[&str]) -> anyhow::Result<(ControlPlane, Trust)> {
    let control_plane = ControlPlane::start().await?;
    let trust = Trust::new(&control_plane, nodes).await?;
    Ok((control_plane, trust))
}

/// Makes the announcer pod of `node` (unless it exists) and requests a token bound to it.
async fn announcer_token(client: kube::Client, node: &str) -> anyhow::Result<String> {
    use k8s_openapi::api::{
        authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec},
        core::v1::{Pod, ServiceAccount},
    };
    let pods: kube::Api<Pod> = kube::Api::namespaced(client.clone(), NAMESPACE);
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": announcer_pod(node), "namespace": NAMESPACE},
        "spec": {
            "nodeName": node,
            "serviceAccountName": ANNOUNCER_ACCOUNT,
            "containers": [{"name": "announcer", "image": "metallb-rs:test"}],
        },
    }))?;
    let pod = match pods.create(&Default::default(), &pod).await {
        Ok(pod) => pod,
        Err(kube::Error::Api(status)) if status.code == 409 => {
            pods.get(&announcer_pod(node)).await?
        }
        Err(err) => return Err(err.into()),
    };
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            audiences: Some(vec![AUDIENCE.to_string()]),
            expiration_seconds: Some(2 * 3600),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: pod.metadata.name,
                uid: pod.metadata.uid,
            }),
        }),
        ..Default::default()
    };
    let accounts: kube::Api<ServiceAccount> = kube::Api::namespaced(client, NAMESPACE);
    let params = Default::default();
    let issued = accounts.create_token_request(ANNOUNCER_ACCOUNT, &params, &request).await?;
    let status = issued.status;
    status.and_then(|status| status.token).ok_or_else(|| anyhow::anyhow!("no token for {node}"))
}

/// The pod an announcer on `node` runs as.
pub fn announcer_pod(node: &str) -> String {
    format!("metallb-announcer-{node}")
}

/// The namespace, the ServiceAccounts, the Nodes and one announcer pod per node (never run:
/// there is no kubelet; they exist so that tokens can be bound to them and carry their node).
fn accounts_yaml(nodes: &[&str]) -> String {
    let mut yaml = format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {NAMESPACE}\n");
    for account in [WATCHER_ACCOUNT, ANNOUNCER_ACCOUNT, READER_ACCOUNT, STRANGER_ACCOUNT] {
        yaml += &format!(
            "---\napiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: {account}\n  namespace: {NAMESPACE}\n"
        );
    }
    for node in nodes {
        yaml += &format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: {pod}\n  namespace: {NAMESPACE}\nspec:\n  nodeName: {node}\n  serviceAccountName: {ANNOUNCER_ACCOUNT}\n  containers:\n  - name: announcer\n    image: metallb-rs:test\n",
            pod = announcer_pod(node)
        );
    }
    yaml
}
