//! An envtest-style Kubernetes control plane for tests: a real etcd and kube-apiserver on
//! loopback ports, with a fresh CA, client-certificate authentication and RBAC, all in one
//! temporary directory. There is no controller manager, scheduler or kubelet: what a test sees
//! is exactly what the API server stores. Everything is killed and deleted when the handle
//! drops, also when the test panics; parallel tests each get their own ports, CA and directory.
//!
//! Keep the handle in the test (not in a `static`, which is never dropped).

mod apiserver;
mod certificates;
mod etcd;
mod kubeconfig;
mod kubectl;
mod readiness;

use std::{
    ffi::OsStr,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    sync::{
        Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use self::{
    apiserver::ApiserverConfig,
    certificates::{CertificateAuthority, write_service_account_keys},
    etcd::EtcdAddrs,
};
pub use self::{
    apiserver::{KUBERNETES_SERVICE_IP, SERVICE_CLUSTER_IP_RANGE},
    kubeconfig::client_from_kubeconfig,
};
use crate::{child::ChildProcess, ports::free_loopback_addr};

/// How long etcd and kube-apiserver together may take to become ready (usually a few seconds).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How often a port collision (another test took a probed port before our process bound it) is
/// retried with fresh ports before giving up.
const START_ATTEMPTS: usize = 3;

/// Pause between readiness checks.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Bound on a single readiness request, so a wedged server cannot stall the start past its
/// deadline.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a CRD may take to be established and served.
const CRD_TIMEOUT: Duration = Duration::from_secs(30);

/// How much of each log a startup failure shows; the full logs go away with the directory.
const LOG_TAIL_LINES: usize = 80;

/// The admin user: `system:masters` bypasses RBAC.
const ADMIN_USER: &str = "metallb-tests-admin";
const ADMIN_GROUP: &str = "system:masters";

/// How the control plane is started; [`Default`] is loopback only, for tests without a node.
#[derive(Clone, Debug, Default)]
pub struct ControlPlaneOptions {
    /// Serve on this address instead of 127.0.0.1: the host end of a veth into a node
    /// namespace (see [`crate::host_link::HostLink`]), so that a kubelet, kube-proxy and pods
    /// there reach the apiserver. It is also the advertised address, so the `kubernetes`
    /// Service (whose ClusterIP, [`KUBERNETES_SERVICE_IP`], is in the serving certificate too)
    /// leads to it, and the control plane then runs as a real cluster's does: pods get
    /// service-account tokens, and the apiserver reaches kubelets with the admin's client
    /// certificate. Clients in the test's own namespace use it as they would 127.0.0.1: it is
    /// a local address, so their traffic never leaves the machine.
    pub node_facing_address: Option<Ipv4Addr>,
}

/// A running etcd + kube-apiserver pair and the credentials to use it.
pub struct ControlPlane {
    // The processes are declared before `dir` so they are killed before their files go.
    apiserver: Mutex<ChildProcess>,
    etcd: Mutex<ChildProcess>,
    server_url: String,
    ca: CertificateAuthority,
    admin_kubeconfig: PathBuf,
    admin_client_cert: PathBuf,
    admin_client_key: PathBuf,
    service_account_signing_key: PathBuf,
    admin_config: kube::Config,
    /// Numbers issued user credentials so that asking twice for a name never overwrites files
    /// an earlier kubeconfig points to.
    issued_users: AtomicUsize,
    dir: tempfile::TempDir,
}

impl ControlPlane {
    /// Starts etcd and kube-apiserver and waits (at most 60 s) until the apiserver is ready and
    /// the `default` namespace exists; fails with the components' logs otherwise.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(ControlPlaneOptions::default()).await
    }

    /// Like [`ControlPlane::start`], with `options`.
    pub async fn start_with(options: ControlPlaneOptions) -> anyhow::Result<Self> {
        let mut attempt = 1;
        loop {
            match Self::start_once(&options).await {
                Ok(control_plane) => return Ok(control_plane),
                // Ports are probed free and released again, so a parallel test can take one
                // before our process binds it; fresh ports make that race go away.
                Err(err)
                    if attempt < START_ATTEMPTS
                        && format!("{err:#}").contains("address already in use") =>
                {
                    attempt += 1;
                }
                Err(err) => return Err(err),
            }
        }
    }

    async fn start_once(options: &ControlPlaneOptions) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("metallb-kube-").tempdir()?;
        let path = dir.path();

        let ca = CertificateAuthority::create(path)?;
        let extra_addresses: Vec<IpAddr> = match options.node_facing_address {
            Some(address) => vec![address.into(), KUBERNETES_SERVICE_IP.into()],
            None => Vec::new(),
        };
        let serving = ca.issue_serving(path, "apiserver", &extra_addresses)?;
        let admin = ca.issue_client(ADMIN_USER, &[ADMIN_GROUP], path, "admin")?;
        let service_account_signing_key = path.join("service-account.key");
        let service_account_public_key = path.join("service-account.pub");
        write_service_account_keys(&service_account_signing_key, &service_account_public_key)?;

        let [etcd_client, etcd_peer, mut secure_addr] = distinct_free_ports();
        if let Some(address) = options.node_facing_address {
            // A port free on loopback is almost always free on another local address too; the
            // retry on "address already in use" covers the rest.
            secure_addr.set_ip(address.into());
        }
        let etcd_addrs = EtcdAddrs { client: etcd_client, peer: etcd_peer };
        let server_url = format!("https://{secure_addr}");
        let admin_kubeconfig = path.join("admin.kubeconfig");
        kubeconfig::write(&admin_kubeconfig, &server_url, ca.cert_path(), ADMIN_USER, &admin)?;
        let admin_config = kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::read_from(&admin_kubeconfig)?,
            &kube::config::KubeConfigOptions::default(),
        )
        .await?;

        // Both start at once: the apiserver retries etcd until it answers, which is faster
        // than waiting for etcd first.
        let etcd = ChildProcess::spawn("etcd", etcd::command(path, etcd_addrs), path)?;
        let apiserver_command = apiserver::command(&ApiserverConfig {
            dir: path,
            secure_addr,
            etcd_url: &etcd_addrs.client_url(),
            ca_cert: ca.cert_path(),
            serving_cert: &serving.cert,
            serving_key: &serving.key,
            service_account_signing_key: &service_account_signing_key,
            service_account_public_key: &service_account_public_key,
            serves_nodes: options.node_facing_address.is_some(),
            kubelet_client_cert: &admin.cert,
            kubelet_client_key: &admin.key,
        });
        let apiserver = ChildProcess::spawn("kube-apiserver", apiserver_command, path)?;

        let control_plane = Self {
            apiserver: Mutex::new(apiserver),
            etcd: Mutex::new(etcd),
            server_url,
            ca,
            admin_kubeconfig,
            admin_client_cert: admin.cert,
            admin_client_key: admin.key,
            service_account_signing_key,
            admin_config,
            issued_users: AtomicUsize::new(0),
            dir,
        };
        control_plane.wait_ready().await?;
        Ok(control_plane)
    }

    async fn wait_ready(&self) -> anyhow::Result<()> {
        let client = kube::Client::try_from(self.admin_config.clone())?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            self.ensure_running()?;
            let last_error = match tokio::time::timeout(
                PROBE_TIMEOUT,
                readiness::apiserver_ready(&client),
            )
            .await
            {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(err)) => format!("{err:#}"),
                Err(_) => format!("no answer within {PROBE_TIMEOUT:?}"),
            };
            if Instant::now() >= deadline {
                let logs = self.log_tails();
                anyhow::bail!(
                    "kube-apiserver not ready within {START_TIMEOUT:?} ({last_error})\n{logs}"
                );
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Fails with the log of etcd or kube-apiserver if either has exited.
    pub fn ensure_running(&self) -> anyhow::Result<()> {
        lock(&self.etcd).ensure_running()?;
        lock(&self.apiserver).ensure_running()
    }

    fn log_tails(&self) -> String {
        [&self.etcd, &self.apiserver]
            .map(|process| {
                let process = lock(process);
                let log = process.log();
                let lines: Vec<&str> = log.lines().collect();
                let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
                format!(
                    "--- last lines of {} ---\n{}",
                    process.log_path().display(),
                    tail.join("\n")
                )
            })
            .join("\n")
    }

    /// The apiserver's URL, e.g. `https://127.0.0.1:40123`.
    pub fn server_url(&self) -> &str {
        &self.server_url
    }

    /// The CA certificate (PEM) that signed the serving certificate and all client certificates.
    pub fn ca_cert_path(&self) -> &Path {
        self.ca.cert_path()
    }

    /// A kubeconfig for an admin user (group `system:masters`, so RBAC does not apply).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.admin_kubeconfig
    }

    /// The temporary directory holding certificates, kubeconfigs, etcd's data and the logs;
    /// other files a test needs beside them can go here too.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Process IDs of etcd and kube-apiserver (to check that nothing outlives the handle).
    pub fn process_ids(&self) -> [u32; 2] {
        [lock(&self.etcd).pid(), lock(&self.apiserver).pid()]
    }

    /// The admin's client certificate and key (PEM files), for components that take them
    /// rather than a kubeconfig.
    pub fn admin_client_credentials(&self) -> (&Path, &Path) {
        (&self.admin_client_cert, &self.admin_client_key)
    }

    /// The private key the apiserver signs service-account tokens with, which
    /// kube-controller-manager needs too (PKCS#8 PEM).
    pub fn service_account_signing_key_path(&self) -> &Path {
        &self.service_account_signing_key
    }

    /// A kube client for the admin user.
    pub async fn client(&self) -> kube::Client {
        // This configuration already built the client that saw the apiserver become ready.
        kube::Client::try_from(self.admin_config.clone()).expect("admin client configuration")
    }

    /// Writes a kubeconfig for user `name` in `groups` (at most two) with a freshly issued
    /// client certificate, for running a component under its own, restricted RBAC role.
    pub fn kubeconfig_for_user(&self, name: &str, groups: &[&str]) -> anyhow::Result<PathBuf> {
        let serial = self.issued_users.fetch_add(1, Ordering::Relaxed);
        let safe_name: String =
            name.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
        let stem = format!("user-{serial}-{safe_name}");
        let credentials = self.ca.issue_client(name, groups, self.dir(), &stem)?;
        let path = self.dir().join(format!("{stem}.kubeconfig"));
        kubeconfig::write(&path, &self.server_url, self.ca.cert_path(), name, &credentials)?;
        Ok(path)
    }

    /// Applies the manifests in `yaml` (one or more documents) as the admin, server-side.
    pub async fn apply_yaml(&self, yaml: &str) -> anyhow::Result<()> {
        self.run_kubectl(&kubectl::apply_args(OsStr::new("-")), Some(yaml)).await.map(drop)
    }

    /// Applies the manifests in a file or directory as the admin, server-side.
    pub async fn apply_file(&self, path: &Path) -> anyhow::Result<()> {
        self.run_kubectl(&kubectl::apply_args(path.as_os_str()), None).await.map(drop)
    }

    /// Runs kubectl as the admin with `args` and returns its standard output.
    pub async fn kubectl(&self, args: &[&str]) -> anyhow::Result<String> {
        let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
        self.run_kubectl(&args, None).await
    }

    async fn run_kubectl(&self, args: &[&OsStr], stdin: Option<&str>) -> anyhow::Result<String> {
        let cache_dir = self.dir().join("kubectl-cache");
        kubectl::run(&self.admin_kubeconfig, &cache_dir, args, stdin).await
    }

    /// Waits until the CustomResourceDefinition `name` (e.g. `ipaddresspools.metallb.io`) is
    /// established and its resource is served in every served version, so objects of it can be
    /// created right away, also by clients that use discovery.
    pub async fn wait_for_crd(&self, name: &str) -> anyhow::Result<()> {
        let client = self.client().await;
        let deadline = Instant::now() + CRD_TIMEOUT;
        loop {
            let last_error = match readiness::crd_usable(&client, name).await {
                Ok(()) => return Ok(()),
                Err(err) => format!("{err:#}"),
            };
            if Instant::now() >= deadline {
                anyhow::bail!("CRD {name} not usable within {CRD_TIMEOUT:?}: {last_error}");
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}

/// Three free loopback addresses, guaranteed different from each other (the kernel may hand out
/// a just-released port again).
fn distinct_free_ports() -> [SocketAddr; 3] {
    loop {
        let addrs = [free_loopback_addr(), free_loopback_addr(), free_loopback_addr()];
        if addrs[0] != addrs[1] && addrs[1] != addrs[2] && addrs[0] != addrs[2] {
            return addrs;
        }
    }
}

/// The process handles are only locked for short, non-async sections; a panic while one was
/// held does not make the process any less worth killing.
fn lock(process: &Mutex<ChildProcess>) -> std::sync::MutexGuard<'_, ChildProcess> {
    process.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs kubectl with `kubeconfig` (a kubeconfig of a control plane of this harness) and
/// `args`, keeping its discovery cache in `cache_dir`; returns its standard output.
pub async fn run_kubectl(
    kubeconfig: &Path,
    cache_dir: &Path,
    args: &[&OsStr],
) -> anyhow::Result<String> {
    kubectl::run(kubeconfig, cache_dir, args, None).await
}
