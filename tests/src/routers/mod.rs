//! Real BGP routers for tests: BIRD 2, FRR and GoBGP (from Debian), each started inside a
//! network namespace from one [`RouterConfig`], with its configuration, control sockets, pid
//! files and logs in a temporary directory of its own (nothing in /etc or /run, so parallel
//! tests cannot collide). What a router learned is read back into one shape, [`BgpPath`],
//! whichever router it is.
//!
//! Every router here behaves the same way: it accepts every route its neighbors send, installs
//! the best ones in its namespace's kernel table (BIRD and FRR; GoBGP cannot without zebra) with
//! ECMP over equal paths, and advertises only the prefixes in [`RouterConfig::originate`], never
//! what it learned, so a test sees one hop at a time. One router per namespace: they all listen
//! on port 179, and GoBGP's API is on 127.0.0.1:50051 inside the namespace.
//!
//! All calls block (shell-outs with [`std::process`]); from async tests, call them through
//! `tokio::task::spawn_blocking` or from a plain `#[test]`.

pub mod bird;
pub mod frr;
pub mod gobgp;

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr},
    path::Path,
    str::FromStr,
    sync::Arc,
    time::Duration,
};

use anyhow::{Context, bail};

use crate::netns::{Attempt, Netns, wait_until};
pub use crate::netns::{Family, Prefix};

pub use self::{bird::Bird, frr::Frr, gobgp::GoBgp};

/// Which router implementation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RouterKind {
    /// BIRD 2 (`bird`, `birdc`).
    Bird,
    /// FRR (`zebra` + `bgpd`, `vtysh`).
    Frr,
    /// GoBGP (`gobgpd`, `gobgp`).
    GoBgp,
}

impl RouterKind {
    /// All of them, for tests that run against each.
    pub const ALL: [RouterKind; 3] = [RouterKind::Bird, RouterKind::Frr, RouterKind::GoBgp];

    /// Whether learned routes reach the namespace's kernel routing table.
    pub fn installs_routes(self) -> bool {
        !matches!(self, RouterKind::GoBgp)
    }
}

impl fmt::Display for RouterKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RouterKind::Bird => "BIRD",
            RouterKind::Frr => "FRR",
            RouterKind::GoBgp => "GoBGP",
        })
    }
}

/// What a router is told: who it is, whom it peers with, and what it announces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouterConfig {
    /// Its AS number (2-octet or 4-octet).
    pub local_as: u32,
    /// Its BGP identifier.
    pub router_id: Ipv4Addr,
    /// Its neighbors.
    pub neighbors: Vec<Neighbor>,
    /// Prefixes it originates and advertises to every neighbor of the prefix's family.
    pub originate: Vec<Originate>,
}

impl RouterConfig {
    /// A router in `local_as` with identifier `router_id`, no neighbors yet.
    pub fn new(local_as: u32, router_id: Ipv4Addr) -> Self {
        Self { local_as, router_id, neighbors: Vec::new(), originate: Vec::new() }
    }

    /// Adds a neighbor.
    pub fn neighbor(mut self, neighbor: Neighbor) -> Self {
        self.neighbors.push(neighbor);
        self
    }

    /// Adds a prefix to originate.
    pub fn originate(mut self, originate: Originate) -> Self {
        self.originate.push(originate);
        self
    }

    /// The neighbor with `address`, and its position.
    pub fn find_neighbor(&self, address: IpAddr) -> anyhow::Result<(usize, &Neighbor)> {
        self.neighbors
            .iter()
            .enumerate()
            .find(|(_, neighbor)| neighbor.address == address)
            .with_context(|| format!("{address} is not a configured neighbor"))
    }

    /// The prefixes to originate of `family`.
    pub fn originated(&self, family: Family) -> impl Iterator<Item = &Originate> {
        self.originate.iter().filter(move |originate| originate.prefix.family() == family)
    }

    fn validate(&self) -> anyhow::Result<()> {
        for neighbor in &self.neighbors {
            if let Some(password) = &neighbor.password {
                // Each router quotes passwords differently; keeping to plain characters keeps the
                // generated configurations simple and correct.
                if password.is_empty()
                    || !password.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                {
                    bail!(
                        "neighbor {}: use letters, digits, '-', '_', '.' in passwords",
                        neighbor.address
                    );
                }
            }
            if let Some(hold) = neighbor.hold_time
                && (hold == 1 || hold == 2)
            {
                bail!(
                    "neighbor {}: hold time must be 0 or at least 3 (RFC 4271)",
                    neighbor.address
                );
            }
            if neighbor.families.is_empty() {
                bail!("neighbor {} has no address family", neighbor.address);
            }
        }
        Ok(())
    }
}

/// A BGP neighbor of the router.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Neighbor {
    /// The neighbor's address (the session is single-hop, from the router's own address on the
    /// same subnet).
    pub address: IpAddr,
    /// The neighbor's AS; equal to the local AS for iBGP.
    pub remote_as: u32,
    /// Wait for the neighbor to connect instead of connecting too.
    pub passive: bool,
    /// TCP MD5 signature password (RFC 2385).
    pub password: Option<String>,
    /// Advertise the graceful restart capability (RFC 4724).
    pub graceful_restart: bool,
    /// Hold time to propose in seconds (the router's default when `None`).
    pub hold_time: Option<u16>,
    /// The neighbor's TCP port (179 when `None`).
    pub port: Option<u16>,
    /// Address families (unicast) to negotiate; by default the family of `address`.
    pub families: Vec<Family>,
}

impl Neighbor {
    /// An active neighbor at `address` in `remote_as`, negotiating the family of its address.
    pub fn new(address: IpAddr, remote_as: u32) -> Self {
        Self {
            address,
            remote_as,
            passive: false,
            password: None,
            graceful_restart: false,
            hold_time: None,
            port: None,
            families: vec![Family::of(address)],
        }
    }

    /// Only accept the neighbor's connection.
    pub fn passive(mut self) -> Self {
        self.passive = true;
        self
    }

    /// Sign the session with TCP MD5.
    pub fn password(mut self, password: &str) -> Self {
        self.password = Some(password.to_string());
        self
    }

    /// Advertise graceful restart.
    pub fn graceful_restart(mut self) -> Self {
        self.graceful_restart = true;
        self
    }

    /// Propose this hold time (seconds; 0 or at least 3).
    pub fn hold_time(mut self, seconds: u16) -> Self {
        self.hold_time = Some(seconds);
        self
    }

    /// Connect to this port instead of 179.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Negotiate these families (e.g. both over one IPv4 session). A router exporting IPv6
    /// routes over an IPv4 session needs an IPv6 next hop, which these configurations do not
    /// set: use it for receiving.
    pub fn families(mut self, families: &[Family]) -> Self {
        self.families = families.to_vec();
        self
    }

    /// Whether the session is iBGP for a router in `local_as`.
    pub fn is_ibgp(&self, local_as: u32) -> bool {
        self.remote_as == local_as
    }
}

/// A prefix the router originates, with attributes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Originate {
    /// The prefix.
    pub prefix: Prefix,
    /// Communities to attach (RFC 1997).
    pub communities: Vec<Community>,
    /// Large communities to attach (RFC 8092).
    pub large_communities: Vec<LargeCommunity>,
}

impl Originate {
    /// Originate `prefix` without communities.
    pub fn new(prefix: Prefix) -> Self {
        Self { prefix, communities: Vec::new(), large_communities: Vec::new() }
    }

    /// Attach a community.
    pub fn community(mut self, community: Community) -> Self {
        self.communities.push(community);
        self
    }

    /// Attach a large community.
    pub fn large_community(mut self, community: LargeCommunity) -> Self {
        self.large_communities.push(community);
        self
    }
}

/// A standard community (RFC 1997), written `asn:value`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Community(pub u16, pub u16);

impl Community {
    /// From the 32-bit wire value.
    pub fn from_u32(value: u32) -> Self {
        Self((value >> 16) as u16, value as u16)
    }

    /// Also accepts the names FRR prints for the well-known communities (RFC 1997, 7999, 8326,
    /// 8642, 7611).
    pub fn parse_named(text: &str) -> anyhow::Result<Self> {
        let value = match text {
            "graceful-shutdown" => 0xFFFF_0000,
            "accept-own" => 0xFFFF_0001,
            "blackhole" => 0xFFFF_029A,
            "no-export" => 0xFFFF_FF01,
            "no-advertise" => 0xFFFF_FF02,
            "local-AS" | "no-export-subconfed" => 0xFFFF_FF03,
            "noPeer" | "no-peer" => 0xFFFF_FF04,
            "no-llgr" => 0xFFFF_0007,
            "llgr-stale" => 0xFFFF_0006,
            _ => return text.parse(),
        };
        Ok(Self::from_u32(value))
    }
}

impl FromStr for Community {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> anyhow::Result<Self> {
        let (high, low) = text.split_once(':').with_context(|| format!("community {text:?}"))?;
        Ok(Self(high.trim().parse()?, low.trim().parse()?))
    }
}

impl fmt::Display for Community {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.0, self.1)
    }
}

/// A large community (RFC 8092), written `global:local1:local2`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LargeCommunity(pub u32, pub u32, pub u32);

impl FromStr for LargeCommunity {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> anyhow::Result<Self> {
        let parts: Vec<&str> = text.split(':').map(str::trim).collect();
        let [global, one, two] = parts[..] else {
            bail!("large community {text:?}");
        };
        Ok(Self(global.parse()?, one.parse()?, two.parse()?))
    }
}

impl fmt::Display for LargeCommunity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.0, self.1, self.2)
    }
}

/// BGP session state of a neighbor (RFC 4271 section 8.2.2), as the router reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionState {
    /// Idle (also administratively down, or waiting out an error delay).
    Idle,
    /// Connect.
    Connect,
    /// Active.
    Active,
    /// OpenSent.
    OpenSent,
    /// OpenConfirm.
    OpenConfirm,
    /// Established.
    Established,
    /// Something else the router said (kept verbatim for messages).
    Other(String),
}

impl SessionState {
    /// From a router's name for the state, in any case ("Established", "OPENSENT", "Idle
    /// (Admin)", ...).
    pub fn parse(text: &str) -> Self {
        let word: String = text
            .trim()
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect::<String>()
            .to_ascii_lowercase()
            .replace('_', "");
        match word.trim_start_matches("bgpfsm") {
            "idle" => Self::Idle,
            "connect" => Self::Connect,
            "active" => Self::Active,
            "opensent" => Self::OpenSent,
            "openconfirm" => Self::OpenConfirm,
            "established" => Self::Established,
            _ => Self::Other(text.trim().to_string()),
        }
    }

    /// Whether routes flow.
    pub fn is_established(&self) -> bool {
        matches!(self, Self::Established)
    }
}

/// One path to a prefix in a router's BGP table (a prefix learned from two neighbors has two).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BgpPath {
    /// The prefix.
    pub prefix: Prefix,
    /// The BGP next hop(s): for IPv6 the global address and, where sent, the link-local one.
    /// Empty for a prefix the router originates itself (BIRD, FRR) or an unspecified address
    /// (GoBGP's "0.0.0.0" / "::").
    pub next_hops: Vec<IpAddr>,
    /// The AS numbers of the AS_PATH in order (sets flattened); empty for iBGP and local paths.
    pub as_path: Vec<u32>,
    /// LOCAL_PREF, if the router shows one.
    pub local_pref: Option<u32>,
    /// MULTI_EXIT_DISC, if present.
    pub med: Option<u32>,
    /// Communities, in the order the router prints them.
    pub communities: Vec<Community>,
    /// Large communities, in the order the router prints them.
    pub large_communities: Vec<LargeCommunity>,
    /// Whether the router selected this path as best.
    pub best: bool,
    /// The neighbor it came from; `None` for a path the router originates.
    pub peer: Option<IpAddr>,
}

impl BgpPath {
    fn empty(prefix: Prefix) -> Self {
        Self {
            prefix,
            next_hops: Vec::new(),
            as_path: Vec::new(),
            local_pref: None,
            med: None,
            communities: Vec::new(),
            large_communities: Vec::new(),
            best: false,
            peer: None,
        }
    }
}

/// How long a router may take to start answering on its control socket.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A running router. Dropping it kills its processes, then deletes its files; its namespace
/// goes when the last holder (lab or router) drops.
pub trait Router: Send {
    /// Which implementation.
    fn kind(&self) -> RouterKind;

    /// The namespace it runs in.
    fn netns(&self) -> &Arc<Netns>;

    /// The configuration it was started with.
    fn config(&self) -> &RouterConfig;

    /// Its temporary directory: configuration, sockets, pid files, logs.
    fn work_dir(&self) -> &Path;

    /// Session state with `neighbor` (which must be configured).
    fn session_state(&self, neighbor: IpAddr) -> anyhow::Result<SessionState>;

    /// Every path in its BGP table of `family`: learned ones and the ones it originates.
    fn routes(&self, family: Family) -> anyhow::Result<Vec<BgpPath>>;

    /// Fails with the logs if one of its processes has exited.
    fn ensure_running(&mut self) -> anyhow::Result<()>;

    /// Its processes' output so far.
    fn log(&self) -> String;

    /// The paths for exactly `prefix`.
    fn paths(&self, prefix: Prefix) -> anyhow::Result<Vec<BgpPath>> {
        let mut paths = self.routes(prefix.family())?;
        paths.retain(|path| path.prefix == prefix);
        Ok(paths)
    }

    /// Waits (at most `timeout`) for the session with `neighbor` to be Established.
    fn wait_established(&mut self, neighbor: IpAddr, timeout: Duration) -> anyhow::Result<()> {
        let what = format!("{} session with {neighbor} to be Established", self.kind());
        let result = wait_until(&what, timeout, || {
            self.ensure_running()?;
            Ok(match self.session_state(neighbor) {
                Ok(SessionState::Established) => Attempt::Done(()),
                Ok(state) => Attempt::NotYet(format!("{state:?}")),
                Err(err) => Attempt::NotYet(format!("{err:#}")),
            })
        });
        result.map_err(|err| with_log_tail(err, self.log()))
    }

    /// Waits (at most `timeout`) until the paths for `prefix` satisfy `accept`; returns them.
    fn wait_paths(
        &mut self,
        prefix: Prefix,
        timeout: Duration,
        accept: &dyn Fn(&[BgpPath]) -> bool,
    ) -> anyhow::Result<Vec<BgpPath>> {
        let what = format!("{} paths for {prefix}", self.kind());
        let result = wait_until(&what, timeout, || {
            self.ensure_running()?;
            Ok(match self.paths(prefix) {
                Ok(paths) if accept(&paths) => Attempt::Done(paths),
                Ok(paths) => Attempt::NotYet(format!("{paths:?}")),
                Err(err) => Attempt::NotYet(format!("{err:#}")),
            })
        });
        result.map_err(|err| with_log_tail(err, self.log()))
    }

    /// Waits (at most `timeout`) until `prefix` has a best path; returns all its paths. (FRR
    /// shows a received path a moment before it has run best-path selection on it.)
    fn wait_prefix(&mut self, prefix: Prefix, timeout: Duration) -> anyhow::Result<Vec<BgpPath>> {
        self.wait_paths(prefix, timeout, &|paths| paths.iter().any(|path| path.best))
    }

    /// Waits (at most `timeout`) until `prefix` has no path left.
    fn wait_prefix_gone(&mut self, prefix: Prefix, timeout: Duration) -> anyhow::Result<()> {
        self.wait_paths(prefix, timeout, &|paths| paths.is_empty()).map(drop)
    }
}

/// Starts a router of `kind` in `netns`.
pub fn start(
    kind: RouterKind,
    netns: &Arc<Netns>,
    config: RouterConfig,
) -> anyhow::Result<Box<dyn Router>> {
    Ok(match kind {
        RouterKind::Bird => Box::new(Bird::start(netns, config)?),
        RouterKind::Frr => Box::new(Frr::start(netns, config)?),
        RouterKind::GoBgp => Box::new(GoBgp::start(netns, config)?),
    })
}

/// How many log lines a failure message carries.
const LOG_TAIL_LINES: usize = 40;

fn log_tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
}

fn with_log_tail(err: anyhow::Error, log: String) -> anyhow::Error {
    anyhow::anyhow!("{err:#}\n--- router log (last {LOG_TAIL_LINES} lines) ---\n{}", log_tail(&log))
}

/// A router's temporary directory. It is deleted on drop like everything else; when the drop
/// happens during a panic, the router's log tail goes to stderr first, where the test harness
/// shows it with the failure.
struct WorkDir {
    dir: tempfile::TempDir,
}

impl WorkDir {
    fn new(kind: RouterKind) -> anyhow::Result<Self> {
        let prefix = format!("mlbrs-{}-", kind.to_string().to_ascii_lowercase());
        let dir = tempfile::Builder::new().prefix(&prefix).tempdir()?;
        Ok(Self { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn write(&self, name: &str, contents: &str) -> anyhow::Result<std::path::PathBuf> {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }
}

/// Prints the log tail if the thread is panicking (called from the routers' `Drop`).
fn report_if_panicking(kind: RouterKind, netns: &Netns, log: &str) {
    if std::thread::panicking() {
        eprintln!(
            "--- {kind} in {} (last {LOG_TAIL_LINES} log lines) ---\n{}",
            netns.name(),
            log_tail(log)
        );
    }
}

/// Waits until `probe` succeeds, the router's control interface answering; fails early with the
/// log if a process exits.
fn wait_started(
    kind: RouterKind,
    timeout: Duration,
    mut ensure_running: impl FnMut() -> anyhow::Result<()>,
    mut probe: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    wait_until(&format!("{kind} to answer on its control socket"), timeout, || {
        ensure_running()?;
        Ok(match probe() {
            Ok(()) => Attempt::Done(()),
            Err(err) => Attempt::NotYet(format!("{err:#}")),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_states_from_each_router() {
        assert_eq!(SessionState::parse("Established"), SessionState::Established);
        assert_eq!(SessionState::parse("Idle (Admin)"), SessionState::Idle);
        assert_eq!(SessionState::parse("OPENSENT"), SessionState::OpenSent);
        assert_eq!(SessionState::parse("BGP_FSM_OPENCONFIRM"), SessionState::OpenConfirm);
        assert_eq!(SessionState::parse("Close"), SessionState::Other("Close".into()));
    }

    #[test]
    fn communities_parse() {
        assert_eq!("65000:1".parse::<Community>().unwrap(), Community(65000, 1));
        assert_eq!(Community::parse_named("no-export").unwrap(), Community(65535, 65281));
        assert_eq!(Community::from_u32(4259840001), Community(65000, 1));
        assert_eq!(
            "4200000000:1:2".parse::<LargeCommunity>().unwrap(),
            LargeCommunity(4_200_000_000, 1, 2)
        );
        assert!("1:2".parse::<LargeCommunity>().is_err());
    }

    #[test]
    fn configs_are_validated() {
        let neighbor = Neighbor::new("192.0.2.11".parse().unwrap(), 64512);
        let ok = RouterConfig::new(64500, Ipv4Addr::new(192, 0, 2, 1)).neighbor(neighbor.clone());
        assert!(ok.validate().is_ok());
        let quote = ok.clone().neighbor(neighbor.clone().password("a\"b"));
        assert!(quote.validate().is_err());
        let hold = ok.neighbor(neighbor.hold_time(2));
        assert!(hold.validate().is_err());
    }
}
