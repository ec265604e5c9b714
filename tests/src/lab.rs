//! A network lab of namespaces the test creates: one router namespace with a bridge that
//! node namespaces join by veth (one L2 segment, so a router can load-balance over several
//! nodes), and optionally a client namespace on its own link to the router. Addresses come from
//! documentation ranges; traffic never leaves these namespaces. Everything is deleted on drop,
//! also when the test panics; namespaces are named `mlbrs-<pid>-...` so that
//! `tests/scripts/remove-stale-namespaces.sh` can clean up after a killed run.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    process::{Command, Output},
    sync::atomic::{AtomicU32, Ordering},
};

use crate::tools::{INSTALL_HINT, system_tool};

static NEXT_LAB: AtomicU32 = AtomicU32::new(0);

/// The router's address on the node segment.
pub const ROUTER_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// The router's IPv6 address on the node segment.
pub const ROUTER_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, 1);
/// The router's address on the client link.
pub const ROUTER_CLIENT_SIDE_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
/// The client's address.
pub const CLIENT_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
/// The segment client's address (on the nodes' segment, for layer 2 mode).
pub const SEGMENT_CLIENT_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
/// The segment client's IPv6 address.
pub const SEGMENT_CLIENT_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, 0x100);
/// More addresses of the segment client (192.0.2.150-169), so that several `arping`s can ask
/// side by side, each from its own address (see `neighbor_probes::arping_from_each`).
pub fn segment_client_sources() -> Vec<IpAddr> {
    (150..170).map(|last| IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))).collect()
}

/// A node namespace on the segment.
#[derive(Clone, Debug)]
pub struct Node {
    /// Namespace name.
    pub namespace: String,
    /// Its IPv4 address on the segment.
    pub v4: Ipv4Addr,
    /// Its IPv6 address on the segment.
    pub v6: Ipv6Addr,
}

/// The lab; dropping it deletes every namespace (and so every process left inside).
pub struct Lab {
    prefix: String,
    /// The router's namespace.
    pub router: String,
    /// Node namespaces, in creation order.
    pub nodes: Vec<Node>,
    /// The client namespace, if added.
    pub client: Option<String>,
    /// The client namespace on the nodes' segment, if added.
    pub segment_client: Option<String>,
    namespaces: Vec<String>,
}

impl Lab {
    /// A router namespace with a bridge holding 192.0.2.1/24 and 2001:db8:0:1::1/64, IP
    /// forwarding on, and `nodes` node namespaces at 192.0.2.11, .12, ...
    pub fn new(nodes: usize) -> anyhow::Result<Self> {
        ensure_root()?;
        system_tool("ip");
        let id = NEXT_LAB.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("mlbrs-{}-{id}", std::process::id());
        let mut lab = Self {
            router: format!("{prefix}-r"),
            prefix,
            nodes: Vec::new(),
            client: None,
            segment_client: None,
            namespaces: Vec::new(),
        };
        lab.add_namespace(&lab.router.clone())?;
        let router = lab.router.clone();
        ip(&["link", "add", "br0", "netns", &router, "type", "bridge"])?;
        ip_in(&router, &["link", "set", "br0", "up"])?;
        ip_in(&router, &["addr", "add", &format!("{ROUTER_V4}/24"), "dev", "br0"])?;
        ip_in(&router, &["addr", "add", &format!("{ROUTER_V6}/64"), "dev", "br0", "nodad"])?;
        sysctl(&router, "net.ipv4.ip_forward", "1")?;
        sysctl(&router, "net.ipv6.conf.all.forwarding", "1")?;
        // Several equal-cost paths towards one address: hash on ports too, so a test's
        // connections spread like real traffic.
        sysctl(&router, "net.ipv4.fib_multipath_hash_policy", "1")?;
        for _ in 0..nodes {
            lab.add_node()?;
        }
        Ok(lab)
    }

    /// Adds a node namespace joined to the router's bridge.
    pub fn add_node(&mut self) -> anyhow::Result<Node> {
        let index = self.nodes.len() as u8 + 1;
        let namespace = format!("{}-n{index}", self.prefix);
        self.add_namespace(&namespace)?;
        let router_side = format!("n{index}");
        self.link_to_router(&router_side, &namespace)?;
        ip_in(&self.router, &["link", "set", &router_side, "master", "br0", "up"])?;
        let v4 = Ipv4Addr::new(192, 0, 2, 10 + index);
        let v6 = Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, 0x10 + u16::from(index));
        ip_in(&namespace, &["addr", "add", &format!("{v4}/24"), "dev", "eth0"])?;
        ip_in(&namespace, &["addr", "add", &format!("{v6}/64"), "dev", "eth0", "nodad"])?;
        ip_in(&namespace, &["link", "set", "eth0", "up"])?;
        ip_in(&namespace, &["route", "add", "default", "via", &ROUTER_V4.to_string()])?;
        ip_in(&namespace, &["-6", "route", "add", "default", "via", &ROUTER_V6.to_string()])?;
        // As kube-proxy's IPVS mode sets them: the kernel answers ARP only for addresses of the
        // interface asked (a Service IP on loopback is not announced by the kernel), so that on
        // the segment only layer 2 mode's speaker answers for Service IPs.
        sysctl(&namespace, "net.ipv4.conf.all.arp_ignore", "1")?;
        sysctl(&namespace, "net.ipv4.conf.all.arp_announce", "2")?;
        let node = Node { namespace, v4, v6 };
        self.nodes.push(node.clone());
        Ok(node)
    }

    /// Adds a client namespace on its own link to the router (198.51.100.0/24), routed
    /// through the router.
    pub fn add_client(&mut self) -> anyhow::Result<String> {
        let namespace = format!("{}-c", self.prefix);
        self.add_namespace(&namespace)?;
        self.link_to_router("client", &namespace)?;
        ip_in(
            &self.router,
            &["addr", "add", &format!("{ROUTER_CLIENT_SIDE_V4}/24"), "dev", "client"],
        )?;
        ip_in(&self.router, &["link", "set", "client", "up"])?;
        ip_in(&namespace, &["addr", "add", &format!("{CLIENT_V4}/24"), "dev", "eth0"])?;
        ip_in(&namespace, &["link", "set", "eth0", "up"])?;
        ip_in(&namespace, &["route", "add", "default", "via", &ROUTER_CLIENT_SIDE_V4.to_string()])?;
        self.client = Some(namespace.clone());
        Ok(namespace)
    }

    /// Adds a client namespace on the nodes' segment itself (192.0.2.100, 2001:db8:0:1::100),
    /// as a host beside the nodes would be in layer 2 mode. It accepts gratuitous ARP for
    /// addresses it does not know yet, so tests can see them in its neighbour table.
    pub fn add_segment_client(&mut self) -> anyhow::Result<String> {
        let namespace = format!("{}-s", self.prefix);
        self.add_namespace(&namespace)?;
        self.link_to_router("segment", &namespace)?;
        ip_in(&self.router, &["link", "set", "segment", "master", "br0", "up"])?;
        ip_in(&namespace, &["addr", "add", &format!("{SEGMENT_CLIENT_V4}/24"), "dev", "eth0"])?;
        let v6 = format!("{SEGMENT_CLIENT_V6}/64");
        ip_in(&namespace, &["addr", "add", &v6, "dev", "eth0", "nodad"])?;
        for source in segment_client_sources() {
            ip_in(&namespace, &["addr", "add", &format!("{source}/24"), "dev", "eth0"])?;
        }
        ip_in(&namespace, &["link", "set", "eth0", "up"])?;
        self.segment_client = Some(namespace.clone());
        Ok(namespace)
    }

    /// The MAC address of `namespace`'s `eth0`.
    pub fn mac_of(namespace: &str) -> anyhow::Result<String> {
        let output = ip_in(namespace, &["-j", "link", "show", "eth0"])?;
        let links: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout)?;
        links
            .first()
            .and_then(|link| link["address"].as_str())
            .map(str::to_lowercase)
            .ok_or_else(|| anyhow::anyhow!("no MAC address on eth0 in {namespace}"))
    }

    /// Cuts the link of node `index` (0-based) as a failing cable or switch port would: the
    /// node's side goes down, while the router's bridge stays up (another port keeps it up, as a
    /// switch's other ports would), so that the router learns of the cut only through a
    /// protocol: BFD, or the BGP hold time.
    pub fn cut_node_link(&self, index: usize) -> anyhow::Result<()> {
        // A veth pair inside the router's namespace (this kernel has no dummy devices).
        let keeper = "keep-up";
        let has_keeper = ip_in(&self.router, &["link", "show", keeper]).is_ok();
        if !has_keeper {
            let peer = "keep-up-end";
            ip_in(&self.router, &["link", "add", keeper, "type", "veth", "peer", "name", peer])?;
            ip_in(&self.router, &["link", "set", peer, "up"])?;
            ip_in(&self.router, &["link", "set", keeper, "master", "br0", "up"])?;
        }
        ip_in(&self.nodes[index].namespace, &["link", "set", "eth0", "down"])?;
        Ok(())
    }

    /// Brings node `index`'s link back, with the IPv6 address and the default routes its going
    /// down removed.
    pub fn restore_node_link(&self, index: usize) -> anyhow::Result<()> {
        let node = &self.nodes[index];
        let namespace = &node.namespace;
        ip_in(namespace, &["link", "set", "eth0", "up"])?;
        let v6 = format!("{}/64", node.v6);
        ip_in(namespace, &["addr", "replace", &v6, "dev", "eth0", "nodad"])?;
        ip_in(namespace, &["route", "replace", "default", "via", &ROUTER_V4.to_string()])?;
        ip_in(namespace, &["-6", "route", "replace", "default", "via", &ROUTER_V6.to_string()])?;
        Ok(())
    }

    /// Routes in `namespace`'s kernel table for `family` ("-4" or "-6").
    pub fn kernel_routes(namespace: &str, family: &str) -> anyhow::Result<Vec<KernelRoute>> {
        let output =
            run(Command::new(system_tool("ip"))
                .args([family, "-n", namespace, "-j", "route", "show"]))?;
        let entries: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout)?;
        Ok(entries.iter().map(KernelRoute::from_json).collect())
    }

    /// A veth pair: `router_side` in the router's namespace, `eth0` in `namespace`.
    fn link_to_router(&self, router_side: &str, namespace: &str) -> anyhow::Result<()> {
        let router = self.router.as_str();
        ip(&[
            "link",
            "add",
            router_side,
            "netns",
            router,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            namespace,
        ])?;
        Ok(())
    }

    fn add_namespace(&mut self, name: &str) -> anyhow::Result<()> {
        ip(&["netns", "add", name])?;
        self.namespaces.push(name.to_string());
        ip_in(name, &["link", "set", "lo", "up"])?;
        Ok(())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        delete_namespaces(&self.namespaces);
    }
}

/// Deletes `namespaces`, last first, with every process left in them; for `Drop`s, so it
/// reports nothing.
pub fn delete_namespaces(namespaces: &[String]) {
    for namespace in namespaces.iter().rev() {
        // Processes first: a namespace whose processes live on is only unlinked.
        if let Ok(output) = Command::new("ip").args(["netns", "pids", namespace]).output() {
            for pid in String::from_utf8_lossy(&output.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-9", pid]).status();
            }
        }
        let _ = Command::new("ip").args(["netns", "delete", namespace]).status();
    }
}

/// One route of a kernel table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelRoute {
    /// "192.0.2.7" (host routes print without /32), "default", or "198.51.100.0/24".
    pub destination: String,
    /// Next hops: one, or several for ECMP.
    pub next_hops: Vec<IpAddr>,
    /// The protocol that installed it ("bgp", "bird", "kernel", ...).
    pub protocol: String,
}

impl KernelRoute {
    fn from_json(entry: &serde_json::Value) -> Self {
        let gateway = |value: &serde_json::Value| {
            value.get("gateway").and_then(|g| g.as_str()).and_then(|g| g.parse().ok())
        };
        let mut next_hops: Vec<IpAddr> = gateway(entry).into_iter().collect();
        if let Some(paths) = entry.get("nexthops").and_then(|n| n.as_array()) {
            next_hops.extend(paths.iter().filter_map(gateway));
        }
        next_hops.sort();
        Self {
            destination: entry.get("dst").and_then(|d| d.as_str()).unwrap_or_default().to_string(),
            next_hops,
            protocol: entry
                .get("protocol")
                .and_then(|p| p.as_str())
                .unwrap_or_default()
                .to_string(),
        }
    }
}

/// Fails, saying how to run the tests, unless this process is root (namespaces need it).
pub fn ensure_root() -> anyhow::Result<()> {
    let output = Command::new("id").arg("-u").output()?;
    anyhow::ensure!(
        String::from_utf8_lossy(&output.stdout).trim() == "0",
        "network namespaces need root: run the tests as root ({INSTALL_HINT})"
    );
    Ok(())
}

/// Runs `ip args...` in the test's own namespace, failing with its stderr.
pub fn ip(args: &[&str]) -> anyhow::Result<Output> {
    run(Command::new(system_tool("ip")).args(args))
}

/// Runs `ip -n namespace args...`, failing with its stderr.
pub fn ip_in(namespace: &str, args: &[&str]) -> anyhow::Result<Output> {
    run(Command::new(system_tool("ip")).arg("-n").arg(namespace).args(args))
}

/// Sets sysctl `key` to `value` inside `namespace`.
pub fn sysctl(namespace: &str, key: &str, value: &str) -> anyhow::Result<Output> {
    run(Command::new(system_tool("ip")).args([
        "netns",
        "exec",
        namespace,
        "sysctl",
        "-qw",
        &format!("{key}={value}"),
    ]))
}

/// A command that runs `program args...` inside `namespace`.
pub fn in_namespace(namespace: &str, program: &std::path::Path) -> Command {
    let mut command = Command::new(system_tool("ip"));
    command.args(["netns", "exec", namespace]).arg(program);
    command
}

fn run(command: &mut Command) -> anyhow::Result<Output> {
    let output = command.output()?;
    anyhow::ensure!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(output)
}
