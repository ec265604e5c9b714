//! Network namespaces for tests: a [`Lab`] is a "router" namespace with a Linux bridge that
//! "node" namespaces join over veth pairs (one L2 segment, so the router can spread traffic over
//! several nodes), plus optional "client" namespaces on links of their own to the router.
//! Commands run inside a namespace with `ip netns exec`; the namespace's kernel routing table is
//! read with `ip -j route`.
//!
//! Namespaces are named `mlbrs-<pid>-<lab>-<role>` so that parallel tests (threads of one
//! process, or several test processes) never collide and `tests/scripts/remove-stale-namespaces.sh`
//! can remove what a killed run left behind. Dropping a [`Netns`] (the last `Arc` of it) kills
//! whatever still runs inside and deletes it, also while a failing test unwinds. Processes started
//! with [`Netns::spawn`] hold the namespace, so they always stop before it is deleted.
//!
//! Addresses are from documentation ranges and every lab uses the same ones: the namespaces
//! isolate labs from each other and from the host.
//! - node segment (bridge `br0` in the router namespace): 192.0.2.0/24 and 2001:db8::/64; the
//!   router is .1 / ::1, node `i` is 192.0.2.(11+i) and 2001:db8::(11+i) (the same digits, read
//!   as hex, so 192.0.2.12 pairs with 2001:db8::12); nodes route everything else via the router.
//! - client `k`: 198.51.100.(16k)/28 and 2001:db8:c<k>::/64 on veth `c<k>` of the router; the
//!   router is the first address, the client the second, and the client's default route.
//! - 203.0.113.0/24 and 2001:db8:ff00::/40 are left for what tests announce.

use std::{
    ffi::OsStr,
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    ops::{Deref, DerefMut},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    str::FromStr,
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicU32, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::{child::ChildProcess, tools::system_tool};

/// How long one shell-out (`ip`, `birdc`, `vtysh`, `gobgp`, ...) may take before it is killed.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(15);

/// How often [`wait_until`] checks again.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// The most clients a lab can have: their /28 subnets fill 198.51.100.0/24.
pub const MAX_CLIENTS: usize = 16;

/// The most nodes a lab can have: 192.0.2.11 to 192.0.2.254.
pub const MAX_NODES: usize = 244;

/// IP version of an address, prefix, routing table or BGP address family (unicast).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// IPv4 (BGP: AFI 1, SAFI 1).
    Ipv4,
    /// IPv6 (BGP: AFI 2, SAFI 1).
    Ipv6,
}

impl Family {
    /// The family an address belongs to.
    pub fn of(addr: IpAddr) -> Self {
        match addr {
            IpAddr::V4(_) => Self::Ipv4,
            IpAddr::V6(_) => Self::Ipv6,
        }
    }

    /// Bits in an address of this family.
    pub fn max_len(self) -> u8 {
        match self {
            Self::Ipv4 => 32,
            Self::Ipv6 => 128,
        }
    }
}

/// An IP prefix as routers print it ("203.0.113.5/32"); a bare address is a host prefix.
/// Kept as written (host bits are not cleared): routes never have any.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Prefix {
    addr: IpAddr,
    len: u8,
}

impl Prefix {
    /// `addr/len`; fails if `len` is longer than the address.
    pub fn new(addr: IpAddr, len: u8) -> anyhow::Result<Self> {
        if len > Family::of(addr).max_len() {
            bail!("prefix length {len} is too long for {addr}");
        }
        Ok(Self { addr, len })
    }

    /// The /32 or /128 holding just `addr`.
    pub fn host(addr: IpAddr) -> Self {
        Self { addr, len: Family::of(addr).max_len() }
    }

    /// The default route of `family` (0.0.0.0/0 or ::/0).
    pub fn default_route(family: Family) -> Self {
        let addr = match family {
            Family::Ipv4 => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            Family::Ipv6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        Self { addr, len: 0 }
    }

    /// The address part.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The length part.
    pub fn len(&self) -> u8 {
        self.len
    }

    /// Whether this is a default route (length 0).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// IPv4 or IPv6.
    pub fn family(&self) -> Family {
        Family::of(self.addr)
    }
}

impl FromStr for Prefix {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> anyhow::Result<Self> {
        match text.split_once('/') {
            Some((addr, len)) => {
                let addr: IpAddr = addr.parse().with_context(|| format!("prefix {text:?}"))?;
                let len: u8 = len.parse().with_context(|| format!("prefix {text:?}"))?;
                Self::new(addr, len)
            }
            None => Ok(Self::host(text.parse().with_context(|| format!("prefix {text:?}"))?)),
        }
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl From<IpAddr> for Prefix {
    fn from(addr: IpAddr) -> Self {
        Self::host(addr)
    }
}

/// What one check of [`wait_until`] found.
pub enum Attempt<T> {
    /// The condition holds; this is the result.
    Done(T),
    /// Not yet; what was seen instead (reported if time runs out).
    NotYet(String),
}

/// Checks every [`POLL_INTERVAL`] until `check` is done, at most `timeout` long and a bounded
/// number of times. An error from `check` ends the wait at once (use [`Attempt::NotYet`] for what
/// may still change). On timeout the error names `what` and the last thing seen.
pub fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> anyhow::Result<Attempt<T>>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + timeout;
    // The count bound guards against a clock that does not advance as expected.
    let max_attempts = timeout.as_millis() / POLL_INTERVAL.as_millis() + 2;
    let mut last = String::from("nothing yet");
    for _ in 0..max_attempts {
        match check()? {
            Attempt::Done(value) => return Ok(value),
            Attempt::NotYet(seen) => last = seen,
        }
        if Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(POLL_INTERVAL);
    }
    bail!("timed out after {timeout:?} waiting for {what}; last seen: {last}")
}

/// Runs `command` to completion with its output captured; kills it (with its process group) if
/// it takes longer than `timeout`, so a hung CLI cannot hang the test.
pub fn run_with_timeout(mut command: Command, timeout: Duration) -> anyhow::Result<Output> {
    let description = describe(&command);
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0);
    let child = command.spawn().with_context(|| format!("starting {description}"))?;
    let pid = child.id();
    let (done, result) = mpsc::channel();
    // wait_with_output reads both pipes, so a large dump cannot fill one and block the child.
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    match result.recv_timeout(timeout) {
        Ok(output) => output.with_context(|| format!("waiting for {description}")),
        Err(_) => {
            kill_group(pid);
            bail!("{description} did not finish within {timeout:?}; killed it")
        }
    }
}

/// Runs `command` (bounded by [`COMMAND_TIMEOUT`]) and returns its stdout; fails with its stderr
/// unless it exits successfully.
pub fn run_checked(command: Command) -> anyhow::Result<String> {
    let description = describe(&command);
    let output = run_with_timeout(command, COMMAND_TIMEOUT)?;
    if !output.status.success() {
        bail!(
            "{description} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim(),
            String::from_utf8_lossy(&output.stdout).trim()
        );
    }
    String::from_utf8(output.stdout).with_context(|| format!("output of {description}"))
}

fn describe(command: &Command) -> String {
    let mut words = vec![command.get_program().to_string_lossy().into_owned()];
    words.extend(command.get_args().map(|arg| arg.to_string_lossy().into_owned()));
    format!("`{}`", words.join(" "))
}

fn kill_group(pid: u32) {
    // procps `kill` keeps the harness free of unsafe libc calls (as child.rs does).
    let _ = Command::new("kill")
        .args(["-9", "--", &format!("-{pid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

fn ip_tool() -> &'static Path {
    static IP: OnceLock<PathBuf> = OnceLock::new();
    IP.get_or_init(|| system_tool("ip"))
}

/// Serializes `ip netns add/delete` within this process: the first `add` turns /run/netns into a
/// shared bind mount, and two doing that at once stack mounts.
static NETNS_LOCK: Mutex<()> = Mutex::new(());

/// A network namespace, deleted (after killing what runs in it) when the last `Arc` drops.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates namespace `name` with loopback up and IPv6 duplicate address detection off (so
    /// addresses are usable at once).
    pub fn create(name: &str) -> anyhow::Result<Arc<Self>> {
        ensure_root()?;
        let add = || {
            let _guard = NETNS_LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let mut add = Command::new(ip_tool());
            add.args(["netns", "add", name]);
            run_checked(add)
        };
        if let Err(err) = add() {
            if !format!("{err:#}").contains("File exists") {
                return Err(err.context(format!("creating network namespace {name}")));
            }
            // Names carry our pid, so this one is left from a killed run by an earlier process
            // with the same pid: remove it (with what runs inside) and try again.
            drop(Self { name: name.to_string() });
            add().with_context(|| format!("creating network namespace {name}"))?;
        }
        // From here on, dropping `netns` deletes it, also if the setup below fails.
        let netns = Arc::new(Self { name: name.to_string() });
        netns.ip("link set lo up")?;
        netns.sysctl(&[
            ("net.ipv6.conf.all.accept_dad", "0"),
            ("net.ipv6.conf.default.accept_dad", "0"),
        ])?;
        Ok(netns)
    }

    /// The namespace's name (for `ip -n`, `ip netns exec`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A command that runs `program` inside the namespace (`ip netns exec <name> <program>`);
    /// add arguments to it as usual. `ip netns exec` execs the program, so the process ID is
    /// the program's.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut command = Command::new(ip_tool());
        command.args(["netns", "exec", &self.name]).arg(program);
        command
    }

    /// Runs `program args` inside the namespace (bounded by [`COMMAND_TIMEOUT`]); its stdout.
    pub fn run<S: AsRef<OsStr>>(
        &self,
        program: impl AsRef<OsStr>,
        args: &[S],
    ) -> anyhow::Result<String> {
        let mut command = self.command(program);
        command.args(args);
        run_checked(command)
    }

    /// Runs `ip -n <name> <args>`, `args` split at whitespace (no `ip` argument has any), e.g.
    /// `netns.ip("-6 route show")`; its stdout.
    pub fn ip(&self, args: &str) -> anyhow::Result<String> {
        let mut command = Command::new(ip_tool());
        command.args(["-n", &self.name]).args(args.split_whitespace());
        run_checked(command)
    }

    /// Sets sysctls of the namespace (`net.*` keys are per namespace).
    pub fn sysctl(&self, settings: &[(&str, &str)]) -> anyhow::Result<()> {
        let mut args = vec!["-q".to_string(), "-w".to_string()];
        args.extend(settings.iter().map(|(key, value)| format!("{key}={value}")));
        self.run(system_tool("sysctl"), &args).map(drop)
    }

    /// Starts `command` inside the namespace as a [`ChildProcess`] logging to
    /// `<log_dir>/<name>.log`. Program, arguments, environment changes and working directory
    /// are carried over (an `env_clear` is not). The process keeps the namespace alive and is
    /// killed before it is deleted.
    pub fn spawn(
        self: &Arc<Self>,
        name: &str,
        command: Command,
        log_dir: &Path,
    ) -> anyhow::Result<NetnsProcess> {
        let mut inside = self.command(command.get_program());
        inside.args(command.get_args());
        for (key, value) in command.get_envs() {
            match value {
                Some(value) => inside.env(key, value),
                None => inside.env_remove(key),
            };
        }
        if let Some(dir) = command.get_current_dir() {
            inside.current_dir(dir);
        }
        let process = ChildProcess::spawn(name, inside, log_dir)?;
        Ok(NetnsProcess { process, netns: Arc::clone(self) })
    }

    /// The main routing table of `family` (`ip -j route show`), ECMP routes with all their
    /// next hops.
    pub fn kernel_routes(&self, family: Family) -> anyhow::Result<Vec<KernelRoute>> {
        let version = match family {
            Family::Ipv4 => "-4",
            Family::Ipv6 => "-6",
        };
        let json = self.ip(&format!("-j {version} route show"))?;
        parse_ip_routes(&json, family)
            .with_context(|| format!("reading routes of namespace {}", self.name))
    }

    /// The route for exactly `prefix` in the main table, if there is one.
    pub fn kernel_route(&self, prefix: Prefix) -> anyhow::Result<Option<KernelRoute>> {
        Ok(self.kernel_routes(prefix.family())?.into_iter().find(|route| route.dst == prefix))
    }

    /// Waits (at most `timeout`) until the kernel table has a route for `prefix` for which
    /// `accept` holds; returns it.
    pub fn wait_kernel_route(
        &self,
        prefix: Prefix,
        timeout: Duration,
        accept: impl Fn(&KernelRoute) -> bool,
    ) -> anyhow::Result<KernelRoute> {
        let what = format!("a kernel route for {prefix} in {}", self.name);
        wait_until(&what, timeout, || {
            Ok(match self.kernel_route(prefix)? {
                Some(route) if accept(&route) => Attempt::Done(route),
                Some(route) => Attempt::NotYet(format!("{route:?}")),
                None => Attempt::NotYet(format!("no route for {prefix}")),
            })
        })
    }

    /// Waits (at most `timeout`) until the kernel table has no route for `prefix`.
    pub fn wait_kernel_route_gone(&self, prefix: Prefix, timeout: Duration) -> anyhow::Result<()> {
        let what = format!("the kernel route for {prefix} in {} to go", self.name);
        wait_until(&what, timeout, || {
            Ok(match self.kernel_route(prefix)? {
                Some(route) => Attempt::NotYet(format!("{route:?}")),
                None => Attempt::Done(()),
            })
        })
    }

    /// The link-local IPv6 address of interface `dev` (routers may use it as the next hop of
    /// IPv6 routes instead of the global address).
    pub fn link_local_ipv6(&self, dev: &str) -> anyhow::Result<Ipv6Addr> {
        let json = self.ip(&format!("-j -6 addr show dev {dev} scope link"))?;
        let links: Vec<IpAddrShow> = serde_json::from_str(&json)?;
        links
            .iter()
            .flat_map(|link| &link.addr_info)
            .find_map(|info| info.local.parse::<Ipv6Addr>().ok())
            .with_context(|| format!("{dev} in {} has no link-local IPv6 address", self.name))
    }

    fn pids(&self) -> Vec<String> {
        let mut command = Command::new(ip_tool());
        command.args(["netns", "pids", &self.name]);
        run_checked(command)
            .map(|out| out.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // `ip netns delete` only unmounts the name: a process left inside (a daemon's forked
        // helper, something a test leaked) would keep the namespace and its addresses alive.
        // Bounded: a process that survives SIGKILL for 2.5 s is stuck in the kernel anyway.
        for _ in 0..50 {
            let pids = self.pids();
            if pids.is_empty() {
                break;
            }
            for pid in pids {
                let _ = Command::new("kill")
                    .args(["-9", &pid])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _guard = NETNS_LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut delete = Command::new(ip_tool());
        delete.args(["netns", "delete", &self.name]);
        if let Err(err) = run_checked(delete) {
            eprintln!("warning: could not delete network namespace {}: {err:#}", self.name);
        }
    }
}

/// A process running inside a namespace; it holds the namespace, and is killed (by
/// [`ChildProcess`]'s drop) before the namespace goes. Derefs to the [`ChildProcess`].
pub struct NetnsProcess {
    // Field order is drop order: the process goes first.
    process: ChildProcess,
    netns: Arc<Netns>,
}

impl NetnsProcess {
    /// The namespace it runs in.
    pub fn netns(&self) -> &Arc<Netns> {
        &self.netns
    }
}

impl Deref for NetnsProcess {
    type Target = ChildProcess;

    fn deref(&self) -> &ChildProcess {
        &self.process
    }
}

impl DerefMut for NetnsProcess {
    fn deref_mut(&mut self) -> &mut ChildProcess {
        &mut self.process
    }
}

/// A route of a kernel routing table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelRoute {
    /// Destination ("default" becomes 0.0.0.0/0 or ::/0).
    pub dst: Prefix,
    /// Who installed it: "kernel", "static", "boot", "bird", "bgp" (FRR), ...
    pub protocol: String,
    /// Route metric (priority), if the kernel reports one.
    pub metric: Option<u32>,
    /// Next hops: one for a plain route, several for an ECMP (multipath) route.
    pub next_hops: Vec<KernelNextHop>,
}

impl KernelRoute {
    /// The gateways of all next hops (connected routes have none).
    pub fn gateways(&self) -> Vec<IpAddr> {
        self.next_hops.iter().filter_map(|hop| hop.gateway).collect()
    }
}

/// One next hop of a kernel route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelNextHop {
    /// The gateway; `None` for a directly connected destination.
    pub gateway: Option<IpAddr>,
    /// Outgoing interface.
    pub dev: Option<String>,
    /// ECMP weight (multipath routes only).
    pub weight: Option<u32>,
}

#[derive(Deserialize)]
struct IpRoute {
    dst: String,
    gateway: Option<String>,
    dev: Option<String>,
    protocol: Option<String>,
    metric: Option<u32>,
    #[serde(default)]
    nexthops: Vec<IpNextHop>,
}

#[derive(Deserialize)]
struct IpNextHop {
    gateway: Option<String>,
    dev: Option<String>,
    weight: Option<u32>,
}

#[derive(Deserialize)]
struct IpAddrShow {
    #[serde(default)]
    addr_info: Vec<IpAddrInfo>,
}

#[derive(Deserialize)]
struct IpAddrInfo {
    local: String,
}

/// Parses `ip -j route show` output of `family`.
pub fn parse_ip_routes(json: &str, family: Family) -> anyhow::Result<Vec<KernelRoute>> {
    // `ip -j` prints nothing at all for an empty table.
    if json.trim().is_empty() {
        return Ok(Vec::new());
    }
    let routes: Vec<IpRoute> = serde_json::from_str(json).context("parsing `ip -j route`")?;
    routes
        .into_iter()
        .map(|route| {
            let dst = match route.dst.as_str() {
                "default" => Prefix::default_route(family),
                dst => dst.parse()?,
            };
            let parse_gateway = |gateway: Option<String>| -> anyhow::Result<Option<IpAddr>> {
                gateway.map(|gateway| gateway.parse().context("route gateway")).transpose()
            };
            let next_hops = if route.nexthops.is_empty() {
                vec![KernelNextHop {
                    gateway: parse_gateway(route.gateway)?,
                    dev: route.dev,
                    weight: None,
                }]
            } else {
                route
                    .nexthops
                    .into_iter()
                    .map(|hop| {
                        Ok(KernelNextHop {
                            gateway: parse_gateway(hop.gateway)?,
                            dev: hop.dev,
                            weight: hop.weight,
                        })
                    })
                    .collect::<anyhow::Result<_>>()?
            };
            Ok(KernelRoute {
                dst,
                protocol: route.protocol.unwrap_or_default(),
                metric: route.metric,
                next_hops,
            })
        })
        .collect()
}

fn ensure_root() -> anyhow::Result<()> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let euid = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .unwrap_or_default();
    if euid != "0" {
        bail!("network namespace tests need root (effective uid is {euid})");
    }
    Ok(())
}

static NEXT_LAB: AtomicU32 = AtomicU32::new(0);

/// A node namespace on the lab's segment.
#[derive(Clone, Debug)]
pub struct LabNode {
    /// Position in [`Lab::nodes`].
    pub index: usize,
    /// The namespace; its interface on the segment is `eth0`.
    pub netns: Arc<Netns>,
    /// Its IPv4 address on the segment (192.0.2.11, .12, ...).
    pub ipv4: Ipv4Addr,
    /// Its IPv6 address on the segment (2001:db8::11, ::12, ...).
    pub ipv6: Ipv6Addr,
}

/// A client namespace on a link of its own to the router.
#[derive(Clone, Debug)]
pub struct LabClient {
    /// Position in [`Lab::clients`].
    pub index: usize,
    /// The namespace; its interface to the router is `eth0`.
    pub netns: Arc<Netns>,
    /// The client's IPv4 address.
    pub ipv4: Ipv4Addr,
    /// The client's IPv6 address.
    pub ipv6: Ipv6Addr,
    /// The router's IPv4 address on this link (the client's default gateway).
    pub router_ipv4: Ipv4Addr,
    /// The router's IPv6 address on this link (the client's default gateway).
    pub router_ipv6: Ipv6Addr,
    /// The router's interface to this client (`c<index>`).
    pub router_dev: String,
}

/// A router namespace with a bridge, node namespaces on it and optional client namespaces. See
/// the module documentation for the address plan. Dropping the lab drops its namespaces; one
/// that a router or process still holds goes when that does.
pub struct Lab {
    id: String,
    // Nodes and clients first: deleting them also removes the veth peers in the router.
    nodes: Vec<LabNode>,
    clients: Vec<LabClient>,
    router: Arc<Netns>,
}

impl Lab {
    /// The router's IPv4 address on the node segment.
    pub const ROUTER_IPV4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    /// The router's IPv6 address on the node segment.
    pub const ROUTER_IPV6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
    /// The node segment's bridge in the router namespace.
    pub const BRIDGE: &str = "br0";

    /// A router namespace (bridge `br0` with 192.0.2.1/24 and 2001:db8::1/64, IP forwarding
    /// on) and `nodes` node namespaces joined to the bridge.
    pub fn new(nodes: usize) -> anyhow::Result<Self> {
        let id =
            format!("mlbrs-{}-{}", std::process::id(), NEXT_LAB.fetch_add(1, Ordering::Relaxed));
        let router = Netns::create(&format!("{id}-r"))?;
        router.sysctl(&[
            ("net.ipv4.ip_forward", "1"),
            ("net.ipv6.conf.all.forwarding", "1"),
            ("net.ipv6.conf.default.forwarding", "1"),
        ])?;
        // A fixed MAC: a bridge otherwise takes the lowest of its ports' and changes it as nodes
        // join, which leaves stale neighbor entries in the nodes that joined earlier.
        let bridge = Self::BRIDGE;
        router.ip(&format!(
            "link add {bridge} address 02:00:00:00:00:01 type bridge forward_delay 0 mcast_snooping 0"
        ))?;
        router.ip(&format!("addr add {}/24 dev {bridge}", Self::ROUTER_IPV4))?;
        router.ip(&format!("addr add {}/64 dev {bridge} nodad", Self::ROUTER_IPV6))?;
        router.ip(&format!("link set {bridge} up"))?;
        let mut lab = Self { id, nodes: Vec::new(), clients: Vec::new(), router };
        for _ in 0..nodes {
            lab.add_node()?;
        }
        Ok(lab)
    }

    /// `mlbrs-<pid>-<n>`: the prefix of every namespace of this lab.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The router namespace.
    pub fn router(&self) -> &Arc<Netns> {
        &self.router
    }

    /// The nodes, in the order they were added.
    pub fn nodes(&self) -> &[LabNode] {
        &self.nodes
    }

    /// Node `index`; panics if there is no such node.
    pub fn node(&self, index: usize) -> &LabNode {
        &self.nodes[index]
    }

    /// The clients, in the order they were added.
    pub fn clients(&self) -> &[LabClient] {
        &self.clients
    }

    /// Adds a node namespace joined to the bridge (`n<i>` in the router, `eth0` in the node).
    pub fn add_node(&mut self) -> anyhow::Result<&LabNode> {
        let index = self.nodes.len();
        if index >= MAX_NODES {
            bail!("a lab has room for {MAX_NODES} nodes");
        }
        let host = 11 + index as u16;
        let ipv4 = Ipv4Addr::new(192, 0, 2, host as u8);
        // The decimal digits read as hex: 192.0.2.12 pairs with 2001:db8::12.
        let ipv6_host = u16::from_str_radix(&host.to_string(), 16)?;
        let ipv6 = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, ipv6_host);
        let netns = Netns::create(&format!("{}-n{index}", self.id))?;
        let port = format!("n{index}");
        self.router
            .ip(&format!("link add {port} type veth peer name eth0 netns {}", netns.name()))?;
        // Bridge ports carry no addresses; a link-local one would add a second fe80::/64 route
        // beside the bridge's.
        self.router.ip(&format!("link set {port} addrgenmode none"))?;
        self.router.ip(&format!("link set {port} master {} up", Self::BRIDGE))?;
        netns.ip(&format!("addr add {ipv4}/24 dev eth0"))?;
        netns.ip(&format!("addr add {ipv6}/64 dev eth0 nodad"))?;
        netns.ip("link set eth0 up")?;
        netns.ip(&format!("route add default via {}", Self::ROUTER_IPV4))?;
        netns.ip(&format!("-6 route add default via {}", Self::ROUTER_IPV6))?;
        self.nodes.push(LabNode { index, netns, ipv4, ipv6 });
        Ok(&self.nodes[index])
    }

    /// Adds a client namespace on a veth link of its own to the router (`c<k>` in the router,
    /// `eth0` in the client), with its default route via the router.
    pub fn add_client(&mut self) -> anyhow::Result<&LabClient> {
        let index = self.clients.len();
        if index >= MAX_CLIENTS {
            bail!("a lab has room for {MAX_CLIENTS} clients");
        }
        let base = 16 * index as u8;
        let router_ipv4 = Ipv4Addr::new(198, 51, 100, base + 1);
        let ipv4 = Ipv4Addr::new(198, 51, 100, base + 2);
        let subnet6 = 0xc0 + index as u16;
        let router_ipv6 = Ipv6Addr::new(0x2001, 0xdb8, subnet6, 0, 0, 0, 0, 1);
        let ipv6 = Ipv6Addr::new(0x2001, 0xdb8, subnet6, 0, 0, 0, 0, 2);
        let netns = Netns::create(&format!("{}-c{index}", self.id))?;
        let router_dev = format!("c{index}");
        let link = format!("link add {router_dev} type veth peer name eth0 netns {}", netns.name());
        self.router.ip(&link)?;
        self.router.ip(&format!("addr add {router_ipv4}/28 dev {router_dev}"))?;
        self.router.ip(&format!("addr add {router_ipv6}/64 dev {router_dev} nodad"))?;
        self.router.ip(&format!("link set {router_dev} up"))?;
        netns.ip(&format!("addr add {ipv4}/28 dev eth0"))?;
        netns.ip(&format!("addr add {ipv6}/64 dev eth0 nodad"))?;
        netns.ip("link set eth0 up")?;
        netns.ip(&format!("route add default via {router_ipv4}"))?;
        netns.ip(&format!("-6 route add default via {router_ipv6}"))?;
        self.clients.push(LabClient {
            index,
            netns,
            ipv4,
            ipv6,
            router_ipv4,
            router_ipv6,
            router_dev,
        });
        Ok(&self.clients[index])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_parse_and_print() {
        let host: Prefix = "203.0.113.5".parse().unwrap();
        assert_eq!(host.to_string(), "203.0.113.5/32");
        let v6: Prefix = "2001:db8:ff::5/128".parse().unwrap();
        assert_eq!(v6, Prefix::host("2001:db8:ff::5".parse().unwrap()));
        assert_eq!(v6.family(), Family::Ipv6);
        assert!("192.0.2.0/33".parse::<Prefix>().is_err());
        assert!("nonsense/8".parse::<Prefix>().is_err());
    }

    #[test]
    fn ip_route_json_with_multipath() {
        // Captured from `ip -j route show` in a router namespace with BIRD merging two paths.
        let json = r#"[{"dst":"192.0.2.0/24","dev":"br0","protocol":"kernel","scope":"link","prefsrc":"192.0.2.1","flags":[]},{"dst":"203.0.113.5","protocol":"bird","metric":32,"flags":[],"nexthops":[{"gateway":"192.0.2.11","dev":"br0","weight":1,"flags":[]},{"gateway":"192.0.2.12","dev":"br0","weight":1,"flags":[]}]},{"dst":"default","gateway":"192.0.2.1","dev":"eth0","flags":[]}]"#;
        let routes = parse_ip_routes(json, Family::Ipv4).unwrap();
        assert_eq!(routes.len(), 3);
        assert_eq!(routes[0].dst, "192.0.2.0/24".parse().unwrap());
        assert_eq!(routes[0].gateways(), Vec::<IpAddr>::new());
        assert_eq!(routes[1].dst, "203.0.113.5/32".parse().unwrap());
        assert_eq!(routes[1].protocol, "bird");
        assert_eq!(routes[1].metric, Some(32));
        assert_eq!(
            routes[1].gateways(),
            vec!["192.0.2.11".parse::<IpAddr>().unwrap(), "192.0.2.12".parse().unwrap()]
        );
        assert_eq!(routes[2].dst, Prefix::default_route(Family::Ipv4));
        assert!(parse_ip_routes("", Family::Ipv6).unwrap().is_empty());
    }

    #[test]
    fn ip_route_json_ipv6() {
        // Captured from FRR: `nhid` next-hop objects are also shown with their gateway.
        let json = r#"[{"dst":"2001:db8:ff::5","nhid":12,"gateway":"fe80::1c2d:3eff:fe4f:5061","dev":"br0","protocol":"bgp","metric":20,"flags":[],"pref":"medium"}]"#;
        let routes = parse_ip_routes(json, Family::Ipv6).unwrap();
        assert_eq!(routes[0].dst.len(), 128);
        assert_eq!(routes[0].next_hops[0].dev.as_deref(), Some("br0"));
    }
}
