//! FRR 8.4 as a test router: `zebra` and `bgpd` in the namespace, each started with its own
//! configuration file (`-f`), pid file (`-i`), zebra socket (`-z`) and vty socket directory
//! (`--vty_socket`) in the router's temporary directory, logging to stdout (`--log stdout`), the
//! TCP vty off (`-P 0`); read with `vtysh --vty_socket <dir> -c '... json'`.
//!
//! FRR quirks this relies on:
//! - The daemons drop privileges to `frr:frr`, and refuse `-u root` (root is not in the `frrvty`
//!   group), so the directory is handed to the `frr` user.
//! - Each daemon also creates `/var/tmp/frr/<daemon>.<pid>/` (crash logs); named by pid, so
//!   parallel instances do not collide; removed on drop.
//! - eBGP needs `no bgp ebgp-requires-policy` (on by default since 7.4) and originated prefixes
//!   need `no bgp network import-check` (they are not in zebra's RIB).
//! - `show bgp <afi> unicast json detail` (8.4) lists, per prefix, a header object (prefix,
//!   advertisedTo) followed by the path objects.
//!
//! Learned routes reach the kernel through zebra (protocol `bgp`, metric 20, as a nexthop group
//! `nhid`); `maximum-paths` 8 (eBGP with `as-path multipath-relax`, and iBGP) makes ECMP routes.

use std::{fmt::Write as _, net::IpAddr, path::Path, process::Command, sync::Arc, time::Duration};

use anyhow::{Context, bail};
use serde_json::Value;

use super::{
    BgpPath, Community, Router, RouterConfig, RouterKind, START_TIMEOUT, SessionState, WorkDir,
    report_if_panicking, wait_started,
};
use crate::{
    netns::{Attempt, Family, Netns, NetnsProcess, Prefix, run_checked, wait_until},
    tools::system_tool,
};

/// An FRR instance (zebra + bgpd).
pub struct Frr {
    // Field order is drop order: bgpd, then zebra, then the files.
    bgpd: NetnsProcess,
    zebra: NetnsProcess,
    dir: WorkDir,
    config: RouterConfig,
}

impl Frr {
    /// Writes the configuration, starts zebra then bgpd in `netns`, and waits until bgpd
    /// answers `vtysh`.
    pub fn start(netns: &Arc<Netns>, config: RouterConfig) -> anyhow::Result<Self> {
        config.validate()?;
        let dir = WorkDir::new(RouterKind::Frr)?;
        give_to_frr_user(dir.path())?;
        let zserv = dir.path().join("zserv.api");
        let zebra_conf = dir.write("zebra.conf", "hostname mlbrs-frr\n")?;
        let bgpd_conf = dir.write("bgpd.conf", &render_bgpd_config(&config))?;

        // A failure below drops the daemons started so far, which kills them.
        let zebra_command = daemon_command("zebra", &zebra_conf, &zserv, dir.path());
        let mut zebra = netns.spawn("zebra", zebra_command, dir.path())?;
        wait_until("zebra's socket", START_TIMEOUT, || {
            zebra.ensure_running()?;
            Ok(if zserv.exists() {
                Attempt::Done(())
            } else {
                Attempt::NotYet(format!("no {}", zserv.display()))
            })
        })?;
        let bgpd_command = daemon_command("bgpd", &bgpd_conf, &zserv, dir.path());
        let bgpd = netns.spawn("bgpd", bgpd_command, dir.path())?;
        let mut frr = Self { bgpd, zebra, dir, config };
        let vty = frr.dir.path().to_path_buf();
        let (bgpd, zebra) = (&mut frr.bgpd, &mut frr.zebra);
        wait_started(
            RouterKind::Frr,
            START_TIMEOUT,
            || {
                zebra.ensure_running()?;
                bgpd.ensure_running()
            },
            || vtysh(&vty, "show bgp summary json").map(drop),
        )?;
        Ok(frr)
    }

    /// Runs one `vtysh -c` command; its output.
    pub fn vtysh(&self, command: &str) -> anyhow::Result<String> {
        vtysh(self.dir.path(), command)
    }

    fn vtysh_json(&self, command: &str) -> anyhow::Result<Value> {
        let output = self.vtysh(command)?;
        serde_json::from_str(&output).with_context(|| format!("`{command}` printed:\n{output}"))
    }
}

fn daemon_command(daemon: &str, conf: &Path, zserv: &Path, dir: &Path) -> Command {
    let mut command = Command::new(system_tool(daemon));
    command
        .arg("-f")
        .arg(conf)
        .arg("-i")
        .arg(dir.join(format!("{daemon}.pid")))
        .arg("-z")
        .arg(zserv)
        .arg("--vty_socket")
        .arg(dir)
        .args(["-u", "frr", "-g", "frr", "-P", "0", "--log", "stdout", "--log-level", "info"]);
    command
}

fn vtysh(vty_dir: &Path, command: &str) -> anyhow::Result<String> {
    let mut vtysh = Command::new(system_tool("vtysh"));
    vtysh.arg("--vty_socket").arg(vty_dir).arg("-c").arg(command);
    let output = run_checked(vtysh)?;
    // vtysh exits 0 on some command errors and says so on stdout.
    if output.starts_with('%') {
        bail!("vtysh -c '{command}': {}", output.trim());
    }
    Ok(output)
}

fn give_to_frr_user(dir: &Path) -> anyhow::Result<()> {
    let id = |flag: &str| -> anyhow::Result<u32> {
        let mut command = Command::new("id");
        command.args([flag, "frr"]);
        let output = run_checked(command).context("FRR runs as user frr, which does not exist")?;
        Ok(output.trim().parse()?)
    };
    std::os::unix::fs::chown(dir, Some(id("-u")?), Some(id("-g")?))
        .with_context(|| format!("handing {} to user frr", dir.display()))
}

impl Router for Frr {
    fn kind(&self) -> RouterKind {
        RouterKind::Frr
    }

    fn netns(&self) -> &Arc<Netns> {
        self.bgpd.netns()
    }

    fn config(&self) -> &RouterConfig {
        &self.config
    }

    fn work_dir(&self) -> &Path {
        self.dir.path()
    }

    fn session_state(&self, neighbor: IpAddr) -> anyhow::Result<SessionState> {
        self.config.find_neighbor(neighbor)?;
        let json = self.vtysh_json(&format!("show bgp neighbors {neighbor} json"))?;
        let state = json
            .get(neighbor.to_string())
            .and_then(|peer| peer.get("bgpState"))
            .and_then(Value::as_str)
            .with_context(|| format!("no bgpState for {neighbor} in {json}"))?;
        Ok(SessionState::parse(state))
    }

    fn routes(&self, family: Family) -> anyhow::Result<Vec<BgpPath>> {
        let afi = match family {
            Family::Ipv4 => "ipv4",
            Family::Ipv6 => "ipv6",
        };
        parse_routes(&self.vtysh_json(&format!("show bgp {afi} unicast json detail"))?)
    }

    fn ensure_running(&mut self) -> anyhow::Result<()> {
        self.zebra.ensure_running()?;
        self.bgpd.ensure_running()
    }

    fn log(&self) -> String {
        format!("=== zebra ===\n{}=== bgpd ===\n{}", self.zebra.log(), self.bgpd.log())
    }
}

impl Drop for Frr {
    fn drop(&mut self) {
        report_if_panicking(RouterKind::Frr, self.bgpd.netns(), &self.log());
        // Stop the daemons here (rather than by field drop) so that their crash-log directories
        // can be removed after them.
        let crash_dirs = [("bgpd", self.bgpd.pid()), ("zebra", self.zebra.pid())];
        for daemon in [&mut self.bgpd, &mut self.zebra] {
            let _ = daemon.signal_and_wait(SIGKILL, Duration::from_secs(5));
        }
        for (daemon, pid) in crash_dirs {
            let _ = std::fs::remove_dir_all(format!("/var/tmp/frr/{daemon}.{pid}"));
        }
    }
}

const SIGKILL: i32 = 9;

fn render_bgpd_config(config: &RouterConfig) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "! Generated by metallb-tests for one test; deleted with it.");
    let _ = writeln!(out, "hostname mlbrs-frr");
    // Route maps are applied on this timer (default 5 s), also at start, to originated
    // prefixes too; 0 would mean never.
    let _ = writeln!(out, "bgp route-map delay-timer 1");
    let _ = writeln!(out, "router bgp {}", config.local_as);
    let _ = writeln!(out, " bgp router-id {}", config.router_id);
    let _ = writeln!(out, " no bgp ebgp-requires-policy");
    let _ = writeln!(out, " no bgp default ipv4-unicast");
    let _ = writeln!(out, " no bgp network import-check");
    let _ = writeln!(out, " bgp bestpath as-path multipath-relax");
    for neighbor in &config.neighbors {
        let address = neighbor.address;
        let _ = writeln!(out, " neighbor {address} remote-as {}", neighbor.remote_as);
        // FRR waits 120 s between connection attempts by default.
        let _ = writeln!(out, " neighbor {address} timers connect 2");
        if neighbor.passive {
            let _ = writeln!(out, " neighbor {address} passive");
        }
        if let Some(password) = &neighbor.password {
            let _ = writeln!(out, " neighbor {address} password {password}");
        }
        if neighbor.graceful_restart {
            let _ = writeln!(out, " neighbor {address} graceful-restart");
        }
        if let Some(hold) = neighbor.hold_time {
            let _ = writeln!(out, " neighbor {address} timers {} {hold}", hold / 3);
        }
        if let Some(port) = neighbor.port {
            let _ = writeln!(out, " neighbor {address} port {port}");
        }
    }
    for family in [Family::Ipv4, Family::Ipv6] {
        let (afi, tag) = match family {
            Family::Ipv4 => ("ipv4", "V4"),
            Family::Ipv6 => ("ipv6", "V6"),
        };
        let _ = writeln!(out, " address-family {afi} unicast");
        let _ = writeln!(out, "  maximum-paths 8\n  maximum-paths ibgp 8");
        for (index, originate) in config.originated(family).enumerate() {
            let _ =
                writeln!(out, "  network {} route-map ORIGINATE-{tag}-{index}", originate.prefix);
        }
        for neighbor in config.neighbors.iter().filter(|n| n.families.contains(&family)) {
            let address = neighbor.address;
            let _ = writeln!(out, "  neighbor {address} activate");
            let _ = writeln!(out, "  neighbor {address} route-map ACCEPT-ALL in");
            let _ = writeln!(out, "  neighbor {address} route-map EXPORT-{tag} out");
        }
        let _ = writeln!(out, " exit-address-family");
    }
    let _ = writeln!(out, "exit");
    let _ = writeln!(out, "route-map ACCEPT-ALL permit 10");
    for family in [Family::Ipv4, Family::Ipv6] {
        let (ip, tag) = match family {
            Family::Ipv4 => ("ip", "V4"),
            Family::Ipv6 => ("ipv6", "V6"),
        };
        // Only what this router originates goes out, never what it learned.
        let originated: Vec<_> = config.originated(family).collect();
        for (index, originate) in originated.iter().enumerate() {
            let _ = writeln!(
                out,
                "{ip} prefix-list EXPORT-{tag} seq {} permit {}",
                (index + 1) * 5,
                originate.prefix
            );
            let _ = writeln!(out, "route-map ORIGINATE-{tag}-{index} permit 10");
            if !originate.communities.is_empty() {
                let list: Vec<String> =
                    originate.communities.iter().map(|c| c.to_string()).collect();
                let _ = writeln!(out, " set community {}", list.join(" "));
            }
            if !originate.large_communities.is_empty() {
                let list: Vec<String> =
                    originate.large_communities.iter().map(|c| c.to_string()).collect();
                let _ = writeln!(out, " set large-community {}", list.join(" "));
            }
        }
        if originated.is_empty() {
            let _ = writeln!(out, "route-map EXPORT-{tag} deny 10");
        } else {
            let _ = writeln!(out, "route-map EXPORT-{tag} permit 10");
            let _ = writeln!(out, " match {ip} address prefix-list EXPORT-{tag}");
        }
    }
    out
}

/// Parses `show bgp <afi> unicast json detail`.
fn parse_routes(json: &Value) -> anyhow::Result<Vec<BgpPath>> {
    let mut paths = Vec::new();
    let Some(routes) = json.get("routes").and_then(Value::as_object) else {
        // No table at all (e.g. nothing configured for the family) prints `{}`.
        return Ok(paths);
    };
    for (prefix, entries) in routes {
        let prefix: Prefix = prefix.parse()?;
        let entries = entries.as_array().with_context(|| format!("paths of {prefix}"))?;
        // The first entry is a header (prefix, advertisedTo); paths have a "peer".
        for entry in entries.iter().filter(|entry| entry.get("peer").is_some()) {
            paths.push(parse_path(prefix, entry).with_context(|| format!("path {entry}"))?);
        }
    }
    Ok(paths)
}

fn parse_path(prefix: Prefix, entry: &Value) -> anyhow::Result<BgpPath> {
    let mut path = BgpPath::empty(prefix);
    path.best = entry
        .get("bestpath")
        .and_then(|best| best.get("overall"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let peer_id = entry.pointer("/peer/peerId").and_then(Value::as_str).unwrap_or_default();
    path.peer = peer_id.parse().ok().filter(|addr: &IpAddr| !addr.is_unspecified());
    for hop in entry.get("nexthops").and_then(Value::as_array).into_iter().flatten() {
        if let Some(addr) = hop.get("ip").and_then(Value::as_str) {
            let addr: IpAddr = addr.parse()?;
            if !addr.is_unspecified() {
                path.next_hops.push(addr);
            }
        }
    }
    for segment in entry.pointer("/aspath/segments").and_then(Value::as_array).into_iter().flatten()
    {
        for asn in segment.get("list").and_then(Value::as_array).into_iter().flatten() {
            let asn = asn.as_u64().with_context(|| format!("AS number {asn}"))?;
            path.as_path.push(u32::try_from(asn)?);
        }
    }
    path.local_pref = number(entry, "locPrf")?;
    path.med = number(entry, "metric")?;
    for community in strings(entry.pointer("/community/list")) {
        path.communities.push(Community::parse_named(community)?);
    }
    for community in strings(entry.pointer("/largeCommunity/list")) {
        path.large_communities.push(community.parse()?);
    }
    Ok(path)
}

fn number(entry: &Value, key: &str) -> anyhow::Result<Option<u32>> {
    entry
        .get(key)
        .map(|value| {
            let value = value.as_u64().with_context(|| format!("{key}: {value}"))?;
            Ok(u32::try_from(value)?)
        })
        .transpose()
}

fn strings(list: Option<&Value>) -> impl Iterator<Item = &str> {
    list.and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routers::{LargeCommunity, Neighbor, Originate};

    // Shaped after FRR 8.4.4's `show bgp ipv4 unicast json detail`: a header entry, then paths.
    const ROUTES: &str = r#"{
 "vrfId": 0, "vrfName": "default", "tableVersion": 2, "routerId": "192.0.2.1",
 "defaultLocPrf": 100, "localAS": 64500,
 "routes": { "203.0.113.5/32": [
  {"prefix":"203.0.113.5/32","version":1,"advertisedTo":{"192.0.2.11":{"hostname":"vm"}}},
  {"aspath":{"string":"64512","segments":[{"type":"as-sequence","list":[64512]}],"length":1},
   "origin":"incomplete","valid":true,"version":1,
   "bestpath":{"overall":true,"selectionReason":"First path received"},
   "community":{"string":"65000:1 no-export","list":["65000:1","no-export"]},
   "largeCommunity":{"string":"64512:1:2","list":["64512:1:2"]},
   "nexthops":[{"ip":"192.0.2.11","hostname":"vm","afi":"ipv4","metric":0,"accessible":true,"used":true}],
   "peer":{"peerId":"192.0.2.11","routerId":"192.0.2.11","hostname":"vm","type":"external"}},
  {"aspath":{"string":"","segments":[],"length":0},"origin":"IGP","locPrf":200,"metric":5,
   "valid":true,"version":2,
   "nexthops":[{"ip":"2001:db8::12","afi":"ipv6","scope":"global","used":true},{"ip":"fe80::1","afi":"ipv6","scope":"link-local"}],
   "peer":{"peerId":"192.0.2.12","routerId":"192.0.2.12","type":"internal"}}
 ],
 "203.0.113.9/32": [
  {"prefix":"203.0.113.9/32","version":3},
  {"aspath":{"string":"Local","segments":[],"length":0},"origin":"IGP","weight":32768,"valid":true,
   "bestpath":{"overall":true},"nexthops":[{"ip":"0.0.0.0","afi":"ipv4","used":true}],
   "peer":{"peerId":"0.0.0.0","routerId":"192.0.2.1"}}
 ] } }"#;

    #[test]
    fn detail_json() {
        let paths = parse_routes(&serde_json::from_str(ROUTES).unwrap()).unwrap();
        assert_eq!(paths.len(), 3, "{paths:#?}");
        assert!(paths[0].best);
        assert_eq!(paths[0].peer, Some("192.0.2.11".parse().unwrap()));
        assert_eq!(paths[0].as_path, vec![64512]);
        assert_eq!(paths[0].communities, vec![Community(65000, 1), Community(65535, 65281)]);
        assert_eq!(paths[0].large_communities, vec![LargeCommunity(64512, 1, 2)]);
        assert!(!paths[1].best);
        assert_eq!(paths[1].local_pref, Some(200));
        assert_eq!(paths[1].med, Some(5));
        assert_eq!(paths[1].next_hops.len(), 2);
        assert_eq!(paths[2].peer, None);
        assert!(paths[2].next_hops.is_empty());
    }

    #[test]
    fn config_exports_only_originated() {
        let config = RouterConfig::new(64500, "192.0.2.1".parse().unwrap())
            .neighbor(Neighbor::new("192.0.2.11".parse().unwrap(), 64512))
            .originate(
                Originate::new("203.0.113.9/32".parse().unwrap()).community(Community(65000, 9)),
            );
        let text = render_bgpd_config(&config);
        assert!(text.contains("ip prefix-list EXPORT-V4 seq 5 permit 203.0.113.9/32"), "{text}");
        assert!(text.contains("route-map EXPORT-V6 deny 10"), "{text}");
        assert!(text.contains(" set community 65000:9"), "{text}");
    }
}
