//! FRR: zebra and bgpd as the `frr` user (the Debian build only lets members of its vty group
//! use the control sockets), with their sockets in the router's own directory; read back with
//! `vtysh --vty_socket`.

use std::{fmt::Write as _, net::IpAddr, process::Command};

use super::{BFD_INTERVAL, BFD_MULTIPLIER, LearnedRoute, Router, RouterConfig, output_of};
use crate::tools::system_tool;

pub fn start(router: &mut Router, config: &RouterConfig) -> anyhow::Result<()> {
    let mut conf = format!(
        "frr defaults traditional\nhostname mlbrs\nlog stdout\nrouter bgp {}\n bgp router-id {}\n no bgp ebgp-requires-policy\n no bgp default ipv4-unicast\n bgp bestpath as-path multipath-relax\n",
        config.asn, config.router_id
    );
    for neighbor in &config.neighbors {
        writeln!(conf, " neighbor {} remote-as {}", neighbor.address, neighbor.asn)?;
        if let Some(password) = &neighbor.password {
            writeln!(conf, " neighbor {} password {password}", neighbor.address)?;
        }
        if neighbor.graceful_restart {
            writeln!(conf, " neighbor {} graceful-restart-helper", neighbor.address)?;
        }
        if neighbor.bfd {
            writeln!(conf, " neighbor {} bfd profile metallb-rs", neighbor.address)?;
        }
    }
    for family in ["ipv4", "ipv6"] {
        writeln!(
            conf,
            " address-family {family} unicast\n  maximum-paths 8\n  maximum-paths ibgp 8"
        )?;
        for neighbor in
            config.neighbors.iter().filter(|n| n.address.is_ipv4() == (family == "ipv4"))
        {
            writeln!(conf, "  neighbor {} activate", neighbor.address)?;
        }
        conf.push_str(" exit-address-family\n");
    }
    let dir = router.dir().to_path_buf();
    std::fs::write(dir.join("frr.conf"), conf)?;
    std::fs::write(dir.join("zebra.conf"), "hostname mlbrs\n")?;
    // The daemons drop to the frr user, which must own their directory.
    output_of(Command::new("chown").args(["-R", "frr:frr"]).arg(&dir))?;
    let path = |name: &str| dir.join(name).to_string_lossy().into_owned();
    let zserv = path("zserv.api");
    let socket_dir = dir.to_string_lossy().into_owned();
    // Both daemons take the same options, but for their configuration and pid files.
    let args = |daemon: &str, config: &str| {
        let (config, pid) = (path(config), path(&format!("{daemon}.pid")));
        let fixed =
            ["-z", &zserv, "--vty_socket", &socket_dir, "-u", "frr", "-g", "frr"].map(String::from);
        [vec!["-f".to_string(), config, "-i".to_string(), pid], fixed.to_vec()].concat()
    };
    let zebra_args = args("zebra", "zebra.conf");
    router.spawn(
        "zebra",
        &system_tool("zebra"),
        &zebra_args.iter().map(String::as_str).collect::<Vec<_>>(),
    )?;
    // bgpd needs zebra's socket to install routes; give zebra a moment to create it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !dir.join("zserv.api").exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    if config.neighbors.iter().any(|neighbor| neighbor.bfd) {
        // bgpd asks bfdd (through zebra) for a session per neighbor with `bfd`; the peers'
        // timers come from bfdd's configuration.
        let bfd_conf = format!(
            "hostname mlbrs\nbfd\n profile metallb-rs\n  receive-interval {interval}\n  transmit-interval {interval}\n  detect-multiplier {BFD_MULTIPLIER}\n !\n!\n",
            interval = BFD_INTERVAL.as_millis()
        );
        std::fs::write(dir.join("bfdd.conf"), bfd_conf)?;
        output_of(Command::new("chown").args(["frr:frr"]).arg(dir.join("bfdd.conf")))?;
        let mut bfdd_args = args("bfdd", "bfdd.conf");
        bfdd_args.extend(["--bfdctl".to_string(), path("bfdd.sock")]);
        router.spawn(
            "bfdd",
            &system_tool("bfdd"),
            &bfdd_args.iter().map(String::as_str).collect::<Vec<_>>(),
        )?;
    }
    let bgpd_args = args("bgpd", "frr.conf");
    router.spawn(
        "bgpd",
        &system_tool("bgpd"),
        &bgpd_args.iter().map(String::as_str).collect::<Vec<_>>(),
    )
}

fn vtysh(router: &Router, command: &str) -> anyhow::Result<serde_json::Value> {
    let socket_dir = router.dir().to_string_lossy().into_owned();
    let text =
        router.control(&system_tool("vtysh"), &["--vty_socket", &socket_dir, "-c", command])?;
    Ok(serde_json::from_str(&text)?)
}

pub fn describe(router: &Router) -> anyhow::Result<String> {
    let socket_dir = router.dir().to_string_lossy().into_owned();
    let show = |command: &str| {
        router.control(&system_tool("vtysh"), &["--vty_socket", &socket_dir, "-c", command])
    };
    Ok(format!(
        "{}{}{}",
        show("show bgp summary")?,
        show("show bgp ipv4 unicast")?,
        show("show bgp ipv6 unicast")?
    ))
}

pub fn established(router: &Router, neighbor: IpAddr) -> anyhow::Result<bool> {
    let neighbors = vtysh(router, "show bgp neighbors json")?;
    Ok(neighbors.get(neighbor.to_string()).and_then(|n| n.get("bgpState")).and_then(|s| s.as_str())
        == Some("Established"))
}

pub fn bfd_up(router: &Router, neighbor: IpAddr) -> anyhow::Result<bool> {
    let peers = vtysh(router, "show bfd peers json")?;
    Ok(peers.as_array().into_iter().flatten().any(|peer| {
        peer.get("peer").and_then(|p| p.as_str()) == Some(neighbor.to_string().as_str())
            && peer.get("status").and_then(|s| s.as_str()) == Some("up")
    }))
}

pub fn prefix_count(router: &Router) -> anyhow::Result<usize> {
    let mut count = 0;
    for family in ["ipv4", "ipv6"] {
        let summary = vtysh(router, &format!("show bgp {family} unicast summary json"))?;
        count +=
            summary.get("totalPrefixCounter").and_then(|c| c.as_u64()).unwrap_or_default() as usize;
    }
    Ok(count)
}

pub fn routes(router: &Router) -> anyhow::Result<Vec<LearnedRoute>> {
    let mut routes = Vec::new();
    for family in ["ipv4", "ipv6"] {
        let table = vtysh(router, &format!("show bgp {family} unicast json"))?;
        let Some(prefixes) = table.get("routes").and_then(|r| r.as_object()) else { continue };
        for prefix in prefixes.keys() {
            let detail = vtysh(router, &format!("show bgp {family} unicast {prefix} json"))?;
            for path in detail.get("paths").and_then(|p| p.as_array()).into_iter().flatten() {
                routes.push(parse_path(prefix, path));
            }
        }
    }
    Ok(routes)
}

fn parse_path(prefix: &str, path: &serde_json::Value) -> LearnedRoute {
    let string_list = |key: &str| -> Vec<String> {
        path.get(key)
            .and_then(|c| c.get("string"))
            .and_then(|s| s.as_str())
            .map(|s| s.split_whitespace().map(String::from).collect())
            .unwrap_or_default()
    };
    LearnedRoute {
        prefix: prefix.to_string(),
        next_hops: path
            .get("nexthops")
            .and_then(|n| n.as_array())
            .into_iter()
            .flatten()
            .filter(|hop| hop.get("scope").and_then(|s| s.as_str()) != Some("link-local"))
            .filter_map(|hop| {
                hop.get("ip").and_then(|ip| ip.as_str()).and_then(|ip| ip.parse().ok())
            })
            .collect(),
        as_path: path
            .get("aspath")
            .and_then(|a| a.get("string"))
            .and_then(|s| s.as_str())
            .map(|s| s.split_whitespace().filter_map(|asn| asn.parse().ok()).collect())
            .unwrap_or_default(),
        local_pref: path.get("locPrf").and_then(|l| l.as_u64()).map(|l| l as u32),
        communities: string_list("community"),
        large_communities: string_list("largeCommunity"),
    }
}
