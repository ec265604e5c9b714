//! A veth link between the test's own network namespace (where the control plane runs) and a
//! namespace the test created, so that a Kubernetes node inside that namespace reaches the
//! kube-apiserver. The host end holds an address from the top of the shared address space
//! (100.120.0.0/13, RFC 6598), picked from the test's process ID so that parallel test
//! processes do not collide; the route to it exists only on this link, and nothing is routed
//! beyond the two ends. The link is deleted on drop (and with the namespace, if that goes
//! first).

use std::{
    net::Ipv4Addr,
    sync::atomic::{AtomicU32, Ordering},
};

use crate::lab::{ip, ip_in};

static NEXT_LINK: AtomicU32 = AtomicU32::new(0);

/// Start of the range the /30s are taken from.
const RANGE_START: Ipv4Addr = Ipv4Addr::new(100, 120, 0, 0);

/// The /30s in the range (2^19 addresses).
const BLOCKS: u32 = 1 << 17;

/// How many links one test process may have at a time before its addresses repeat.
const LINKS_PER_PROCESS: u32 = 16;

/// A veth pair with one end in the test's namespace and the other in a test namespace.
pub struct HostLink {
    host_interface: String,
    /// The host end's address, reachable from the namespace.
    pub host_address: Ipv4Addr,
    /// The namespace end's address.
    pub namespace_address: Ipv4Addr,
    /// The namespace end's interface name inside the namespace.
    pub namespace_interface: String,
}

impl HostLink {
    /// Creates the link into `namespace` (whose end is called `host0` there) and brings both
    /// ends up with a /30 between them.
    pub fn create(namespace: &str) -> anyhow::Result<Self> {
        let serial = NEXT_LINK.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let block = (pid * LINKS_PER_PROCESS + serial % LINKS_PER_PROCESS) % BLOCKS;
        let base = u32::from(RANGE_START) + block * 4;
        let host_address = Ipv4Addr::from(base + 1);
        let namespace_address = Ipv4Addr::from(base + 2);
        // Interface names have at most 15 characters; the process ID keeps parallel test
        // processes apart, the serial the links of one process.
        let host_interface = format!("mlh{}-{}", pid % 1_000_000, serial % 100);
        let namespace_interface = "host0".to_string();
        ip(&[
            "link",
            "add",
            &host_interface,
            "type",
            "veth",
            "peer",
            "name",
            &namespace_interface,
            "netns",
            namespace,
        ])?;
        let link = Self { host_interface, host_address, namespace_address, namespace_interface };
        ip(&["addr", "add", &format!("{host_address}/30"), "dev", &link.host_interface])?;
        ip(&["link", "set", &link.host_interface, "up"])?;
        let namespace_end = format!("{namespace_address}/30");
        ip_in(namespace, &["addr", "add", &namespace_end, "dev", &link.namespace_interface])?;
        ip_in(namespace, &["link", "set", &link.namespace_interface, "up"])?;
        Ok(link)
    }

    /// The host end's interface name.
    pub fn host_interface(&self) -> &str {
        &self.host_interface
    }
}

impl Drop for HostLink {
    fn drop(&mut self) {
        // Fails harmlessly when the namespace went first and took the pair with it.
        let _ = std::process::Command::new("ip")
            .args(["link", "delete", &self.host_interface])
            .stderr(std::process::Stdio::null())
            .status();
    }
}
