//! Real BGP routers (BIRD 2, FRR, GoBGP from Debian) started inside a lab namespace, each with
//! its configuration, sockets and pid files in a temporary directory of its own, and helpers
//! that read what they learned into one common shape.

mod bird;
mod frr;
mod gobgp;

use std::{
    net::{IpAddr, Ipv4Addr},
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use crate::{child::ChildProcess, lab::in_namespace};

/// Which implementation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouterKind {
    /// BIRD 2: installs learned routes in the namespace's kernel table.
    Bird,
    /// FRR (bgpd with zebra): installs learned routes in the kernel table.
    Frr,
    /// GoBGP: keeps learned routes in its RIB only (installing them would need zebra).
    Gobgp,
}

impl RouterKind {
    /// All three.
    pub const ALL: [RouterKind; 3] = [RouterKind::Bird, RouterKind::Frr, RouterKind::Gobgp];

    /// Whether learned routes reach the kernel table.
    pub fn installs_routes(self) -> bool {
        !matches!(self, RouterKind::Gobgp)
    }
}

/// A BGP neighbor of the router.
#[derive(Clone, Debug)]
pub struct Neighbor {
    /// Its address.
    pub address: IpAddr,
    /// Its AS.
    pub asn: u32,
    /// TCP MD5 password.
    pub password: Option<String>,
    /// Support graceful restart as a helper (keep the neighbor's routes while it restarts).
    pub graceful_restart: bool,
    /// Watch the path to the neighbor with single-hop BFD (`BFD_INTERVAL`, `BFD_MULTIPLIER`)
    /// and drop the session when it goes down.
    pub bfd: bool,
}

/// The routers' BFD transmit and receive interval (MetalLB's default).
pub const BFD_INTERVAL: Duration = Duration::from_millis(300);
/// The routers' BFD detect multiplier (MetalLB's default).
pub const BFD_MULTIPLIER: u32 = 3;

impl Neighbor {
    /// A neighbor with no password, no graceful restart and no BFD.
    pub fn new(address: IpAddr, asn: u32) -> Self {
        Self { address, asn, password: None, graceful_restart: false, bfd: false }
    }
}

/// What the router is configured with.
#[derive(Clone, Debug)]
pub struct RouterConfig {
    /// Its AS.
    pub asn: u32,
    /// Its BGP identifier.
    pub router_id: Ipv4Addr,
    /// Its neighbors.
    pub neighbors: Vec<Neighbor>,
}

/// A route as the router learned it (one entry per path).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LearnedRoute {
    /// "198.51.100.7/32".
    pub prefix: String,
    /// Next hop(s) of the path.
    pub next_hops: Vec<IpAddr>,
    /// AS_PATH, flattened.
    pub as_path: Vec<u32>,
    /// LOCAL_PREF, if received.
    pub local_pref: Option<u32>,
    /// Standard communities, "65535:65281".
    pub communities: Vec<String>,
    /// Large communities, "64512:1:2".
    pub large_communities: Vec<String>,
}

/// A running router; dropping it stops its processes and removes its files.
pub struct Router {
    /// Which implementation.
    pub kind: RouterKind,
    /// The namespace it runs in.
    pub namespace: String,
    dir: tempfile::TempDir,
    processes: Vec<ChildProcess>,
}

impl Router {
    /// Starts a router of `kind` in `namespace` and waits until it answers its control socket.
    pub fn start(kind: RouterKind, namespace: &str, config: &RouterConfig) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("mlbrs-router-").tempdir()?;
        let mut router =
            Self { kind, namespace: namespace.to_string(), dir, processes: Vec::new() };
        match kind {
            RouterKind::Bird => bird::start(&mut router, config)?,
            RouterKind::Frr => frr::start(&mut router, config)?,
            RouterKind::Gobgp => gobgp::start(&mut router, config)?,
        }
        // Until the control interface answers, failing fast with the log if a daemon exits.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            for process in &mut router.processes {
                process.ensure_running()?;
            }
            if router.established(IpAddr::V4(Ipv4Addr::UNSPECIFIED)).is_ok() {
                return Ok(router);
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "{kind:?} does not answer its control interface; logs:\n{}",
                router.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Whether the session with `neighbor` is Established.
    pub fn established(&self, neighbor: IpAddr) -> anyhow::Result<bool> {
        match self.kind {
            RouterKind::Bird => bird::established(self, neighbor),
            RouterKind::Frr => frr::established(self, neighbor),
            RouterKind::Gobgp => gobgp::established(self, neighbor),
        }
    }

    /// Whether the router's BFD session with `neighbor` is Up (BIRD and FRR; GoBGP has no BFD).
    pub fn bfd_up(&self, neighbor: IpAddr) -> anyhow::Result<bool> {
        match self.kind {
            RouterKind::Bird => bird::bfd_up(self, neighbor),
            RouterKind::Frr => frr::bfd_up(self, neighbor),
            RouterKind::Gobgp => anyhow::bail!("GoBGP has no BFD"),
        }
    }

    /// Every path the router learned, both families.
    pub fn routes(&self) -> anyhow::Result<Vec<LearnedRoute>> {
        match self.kind {
            RouterKind::Bird => bird::routes(self),
            RouterKind::Frr => frr::routes(self),
            RouterKind::Gobgp => gobgp::routes(self),
        }
    }

    /// Number of prefixes learned (cheaper than `routes` for large tables).
    pub fn prefix_count(&self) -> anyhow::Result<usize> {
        match self.kind {
            RouterKind::Bird => bird::prefix_count(self),
            RouterKind::Frr => frr::prefix_count(self),
            RouterKind::Gobgp => gobgp::prefix_count(self),
        }
    }

    /// Polls `check` every 100 ms until it holds; fails after `timeout` with the router's log.
    pub fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&Self) -> anyhow::Result<bool>,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        while Instant::now() < deadline {
            match check(self) {
                Ok(true) => return Ok(()),
                Ok(false) => last.clear(),
                Err(err) => last = err.to_string(),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        anyhow::bail!(
            "{:?} in {}: not {what} within {timeout:?} ({last}); it says:\n{}\nlogs:\n{}",
            self.kind,
            self.namespace,
            self.describe(),
            self.logs()
        )
    }

    /// What the router says of its sessions and routes, for failure messages.
    pub fn describe(&self) -> String {
        let shown = match self.kind {
            RouterKind::Bird => bird::describe(self),
            RouterKind::Frr => frr::describe(self),
            RouterKind::Gobgp => gobgp::describe(self),
        };
        shown.unwrap_or_else(|err| format!("(cannot ask the router: {err})"))
    }

    /// The router's output so far.
    pub fn logs(&self) -> String {
        self.processes
            .iter()
            .map(|p| format!("--- {}\n{}", p.log_path().display(), p.log()))
            .collect()
    }

    /// Kills the router's daemons (SIGKILL, as a crash would): the kernel closes their
    /// sockets, so every session drops at once. The handle stays, for its logs.
    pub fn stop(&mut self) {
        self.kill_processes();
    }

    /// Kills the daemons (each `ChildProcess` does on drop) and removes what they keep outside
    /// our directory: FRR a scratch directory per process.
    fn kill_processes(&mut self) {
        let pids = self.pids();
        self.processes.clear();
        if self.kind == RouterKind::Frr {
            for pid in pids {
                for daemon in ["zebra", "bgpd", "bfdd"] {
                    let _ = std::fs::remove_dir_all(format!("/var/tmp/frr/{daemon}.{pid}"));
                }
            }
        }
    }

    /// The router's working directory (configuration, logs, control socket).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Process IDs of the router's daemons.
    fn pids(&self) -> Vec<u32> {
        self.processes.iter().map(ChildProcess::pid).collect()
    }

    fn spawn(&mut self, name: &str, program: &Path, args: &[&str]) -> anyhow::Result<()> {
        let mut command = in_namespace(&self.namespace, program);
        command.args(args);
        let process = ChildProcess::spawn(name, command, self.dir.path())?;
        self.processes.push(process);
        Ok(())
    }

    /// Runs a control command inside the router's namespace; returns stdout.
    fn control(&self, program: &Path, args: &[&str]) -> anyhow::Result<String> {
        let output = in_namespace(&self.namespace, program).args(args).output()?;
        anyhow::ensure!(
            output.status.success(),
            "{} {args:?}: {}",
            program.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        self.kill_processes();
    }
}

/// Runs `command`, failing with its stderr.
fn output_of(command: &mut Command) -> anyhow::Result<String> {
    let output = command.output()?;
    anyhow::ensure!(
        output.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
