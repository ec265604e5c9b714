//! GoBGP 3 as a test router: `gobgpd -f <dir>/gobgpd.toml -t toml --api-hosts 127.0.0.1:50051`
//! inside the namespace (its loopback, so every namespace can use the same port), driven with
//! `gobgp` run inside the namespace too (`-j neighbor <addr>`, `-j global rib -a ipv4|ipv6`).
//!
//! GoBGP does not install routes in the kernel (that needs zebra, which we do not run for it):
//! read its RIB with [`Router::routes`]; its namespace's kernel table stays empty.
//!
//! Quirks: the configuration file cannot originate routes, so they are added through the API
//! after start (`gobgp global rib add`, next hop 0.0.0.0 / ::, which GoBGP replaces with the
//! session's own address; an IPv6 route over an IPv4-only session is not sent). Per-neighbor
//! policies only apply to route-server clients, so the export policy (only local routes) is
//! global. Its default connect retry is 120 s; set to 2 s here. pprof is disabled (it would
//! listen on localhost:6060).

use std::{fmt::Write as _, net::IpAddr, path::Path, process::Command, sync::Arc};

use anyhow::Context;
use serde_json::Value;

use super::{
    BgpPath, Community, LargeCommunity, Router, RouterConfig, RouterKind, START_TIMEOUT,
    SessionState, WorkDir, report_if_panicking, wait_started,
};
use crate::{
    netns::{Family, Netns, NetnsProcess, Prefix, run_checked},
    tools::system_tool,
};

/// Where gobgpd serves its gRPC API, inside its namespace.
pub const API_HOST: &str = "127.0.0.1";
/// The API port (the same in every namespace; they each have their own loopback).
pub const API_PORT: u16 = 50051;

/// A GoBGP instance.
pub struct GoBgp {
    // Field order is drop order: the process stops before its files are deleted.
    process: NetnsProcess,
    dir: WorkDir,
    config: RouterConfig,
}

impl GoBgp {
    /// Writes the configuration, starts gobgpd in `netns`, waits until its API answers, then
    /// adds the prefixes to originate.
    pub fn start(netns: &Arc<Netns>, config: RouterConfig) -> anyhow::Result<Self> {
        config.validate()?;
        let dir = WorkDir::new(RouterKind::GoBgp)?;
        let conf = dir.write("gobgpd.toml", &render_config(&config))?;
        let mut command = Command::new(system_tool("gobgpd"));
        command
            .arg("-f")
            .arg(&conf)
            .args(["-t", "toml", "--pprof-disable", "--log-plain"])
            .arg(format!("--api-hosts={API_HOST}:{API_PORT}"));
        let process = netns.spawn("gobgpd", command, dir.path())?;
        let mut gobgp = Self { process, dir, config };
        let netns = Arc::clone(netns);
        let process = &mut gobgp.process;
        wait_started(
            RouterKind::GoBgp,
            START_TIMEOUT,
            || process.ensure_running(),
            || run_gobgp(&netns, &["global"]).map(drop),
        )?;
        for originate in gobgp.config.originate.clone() {
            let mut args = vec!["global".to_string(), "rib".to_string(), "add".to_string()];
            args.extend(["-a".to_string(), family_arg(originate.prefix.family()).to_string()]);
            args.extend([originate.prefix.to_string(), "origin".to_string(), "igp".to_string()]);
            if !originate.communities.is_empty() {
                let list: Vec<String> =
                    originate.communities.iter().map(|c| c.to_string()).collect();
                args.extend(["community".to_string(), list.join(",")]);
            }
            if !originate.large_communities.is_empty() {
                let list: Vec<String> =
                    originate.large_communities.iter().map(|c| c.to_string()).collect();
                args.extend(["large-community".to_string(), list.join(",")]);
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            gobgp.gobgp(&args).with_context(|| format!("originating {}", originate.prefix))?;
        }
        Ok(gobgp)
    }

    /// Runs the `gobgp` CLI against this instance (e.g. `["-j", "neighbor"]`); its output.
    pub fn gobgp(&self, args: &[&str]) -> anyhow::Result<String> {
        run_gobgp(self.process.netns(), args)
    }
}

fn run_gobgp(netns: &Netns, args: &[&str]) -> anyhow::Result<String> {
    let mut command = netns.command(system_tool("gobgp"));
    command.args(["-u", API_HOST, "-p", &API_PORT.to_string()]).args(args);
    run_checked(command)
}

fn family_arg(family: Family) -> &'static str {
    match family {
        Family::Ipv4 => "ipv4",
        Family::Ipv6 => "ipv6",
    }
}

impl Router for GoBgp {
    fn kind(&self) -> RouterKind {
        RouterKind::GoBgp
    }

    fn netns(&self) -> &Arc<Netns> {
        self.process.netns()
    }

    fn config(&self) -> &RouterConfig {
        &self.config
    }

    fn work_dir(&self) -> &Path {
        self.dir.path()
    }

    fn session_state(&self, neighbor: IpAddr) -> anyhow::Result<SessionState> {
        self.config.find_neighbor(neighbor)?;
        let output = self.gobgp(&["-j", "neighbor", &neighbor.to_string()])?;
        let json: Value = serde_json::from_str(&output)
            .with_context(|| format!("gobgp neighbor printed:\n{output}"))?;
        parse_session_state(&json)
    }

    fn routes(&self, family: Family) -> anyhow::Result<Vec<BgpPath>> {
        let output = self.gobgp(&["-j", "global", "rib", "-a", family_arg(family)])?;
        parse_routes(&output)
    }

    fn ensure_running(&mut self) -> anyhow::Result<()> {
        self.process.ensure_running()
    }

    fn log(&self) -> String {
        self.process.log()
    }
}

impl Drop for GoBgp {
    fn drop(&mut self) {
        report_if_panicking(RouterKind::GoBgp, self.process.netns(), &self.process.log());
    }
}

fn render_config(config: &RouterConfig) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Generated by metallb-tests for one test; deleted with it.");
    let _ = writeln!(out, "[global.config]");
    let _ = writeln!(out, "  as = {}", config.local_as);
    let _ = writeln!(out, "  router-id = \"{}\"", config.router_id);
    let _ = writeln!(out, "  port = 179");
    let _ = writeln!(out, "[global.use-multiple-paths.config]\n  enabled = true");
    // Only locally originated routes go out, never what was learned.
    let _ = writeln!(out, "[global.apply-policy.config]");
    let _ = writeln!(out, "  default-import-policy = \"accept-route\"");
    let _ = writeln!(out, "  export-policy-list = [\"export-local\"]");
    let _ = writeln!(out, "  default-export-policy = \"reject-route\"");
    for neighbor in &config.neighbors {
        let _ = writeln!(out, "[[neighbors]]\n  [neighbors.config]");
        let _ = writeln!(out, "    neighbor-address = \"{}\"", neighbor.address);
        let _ = writeln!(out, "    peer-as = {}", neighbor.remote_as);
        if let Some(password) = &neighbor.password {
            let _ = writeln!(out, "    auth-password = \"{password}\"");
        }
        let _ = writeln!(out, "  [neighbors.timers.config]\n    connect-retry = 2");
        let _ = writeln!(out, "    idle-hold-time-after-reset = 1");
        if let Some(hold) = neighbor.hold_time {
            let _ = writeln!(out, "    hold-time = {hold}\n    keepalive-interval = {}", hold / 3);
        }
        let _ = writeln!(out, "  [neighbors.transport.config]");
        let _ = writeln!(out, "    passive-mode = {}", neighbor.passive);
        if let Some(port) = neighbor.port {
            let _ = writeln!(out, "    remote-port = {port}");
        }
        if neighbor.graceful_restart {
            let _ = writeln!(out, "  [neighbors.graceful-restart.config]");
            let _ = writeln!(out, "    enabled = true\n    restart-time = 120");
        }
        for family in &neighbor.families {
            let name = match family {
                Family::Ipv4 => "ipv4-unicast",
                Family::Ipv6 => "ipv6-unicast",
            };
            let _ = writeln!(out, "  [[neighbors.afi-safis]]\n    [neighbors.afi-safis.config]");
            let _ = writeln!(out, "      afi-safi-name = \"{name}\"");
            if neighbor.graceful_restart {
                let _ = writeln!(out, "    [neighbors.afi-safis.mp-graceful-restart.config]");
                let _ = writeln!(out, "      enabled = true");
            }
        }
    }
    let _ = writeln!(out, "[[policy-definitions]]\n  name = \"export-local\"");
    let _ = writeln!(out, "  [[policy-definitions.statements]]");
    let _ = writeln!(out, "    [policy-definitions.statements.conditions.bgp-conditions]");
    let _ = writeln!(out, "      route-type = \"local\"");
    let _ = writeln!(out, "    [policy-definitions.statements.actions]");
    let _ = writeln!(out, "      route-disposition = \"accept-route\"");
    out
}

/// `gobgp -j neighbor <addr>`: `state.session_state`, a number (the API enum) or a name.
fn parse_session_state(json: &Value) -> anyhow::Result<SessionState> {
    let state = json
        .pointer("/state/session_state")
        .with_context(|| format!("no session_state in {json}"))?;
    Ok(match state {
        Value::Number(number) => match number.as_u64() {
            Some(1) => SessionState::Idle,
            Some(2) => SessionState::Connect,
            Some(3) => SessionState::Active,
            Some(4) => SessionState::OpenSent,
            Some(5) => SessionState::OpenConfirm,
            Some(6) => SessionState::Established,
            _ => SessionState::Other(number.to_string()),
        },
        Value::String(name) => SessionState::parse(name),
        other => SessionState::Other(other.to_string()),
    })
}

/// `gobgp -j global rib -a <family>`: prefix to list of paths, attributes as typed objects
/// (1 ORIGIN, 2 AS_PATH, 3 NEXT_HOP, 4 MED, 5 LOCAL_PREF, 8 COMMUNITIES, 14 MP_REACH_NLRI,
/// 32 LARGE_COMMUNITY).
fn parse_routes(output: &str) -> anyhow::Result<Vec<BgpPath>> {
    let output = output.trim();
    // An empty RIB prints nothing (or `null`).
    if output.is_empty() || output == "null" {
        return Ok(Vec::new());
    }
    let json: Value =
        serde_json::from_str(output).with_context(|| format!("gobgp rib printed:\n{output}"))?;
    let mut paths = Vec::new();
    for (prefix, entries) in json.as_object().context("gobgp rib is not an object")? {
        let prefix: Prefix = prefix.parse()?;
        for entry in entries.as_array().with_context(|| format!("paths of {prefix}"))? {
            paths.push(parse_path(prefix, entry).with_context(|| format!("path {entry}"))?);
        }
    }
    Ok(paths)
}

fn parse_path(prefix: Prefix, entry: &Value) -> anyhow::Result<BgpPath> {
    let mut path = BgpPath::empty(prefix);
    path.best = entry.get("best").and_then(Value::as_bool).unwrap_or(false);
    path.peer = entry
        .get("neighbor-ip")
        .and_then(Value::as_str)
        .and_then(|addr| addr.parse().ok())
        .filter(|addr: &IpAddr| !addr.is_unspecified());
    for attribute in entry.get("attrs").and_then(Value::as_array).into_iter().flatten() {
        let kind = attribute.get("type").and_then(Value::as_u64).unwrap_or_default();
        match kind {
            2 => {
                let segments = attribute.get("as_paths").and_then(Value::as_array);
                for segment in segments.into_iter().flatten() {
                    for asn in segment.get("asns").and_then(Value::as_array).into_iter().flatten() {
                        let asn = asn.as_u64().with_context(|| format!("AS number {asn}"))?;
                        path.as_path.push(u32::try_from(asn)?);
                    }
                }
            }
            3 | 14 => {
                for key in ["nexthop", "linklocal_nexthop"] {
                    if let Some(addr) = attribute.get(key).and_then(Value::as_str) {
                        let addr: IpAddr = addr.parse()?;
                        if !addr.is_unspecified() {
                            path.next_hops.push(addr);
                        }
                    }
                }
            }
            4 => {
                path.med = attribute
                    .get("metric")
                    .and_then(Value::as_u64)
                    .map(u32::try_from)
                    .transpose()?
            }
            5 => {
                path.local_pref =
                    attribute.get("value").and_then(Value::as_u64).map(u32::try_from).transpose()?
            }
            8 => {
                let values = attribute.get("communities").and_then(Value::as_array);
                for value in values.into_iter().flatten() {
                    let value = value.as_u64().with_context(|| format!("community {value}"))?;
                    path.communities.push(Community::from_u32(u32::try_from(value)?));
                }
            }
            32 => {
                let values = attribute.get("value").and_then(Value::as_array);
                for value in values.into_iter().flatten() {
                    let field = |name: &str| -> anyhow::Result<u32> {
                        let number = value.get(name).and_then(Value::as_u64).unwrap_or_default();
                        Ok(u32::try_from(number)?)
                    };
                    path.large_communities.push(LargeCommunity(
                        field("ASN")?,
                        field("LocalData1")?,
                        field("LocalData2")?,
                    ));
                }
            }
            _ => {}
        }
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rib_json() {
        // Captured from gobgp 3.10 (`-j global rib`): a local route with communities.
        let output = r#"{"203.0.113.5/32":[{"nlri":{"prefix":"203.0.113.5/32"},"age":1795586596,"best":true,"attrs":[{"type":1,"value":2},{"type":8,"communities":[4259840001]},{"type":32,"value":[{"ASN":64512,"LocalData1":1,"LocalData2":2}]},{"type":3,"nexthop":"0.0.0.0"}],"stale":false}]}"#;
        let paths = parse_routes(output).unwrap();
        assert_eq!(paths.len(), 1);
        assert!(paths[0].best);
        assert!(paths[0].next_hops.is_empty());
        assert_eq!(paths[0].communities, vec![Community(65000, 1)]);
        assert_eq!(paths[0].large_communities, vec![LargeCommunity(64512, 1, 2)]);
        assert!(parse_routes("").unwrap().is_empty());
    }

    #[test]
    fn ipv6_rib_json() {
        let output = r#"{"2001:db8:ff::5/128":[{"nlri":{"prefix":"2001:db8:ff::5/128"},"best":true,"attrs":[{"type":1,"value":2},{"type":2,"as_paths":[{"segment_type":2,"num":1,"asns":[64512]}]},{"type":14,"nexthop":"2001:db8::11","afi":2,"safi":1,"value":[{"prefix":"2001:db8:ff::5/128"}]}],"neighbor-ip":"2001:db8::11"}]}"#;
        let paths = parse_routes(output).unwrap();
        assert_eq!(paths[0].as_path, vec![64512]);
        assert_eq!(paths[0].next_hops, vec!["2001:db8::11".parse::<IpAddr>().unwrap()]);
        assert_eq!(paths[0].peer, Some("2001:db8::11".parse().unwrap()));
    }

    #[test]
    fn neighbor_state() {
        let json = serde_json::json!({"state": {"session_state": 6}});
        assert_eq!(parse_session_state(&json).unwrap(), SessionState::Established);
        let json = serde_json::json!({"state": {"session_state": "active"}});
        assert_eq!(parse_session_state(&json).unwrap(), SessionState::Active);
    }
}
