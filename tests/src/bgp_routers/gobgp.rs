//! GoBGP: gobgpd with a TOML configuration and its gRPC API on the namespace's loopback, read
//! back with the `gobgp` CLI's JSON output. It installs nothing in the kernel (that would take
//! zebra), so tests check its RIB.

use std::{fmt::Write as _, net::IpAddr};

use super::{LearnedRoute, Router, RouterConfig};
use crate::tools::system_tool;

/// The API port inside the router's namespace (namespaces do not share loopback).
const API: &str = "127.0.0.1:50051";

pub fn start(router: &mut Router, config: &RouterConfig) -> anyhow::Result<()> {
    let mut conf =
        format!("[global.config]\n  as = {}\n  router-id = \"{}\"\n", config.asn, config.router_id);
    for neighbor in &config.neighbors {
        let family = if neighbor.address.is_ipv4() { "ipv4-unicast" } else { "ipv6-unicast" };
        write!(
            conf,
            "[[neighbors]]\n  [neighbors.config]\n    neighbor-address = \"{}\"\n    peer-as = {}\n",
            neighbor.address, neighbor.asn
        )?;
        if let Some(password) = &neighbor.password {
            writeln!(conf, "    auth-password = \"{password}\"")?;
        }
        write!(
            conf,
            "  [[neighbors.afi-safis]]\n    [neighbors.afi-safis.config]\n      afi-safi-name = \"{family}\"\n"
        )?;
        if neighbor.graceful_restart {
            write!(
                conf,
                "    [neighbors.afi-safis.mp-graceful-restart.config]\n      enabled = true\n  [neighbors.graceful-restart.config]\n    enabled = true\n    helper-only = true\n"
            )?;
        }
    }
    std::fs::write(router.dir().join("gobgpd.toml"), conf)?;
    let config_path = router.dir().join("gobgpd.toml").to_string_lossy().into_owned();
    router.spawn(
        "gobgpd",
        &system_tool("gobgpd"),
        &["-f", &config_path, "-t", "toml", "--api-hosts", API, "--pprof-disable", "-p"],
    )
}

fn gobgp(router: &Router, args: &[&str]) -> anyhow::Result<serde_json::Value> {
    let (host, port) = API.split_once(':').expect("host:port");
    let mut full = vec!["-u", host, "-p", port];
    full.extend_from_slice(args);
    full.push("-j");
    let text = router.control(&system_tool("gobgp"), &full)?;
    Ok(serde_json::from_str(&text)?)
}

pub fn describe(router: &Router) -> anyhow::Result<String> {
    Ok(format!("{}\n{}", gobgp(router, &["neighbor"])?, gobgp(router, &["global", "rib"])?))
}

pub fn established(router: &Router, neighbor: IpAddr) -> anyhow::Result<bool> {
    let neighbors = gobgp(router, &["neighbor"])?;
    Ok(neighbors.as_array().into_iter().flatten().any(|n| {
        let state = n.get("state");
        state.and_then(|s| s.get("neighbor_address")).and_then(|a| a.as_str())
            == Some(&neighbor.to_string())
            && state.and_then(|s| s.get("session_state")).and_then(|s| s.as_u64()) == Some(6)
    }))
}

pub fn prefix_count(router: &Router) -> anyhow::Result<usize> {
    let mut count = 0;
    for family in ["ipv4", "ipv6"] {
        let summary = gobgp(router, &["global", "rib", "-a", family, "summary"])?;
        count +=
            summary.get("num_destination").and_then(|n| n.as_u64()).unwrap_or_default() as usize;
    }
    Ok(count)
}

pub fn routes(router: &Router) -> anyhow::Result<Vec<LearnedRoute>> {
    let mut routes = Vec::new();
    for family in ["ipv4", "ipv6"] {
        let rib = gobgp(router, &["global", "rib", "-a", family])?;
        for (prefix, paths) in rib.as_object().into_iter().flatten() {
            for path in paths.as_array().into_iter().flatten() {
                routes.push(parse_path(prefix, path));
            }
        }
    }
    Ok(routes)
}

fn parse_path(prefix: &str, path: &serde_json::Value) -> LearnedRoute {
    let mut route = LearnedRoute {
        prefix: prefix.to_string(),
        next_hops: Vec::new(),
        as_path: Vec::new(),
        local_pref: None,
        communities: Vec::new(),
        large_communities: Vec::new(),
    };
    for attribute in path.get("attrs").and_then(|a| a.as_array()).into_iter().flatten() {
        let value = |key: &str| attribute.get(key);
        match value("type").and_then(|t| t.as_u64()) {
            Some(2) => {
                for segment in value("as_paths").and_then(|s| s.as_array()).into_iter().flatten() {
                    let asns = segment.get("asns").and_then(|a| a.as_array()).into_iter().flatten();
                    route.as_path.extend(asns.filter_map(|asn| asn.as_u64()).map(|asn| asn as u32));
                }
            }
            Some(3) | Some(14) => {
                let hop: Option<IpAddr> =
                    value("nexthop").and_then(|n| n.as_str()).and_then(|n| n.parse().ok());
                route.next_hops.extend(hop);
            }
            Some(5) => route.local_pref = value("value").and_then(|v| v.as_u64()).map(|v| v as u32),
            Some(8) => {
                let communities =
                    value("communities").and_then(|c| c.as_array()).into_iter().flatten();
                route.communities.extend(
                    communities
                        .filter_map(|c| c.as_u64())
                        .map(|c| format!("{}:{}", c >> 16, c & 0xffff)),
                );
            }
            Some(32) => {
                for large in value("value").and_then(|v| v.as_array()).into_iter().flatten() {
                    let part =
                        |key: &str| large.get(key).and_then(|v| v.as_u64()).unwrap_or_default();
                    route.large_communities.push(format!(
                        "{}:{}:{}",
                        part("ASN"),
                        part("LocalData1"),
                        part("LocalData2")
                    ));
                }
            }
            _ => {}
        }
    }
    route
}
