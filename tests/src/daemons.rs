//! Our own binaries as processes, the way a user runs them: flags on the command line, logs
//! to a file, the admin endpoint polled until ready, SIGTERM to stop.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Command, ExitStatus},
    time::{Duration, Instant},
};

use crate::{
    child::ChildProcess,
    grpcurl::GrpcTarget,
    lab::in_namespace,
    ports::free_loopback_addr,
    tools::{our_binary, system_tool},
    trust::{AUDIENCE, Trust, WATCHER_ACCOUNT},
};

/// How long a daemon may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// One of our binaries, running.
pub struct Daemon {
    process: ChildProcess,
    admin_addr: SocketAddr,
    namespace: Option<String>,
}

impl Daemon {
    /// Starts `binary` ("metallb-allocator", ...) with `args` plus `--admin-addr` on a free
    /// loopback port and `env`, logging into `log_dir`.
    pub fn start(
        binary: &str,
        args: &[String],
        env: &[(&str, String)],
        log_dir: &Path,
    ) -> anyhow::Result<Self> {
        Self::start_in(None, binary, args, env, log_dir)
    }

    /// Like `start`, inside network namespace `namespace` when given (its loopback is then the
    /// namespace's own, and the admin endpoint is reached from inside it).
    pub fn start_in(
        namespace: Option<&str>,
        binary: &str,
        args: &[String],
        env: &[(&str, String)],
        log_dir: &Path,
    ) -> anyhow::Result<Self> {
        let name = match namespace {
            Some(namespace) => format!("{binary}-{namespace}"),
            None => binary.to_string(),
        };
        Self::start_as(&name, namespace, binary, args, env, log_dir)
    }

    /// Like `start_in`, logging to `log_dir/{name}.log`: for several instances of one binary
    /// in one namespace (replicas, restarts), each with its own log.
    pub fn start_as(
        name: &str,
        namespace: Option<&str>,
        binary: &str,
        args: &[String],
        env: &[(&str, String)],
        log_dir: &Path,
    ) -> anyhow::Result<Self> {
        Self::start_with_admin(name, namespace, free_loopback_addr(), binary, args, env, log_dir)
    }

    /// Like `start_as`, with the admin endpoint at `admin_addr` (e.g. an address of the lab that
    /// a Prometheus in another namespace reaches).
    pub fn start_with_admin(
        name: &str,
        namespace: Option<&str>,
        admin_addr: SocketAddr,
        binary: &str,
        args: &[String],
        env: &[(&str, String)],
        log_dir: &Path,
    ) -> anyhow::Result<Self> {
        let mut command = match namespace {
            Some(namespace) => in_namespace(namespace, &our_binary(binary)),
            None => Command::new(our_binary(binary)),
        };
        command.args(args).arg("--admin-addr").arg(admin_addr.to_string());
        // Start from a known environment: a developer's OTEL_* or METALLB_* must not leak in.
        for (key, _) in std::env::vars() {
            if key.starts_with("OTEL_") || key.starts_with("METALLB_") || key == "KUBECONFIG" {
                command.env_remove(key);
            }
        }
        command.envs(env.iter().map(|(key, value)| (*key, value)));
        let process = ChildProcess::spawn(name, command, log_dir)?;
        Ok(Self { process, admin_addr, namespace: namespace.map(String::from) })
    }

    /// The process ID.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The admin endpoint's address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// A shell command that prints this daemon's metrics, from the root namespace: the admin
    /// endpoint listens on the loopback of the daemon's namespace, so the command enters it.
    pub fn metrics_command(&self) -> String {
        let curl =
            format!("{} -s http://{}/metrics", system_tool("curl").display(), self.admin_addr);
        match &self.namespace {
            Some(namespace) => {
                format!("{} netns exec {namespace} {curl}", system_tool("ip").display())
            }
            None => curl,
        }
    }

    /// GETs `path` from the admin endpoint: (status code, body).
    pub async fn admin_get(&self, path: &str) -> anyhow::Result<(u16, String)> {
        let url = format!("http://{}{path}", self.admin_addr);
        if let Some(namespace) = &self.namespace {
            // From inside the namespace: its loopback is not ours.
            let output = in_namespace(namespace, &system_tool("curl"))
                .args(["-s", "-m", "5", "-w", "\n%{http_code}", &url])
                .output()?;
            let text = String::from_utf8_lossy(&output.stdout).into_owned();
            let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
            let code: u16 = code.trim().parse().unwrap_or(0);
            anyhow::ensure!(code != 0, "no answer from {url} in {namespace}");
            return Ok((code, body.to_string()));
        }
        let response = reqwest::get(url).await?;
        let status = response.status().as_u16();
        Ok((status, response.text().await?))
    }

    /// Waits until /readyz answers 200; fails with the log if the process exits or time runs out.
    pub async fn wait_ready(&mut self) -> anyhow::Result<()> {
        self.wait_for("/readyz").await
    }

    /// Waits until /healthz answers 200: the process is up, though maybe not ready.
    pub async fn wait_live(&mut self) -> anyhow::Result<()> {
        self.wait_for("/healthz").await
    }

    async fn wait_for(&mut self, path: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut last = String::from("no answer yet");
        while Instant::now() < deadline {
            self.process.ensure_running()?;
            match self.admin_get(path).await {
                Ok((200, _)) => return Ok(()),
                Ok((status, body)) => last = format!("{status} {body}"),
                Err(err) => last = err.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::bail!(
            "not ready within {READY_TIMEOUT:?} (last /readyz: {last}); log:\n{}",
            self.log()
        )
    }

    /// Kills the process with SIGKILL, as a crash or an OOM kill would, and waits for it.
    pub fn kill(&mut self) -> anyhow::Result<ExitStatus> {
        const SIGKILL: i32 = 9;
        self.process.signal_and_wait(SIGKILL, Duration::from_secs(5))
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        const SIGTERM: i32 = 15;
        let status = self.process.signal_and_wait(SIGTERM, timeout);
        status.map_err(|err| anyhow::anyhow!("{err:#}; log:\n{}", self.log()))
    }

    /// The output so far.
    pub fn log(&self) -> String {
        self.process.log()
    }
}

/// A running allocator with its gRPC address, the CA its certificate chains to and a writer's
/// token (the watcher's ServiceAccount) for tests that drive it as the watcher would.
pub struct Allocator {
    /// The process.
    pub daemon: Daemon,
    grpc_addr: SocketAddr,
    ca_file: PathBuf,
    writer_token: String,
}

impl Allocator {
    /// Starts the allocator on free loopback ports with `trust`'s certificate and issuer and
    /// `env`, and waits until it is live (it becomes ready only after a first full sync).
    pub async fn start(
        trust: &Trust,
        env: &[(&str, String)],
        log_dir: &Path,
    ) -> anyhow::Result<Self> {
        Self::start_with(trust, &[], env, log_dir).await
    }

    /// Like `start`, with `extra` flags.
    pub async fn start_with(
        trust: &Trust,
        extra: &[String],
        env: &[(&str, String)],
        log_dir: &Path,
    ) -> anyhow::Result<Self> {
        Self::start_at(free_loopback_addr(), trust, extra, env, log_dir).await
    }

    /// Like `start_with`, serving gRPC at `grpc_addr` (e.g. where an allocator that was killed
    /// served, as its replacement would).
    pub async fn start_at(
        grpc_addr: SocketAddr,
        trust: &Trust,
        extra: &[String],
        env: &[(&str, String)],
        log_dir: &Path,
    ) -> anyhow::Result<Self> {
        let mut args = vec!["--grpc-addr".to_string(), grpc_addr.to_string()];
        args.extend(trust.allocator_args());
        args.extend(extra.iter().cloned());
        let mut daemon = Daemon::start("metallb-allocator", &args, env, log_dir)?;
        daemon.wait_live().await?;
        Self::ready(daemon, grpc_addr, trust).await
    }

    /// Starts the allocator inside `namespace` with `env`, serving gRPC on every address there
    /// (so that other namespaces of the lab reach it) at `port`.
    pub async fn start_in(
        namespace: &str,
        port: u16,
        trust: &Trust,
        env: &[(&str, String)],
        log_dir: &Path,
    ) -> anyhow::Result<Self> {
        let name = format!("metallb-allocator-{namespace}");
        Self::start_as(&name, namespace, port, trust, env, log_dir).await
    }

    /// Like `start_in`, logging to `log_dir/{name}.log` (replicas, restarts).
    pub async fn start_as(
        name: &str,
        namespace: &str,
        port: u16,
        trust: &Trust,
        env: &[(&str, String)],
        log_dir: &Path,
    ) -> anyhow::Result<Self> {
        let mut args = vec!["--grpc-addr".to_string(), format!("0.0.0.0:{port}")];
        args.extend(trust.allocator_args());
        let mut daemon =
            Daemon::start_as(name, Some(namespace), "metallb-allocator", &args, env, log_dir)?;
        daemon.wait_live().await?;
        Self::ready(daemon, SocketAddr::from(([127, 0, 0, 1], port)), trust).await
    }

    async fn ready(daemon: Daemon, grpc_addr: SocketAddr, trust: &Trust) -> anyhow::Result<Self> {
        let writer_token = trust.token(WATCHER_ACCOUNT, None, AUDIENCE, "2h").await?;
        Ok(Self { daemon, grpc_addr, ca_file: trust.ca_file(), writer_token })
    }

    /// "127.0.0.1:PORT", as grpcurl wants it.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// "https://127.0.0.1:PORT", as tonic clients and our binaries' flags want it.
    pub fn grpc_url(&self) -> String {
        format!("https://{}", self.grpc_addr)
    }

    /// The allocator for grpcurl, called as the watcher (the writer).
    pub fn target(&self) -> GrpcTarget {
        GrpcTarget::secure(self.grpc_addr, &self.ca_file, Some(&self.writer_token))
    }
}
