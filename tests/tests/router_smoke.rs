//! Smoke tests of the lab and the routers: each of BIRD, FRR and GoBGP, as the router under
//! test in the lab's router namespace, reaches Established with another real router in a node
//! namespace (the "announcer") and learns the prefixes it announces, with their attributes, into
//! its BGP table and (BIRD, FRR) the kernel table. Each test pairs different implementations so
//! every configuration generator and every reader is exercised. Needs root and the three
//! routers installed; tests run in parallel, each in its own lab.

use std::{net::IpAddr, time::Duration};

use metallb_tests::{
    netns::{Family, Lab, Netns, Prefix},
    routers::{
        BgpPath, Bird, Community, Frr, GoBgp, LargeCommunity, Neighbor, Originate, Router,
        RouterConfig,
    },
};

/// Bound of every wait: sessions connect within seconds, given the short connect timers.
const WAIT: Duration = Duration::from_secs(30);

fn prefix(text: &str) -> Prefix {
    text.parse().expect("a valid prefix")
}

fn addr(ip: impl Into<IpAddr>) -> IpAddr {
    ip.into()
}

fn only_path(paths: &[BgpPath]) -> &BgpPath {
    assert_eq!(paths.len(), 1, "expected one path: {paths:#?}");
    &paths[0]
}

/// BIRD learns an IPv4 and an IPv6 prefix from GoBGP over eBGP (2-octet ASNs), one session per
/// family, and installs both in the kernel.
#[test]
fn bird_learns_from_gobgp_over_ebgp() -> anyhow::Result<()> {
    let lab = Lab::new(1)?;
    let node = lab.node(0);
    let (v4, v6) = (prefix("203.0.113.10/32"), prefix("2001:db8:ff::10/128"));

    let mut router = Bird::start(
        lab.router(),
        RouterConfig::new(64500, Lab::ROUTER_IPV4)
            .neighbor(Neighbor::new(addr(node.ipv4), 64512))
            .neighbor(Neighbor::new(addr(node.ipv6), 64512)),
    )?;
    let mut announcer = GoBgp::start(
        &node.netns,
        RouterConfig::new(64512, node.ipv4)
            .neighbor(Neighbor::new(addr(Lab::ROUTER_IPV4), 64500))
            .neighbor(Neighbor::new(addr(Lab::ROUTER_IPV6), 64500))
            .originate(
                Originate::new(v4)
                    .community(Community(65000, 10))
                    .large_community(LargeCommunity(64512, 1, 2)),
            )
            .originate(Originate::new(v6).community(Community(65000, 11))),
    )?;

    router.wait_established(addr(node.ipv4), WAIT)?;
    router.wait_established(addr(node.ipv6), WAIT)?;
    announcer.wait_established(addr(Lab::ROUTER_IPV4), WAIT)?;

    let paths = router.wait_prefix(v4, WAIT)?;
    let path = only_path(&paths);
    assert!(path.best, "{path:?}");
    assert_eq!(path.peer, Some(addr(node.ipv4)));
    assert_eq!(path.next_hops, vec![addr(node.ipv4)]);
    assert_eq!(path.as_path, vec![64512]);
    assert_eq!(path.communities, vec![Community(65000, 10)]);
    assert_eq!(path.large_communities, vec![LargeCommunity(64512, 1, 2)]);

    let paths = router.wait_prefix(v6, WAIT)?;
    let path = only_path(&paths);
    assert_eq!(path.peer, Some(addr(node.ipv6)));
    assert_eq!(path.next_hops.first(), Some(&addr(node.ipv6)));
    assert_eq!(path.communities, vec![Community(65000, 11)]);

    let route = lab.router().wait_kernel_route(v4, WAIT, |_| true)?;
    assert_eq!(route.protocol, "bird");
    assert_eq!(route.gateways(), vec![addr(node.ipv4)]);
    let route = lab.router().wait_kernel_route(v6, WAIT, |_| true)?;
    assert_eq!(route.gateways().len(), 1, "{route:?}");

    // The announcer keeps what it learned to itself: BIRD exports nothing back.
    assert!(announcer.paths(v4)?.iter().all(|path| path.peer.is_none()));
    Ok(())
}

/// FRR learns one prefix from two BIRD nodes over iBGP with a 4-octet ASN and graceful restart,
/// keeps both paths and installs an ECMP route over both nodes.
#[test]
fn frr_learns_ecmp_from_two_birds_over_ibgp() -> anyhow::Result<()> {
    const ASN: u32 = 4_200_000_001;
    let lab = Lab::new(2)?;
    let (v4, v6) = (prefix("203.0.113.20/32"), prefix("2001:db8:ff::20/128"));

    let mut config = RouterConfig::new(ASN, Lab::ROUTER_IPV4);
    for node in lab.nodes() {
        config = config
            .neighbor(Neighbor::new(addr(node.ipv4), ASN).graceful_restart())
            .neighbor(Neighbor::new(addr(node.ipv6), ASN));
    }
    let mut router = Frr::start(lab.router(), config)?;
    let mut announcers = Vec::new();
    for node in lab.nodes() {
        announcers.push(Bird::start(
            &node.netns,
            RouterConfig::new(ASN, node.ipv4)
                .neighbor(Neighbor::new(addr(Lab::ROUTER_IPV4), ASN).graceful_restart())
                .neighbor(Neighbor::new(addr(Lab::ROUTER_IPV6), ASN))
                .originate(
                    Originate::new(v4)
                        .community(Community(65000, 20))
                        .large_community(LargeCommunity(ASN, 2, 0)),
                )
                .originate(Originate::new(v6)),
        )?);
    }

    for node in lab.nodes() {
        router.wait_established(addr(node.ipv4), WAIT)?;
        router.wait_established(addr(node.ipv6), WAIT)?;
    }
    for announcer in &mut announcers {
        announcer.wait_established(addr(Lab::ROUTER_IPV4), WAIT)?;
    }

    let both_and_best = |paths: &[BgpPath]| paths.len() == 2 && paths.iter().any(|path| path.best);
    let paths = router.wait_paths(v4, WAIT, &both_and_best)?;
    for path in &paths {
        assert_eq!(path.as_path, Vec::<u32>::new(), "iBGP: {path:?}");
        assert_eq!(path.local_pref, Some(100), "{path:?}");
        assert_eq!(path.communities, vec![Community(65000, 20)]);
        assert_eq!(path.large_communities, vec![LargeCommunity(ASN, 2, 0)]);
    }
    let mut peers: Vec<_> = paths.iter().filter_map(|path| path.peer).collect();
    peers.sort();
    assert_eq!(peers, vec![addr(lab.node(0).ipv4), addr(lab.node(1).ipv4)]);
    assert_eq!(paths.iter().filter(|path| path.best).count(), 1, "{paths:#?}");

    let route = lab.router().wait_kernel_route(v4, WAIT, |route| route.next_hops.len() == 2)?;
    assert_eq!(route.protocol, "bgp");
    let mut gateways = route.gateways();
    gateways.sort();
    assert_eq!(gateways, vec![addr(lab.node(0).ipv4), addr(lab.node(1).ipv4)]);

    router.wait_paths(v6, WAIT, &both_and_best)?;
    let route = lab.router().wait_kernel_route(v6, WAIT, |route| route.next_hops.len() == 2)?;
    assert!(route.gateways().iter().all(|gateway| Family::of(*gateway) == Family::Ipv6));
    Ok(())
}

/// GoBGP (passive, TCP MD5) learns from FRR over eBGP between a 2-octet and a 4-octet ASN.
/// GoBGP does not install routes, so only its RIB is checked.
#[test]
fn gobgp_learns_from_frr_with_md5() -> anyhow::Result<()> {
    const NODE_ASN: u32 = 4_200_000_002;
    let lab = Lab::new(1)?;
    let node = lab.node(0);
    let v4 = prefix("203.0.113.30/32");

    let mut router = GoBgp::start(
        lab.router(),
        RouterConfig::new(64500, Lab::ROUTER_IPV4)
            .neighbor(Neighbor::new(addr(node.ipv4), NODE_ASN).passive().password("s3cret")),
    )?;
    let mut announcer = Frr::start(
        &node.netns,
        RouterConfig::new(NODE_ASN, node.ipv4)
            .neighbor(Neighbor::new(addr(Lab::ROUTER_IPV4), 64500).password("s3cret"))
            .originate(
                Originate::new(v4)
                    .community(Community(65000, 30))
                    .large_community(LargeCommunity(NODE_ASN, 3, 4)),
            ),
    )?;

    router.wait_established(addr(node.ipv4), WAIT)?;
    announcer.wait_established(addr(Lab::ROUTER_IPV4), WAIT)?;

    let paths = router.wait_prefix(v4, WAIT)?;
    let path = only_path(&paths);
    assert!(path.best, "{path:?}");
    assert_eq!(path.peer, Some(addr(node.ipv4)));
    assert_eq!(path.next_hops, vec![addr(node.ipv4)]);
    assert_eq!(path.as_path, vec![NODE_ASN]);
    assert_eq!(path.communities, vec![Community(65000, 30)]);
    assert_eq!(path.large_communities, vec![LargeCommunity(NODE_ASN, 3, 4)]);

    // The announcer's own table has the prefix as a local path.
    let local = announcer.wait_prefix(v4, WAIT)?;
    assert_eq!(only_path(&local).peer, None);
    Ok(())
}

/// A client namespace reaches the router on its own link, and the router has routes to both
/// the client and node subnets.
#[test]
fn lab_plumbing() -> anyhow::Result<()> {
    let mut lab = Lab::new(2)?;
    let client = lab.add_client()?.clone();
    assert_eq!(lab.node(1).ipv4.to_string(), "192.0.2.12");
    assert_eq!(lab.node(1).ipv6.to_string(), "2001:db8::12");
    let routes = lab.router().kernel_routes(Family::Ipv4)?;
    for subnet in ["192.0.2.0/24", "198.51.100.0/28"] {
        assert!(routes.iter().any(|route| route.dst == prefix(subnet)), "{subnet}: {routes:?}");
    }
    let default = client.netns.kernel_route(Prefix::default_route(Family::Ipv6))?;
    let default = default.expect("the client has an IPv6 default route");
    assert_eq!(default.gateways(), vec![addr(client.router_ipv6)]);
    let forwarding = lab
        .router()
        .run("sysctl", &["-n", "net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"])?;
    assert_eq!(forwarding.split_whitespace().collect::<Vec<_>>(), ["1", "1"]);
    Ok(())
}

/// A namespace left behind under the same name (a killed run whose pid was reused) is replaced,
/// and a dropped namespace is gone.
#[test]
fn stale_namespace_is_replaced() -> anyhow::Result<()> {
    let name = format!("mlbrs-{}-stale", std::process::id());
    let status = std::process::Command::new("ip").args(["netns", "add", &name]).status()?;
    assert!(status.success());
    let netns = Netns::create(&name)?;
    assert_eq!(netns.ip("-j link show lo")?.matches("\"UP\"").count(), 1);
    drop(netns);
    let list = std::process::Command::new("ip").args(["netns", "list"]).output()?;
    assert!(!String::from_utf8_lossy(&list.stdout).contains(&name));
    Ok(())
}
