//! BIRD 2: one `bgp` protocol per neighbor, learned routes exported to the kernel table (with
//! equal paths merged into ECMP routes); read back with `birdc show route all`.

use std::{fmt::Write as _, net::IpAddr};

use super::{BFD_INTERVAL, BFD_MULTIPLIER, LearnedRoute, Router, RouterConfig};
use crate::tools::system_tool;

pub fn start(router: &mut Router, config: &RouterConfig) -> anyhow::Result<()> {
    let mut conf = format!("router id {};\nprotocol device {{}}\n", config.router_id);
    // Connected routes feed recursive next-hop resolution for iBGP; they are already in the
    // kernel, so the kernel protocols skip them.
    conf.push_str("protocol direct { ipv4; ipv6; }\n");
    conf.push_str(
        "protocol kernel { ipv4 { export where source != RTS_DEVICE; }; merge paths on; }\n",
    );
    conf.push_str(
        "protocol kernel { ipv6 { export where source != RTS_DEVICE; }; merge paths on; }\n",
    );
    if config.neighbors.iter().any(|neighbor| neighbor.bfd) {
        writeln!(
            conf,
            "protocol bfd {{ interface \"*\" {{ interval {} ms; multiplier {}; }}; }}",
            BFD_INTERVAL.as_millis(),
            BFD_MULTIPLIER
        )?;
    }
    for (index, neighbor) in config.neighbors.iter().enumerate() {
        let family = if neighbor.address.is_ipv4() { "ipv4" } else { "ipv6" };
        let internal = neighbor.asn == config.asn;
        write!(
            conf,
            "protocol bgp peer{index} {{\n  local as {};\n  neighbor {} as {};\n",
            config.asn, neighbor.address, neighbor.asn
        )?;
        if !internal {
            conf.push_str("  direct;\n");
        }
        if let Some(password) = &neighbor.password {
            writeln!(conf, "  password \"{password}\";")?;
        }
        if neighbor.graceful_restart {
            conf.push_str("  graceful restart on;\n");
        }
        if neighbor.bfd {
            // After an error (BFD down is one) BIRD waits 60 s before taking a session again
            // by default; a second keeps the recovery a test can wait for short.
            conf.push_str("  bfd on;\n  error wait time 1, 10;\n");
        }
        // iBGP next hops resolve through the connected routes of the shared segment.
        let gateway = if internal {
            format!(" gateway recursive; igp table master{};", &family[3..])
        } else {
            String::new()
        };
        writeln!(conf, "  {family} {{ import all; export none;{gateway} }};\n}}")?;
    }
    std::fs::write(router.dir().join("bird.conf"), conf)?;
    let dir = router.dir().to_path_buf();
    let bird = system_tool("bird");
    router.spawn(
        "bird",
        &bird,
        &[
            "-f",
            "-c",
            &dir.join("bird.conf").to_string_lossy(),
            "-s",
            &dir.join("bird.ctl").to_string_lossy(),
            "-P",
            &dir.join("bird.pid").to_string_lossy(),
        ],
    )
}

fn birdc(router: &Router, command: &str) -> anyhow::Result<String> {
    let socket = router.dir().join("bird.ctl");
    router.control(&system_tool("birdc"), &["-s", &socket.to_string_lossy(), command])
}

pub fn describe(router: &Router) -> anyhow::Result<String> {
    Ok(format!("{}{}", birdc(router, "show protocols all")?, birdc(router, "show route all")?))
}

pub fn established(router: &Router, neighbor: IpAddr) -> anyhow::Result<bool> {
    let protocols = birdc(router, "show protocols all")?;
    // Each protocol block names its neighbor address and its BGP state.
    Ok(protocols.split("\n\n").any(|block| {
        block.contains(&format!("Neighbor address: {neighbor}"))
            && block.contains("BGP state:          Established")
    }))
}

pub fn bfd_up(router: &Router, neighbor: IpAddr) -> anyhow::Result<bool> {
    // "192.0.2.11  br0  Up  12:00:00.000  0.300  0.900"
    let sessions = birdc(router, "show bfd sessions")?;
    Ok(sessions.lines().any(|line| {
        let words: Vec<&str> = line.split_whitespace().collect();
        words.first() == Some(&neighbor.to_string().as_str()) && words.get(2) == Some(&"Up")
    }))
}

pub fn prefix_count(router: &Router) -> anyhow::Result<usize> {
    let count = birdc(router, "show route count")?;
    // "N of M routes for K networks in table master4"
    let mut networks = 0;
    for line in count.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if let Some(at) = words.iter().position(|w| *w == "networks") {
            networks += words.get(at - 1).and_then(|n| n.parse::<usize>().ok()).unwrap_or(0);
        }
    }
    Ok(networks)
}

pub fn routes(router: &Router) -> anyhow::Result<Vec<LearnedRoute>> {
    Ok(parse_routes(&birdc(router, "show route all")?))
}

/// Parses `show route all`: a line starting with a prefix opens a route, an indented
/// "unicast [" line opens another path to the same prefix, attribute lines follow each.
fn parse_routes(text: &str) -> Vec<LearnedRoute> {
    let mut routes: Vec<LearnedRoute> = Vec::new();
    let mut prefix = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.contains(" unicast [") || trimmed.starts_with("unicast [") {
            if !line.starts_with(char::is_whitespace) {
                prefix = trimmed.split_whitespace().next().unwrap_or_default().to_string();
            }
            routes.push(LearnedRoute {
                prefix: prefix.clone(),
                next_hops: Vec::new(),
                as_path: Vec::new(),
                local_pref: None,
                communities: Vec::new(),
                large_communities: Vec::new(),
            });
            continue;
        }
        let Some(route) = routes.last_mut() else { continue };
        if let Some(rest) = trimmed.strip_prefix("via ") {
            if let Some(hop) = rest.split_whitespace().next().and_then(|h| h.parse().ok()) {
                route.next_hops.push(hop);
            }
        } else if let Some(path) = trimmed.strip_prefix("BGP.as_path:") {
            route.as_path = path.split_whitespace().filter_map(|asn| asn.parse().ok()).collect();
        } else if let Some(value) = trimmed.strip_prefix("BGP.local_pref:") {
            route.local_pref = value.trim().parse().ok();
        } else if let Some(list) = trimmed.strip_prefix("BGP.community:") {
            route.communities = tuples(list);
        } else if let Some(list) = trimmed.strip_prefix("BGP.large_community:") {
            route.large_communities = tuples(list);
        }
    }
    routes
}

/// "(65535,65281) (1,2)" -> ["65535:65281", "1:2"].
fn tuples(list: &str) -> Vec<String> {
    list.split('(')
        .filter_map(|part| part.split(')').next())
        .map(|inner| inner.split(',').map(str::trim).collect::<Vec<_>>().join(":"))
        .filter(|t| !t.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_show_route_all_with_ecmp_paths_and_attributes() {
        let text = [
            "BIRD 2.0.12 ready.",
            "Table master4:",
            "198.51.100.7/32      unicast [peer0 06:05:01.123] * (100) [AS64512i]",
            "\tvia 192.0.2.11 on br0",
            "\tType: BGP univ",
            "\tBGP.origin: IGP",
            "\tBGP.as_path: 64512",
            "\tBGP.next_hop: 192.0.2.11",
            "\tBGP.local_pref: 100",
            "\tBGP.community: (65535,65281) (1,2)",
            "\tBGP.large_community: (64512, 1, 2)",
            "                     unicast [peer1 06:05:01.456] (100) [AS64512i]",
            "\tvia 192.0.2.12 on br0",
            "\tBGP.as_path: 64512",
        ]
        .join("\n");
        let text = text.as_str();
        let routes = parse_routes(text);
        assert_eq!(routes.len(), 2);
        assert_eq!(routes[0].prefix, "198.51.100.7/32");
        assert_eq!(routes[1].prefix, "198.51.100.7/32");
        assert_eq!(routes[0].next_hops, ["192.0.2.11".parse::<IpAddr>().unwrap()]);
        assert_eq!(routes[0].as_path, [64512]);
        assert_eq!(routes[0].local_pref, Some(100));
        assert_eq!(routes[0].communities, ["65535:65281", "1:2"]);
        assert_eq!(routes[0].large_communities, ["64512:1:2"]);
        assert_eq!(routes[1].next_hops, ["192.0.2.12".parse::<IpAddr>().unwrap()]);
    }
}
