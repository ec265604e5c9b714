//! A veth pair between the test's own namespace and a lab namespace, on a /30 of its own from
//! 198.18.0.0/15 (RFC 2544, benchmarking: never routed, and not used by the lab). It lets what
//! must stay in the root namespace (the watcher and the test, next to kube-apiserver on root
//! loopback) reach what lives in the router's namespace (the allocator, Jaeger).
//!
//! Parallel tests and concurrent test processes must not pick the same /30: the candidate is
//! derived from the process ID and a counter, skipped when any root address lies in it, and
//! claimed by creating the root-side link named after it (`ip link add` of a taken name fails,
//! so two claimants cannot both win). Deleting either end deletes the pair, so the link also
//! goes when the lab deletes the namespace.

use std::{
    net::Ipv4Addr,
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
};

use crate::lab::{ip, ip_in};

/// 198.18.0.0/15 holds this many /30s.
const SUBNETS: u32 = 1 << 15;

/// Candidates tried before giving up (each taken one is skipped).
const ATTEMPTS: u32 = 64;

/// The interface's name inside the lab namespace.
const NAMESPACE_SIDE: &str = "host";

static NEXT: AtomicU32 = AtomicU32::new(0);

/// The pair; dropping it deletes it.
pub struct HostLink {
    root_side: String,
    /// The root namespace's address on the link.
    pub root_address: Ipv4Addr,
    /// The lab namespace's address on the link: where the test reaches what runs there.
    pub namespace_address: Ipv4Addr,
}

impl HostLink {
    /// Links the root namespace to `namespace` on a /30 nobody else uses.
    pub fn new(namespace: &str) -> anyhow::Result<Self> {
        let mut last_error = String::new();
        for _ in 0..ATTEMPTS {
            let index = candidate(std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
            let base = u32::from(Ipv4Addr::new(198, 18, 0, 0)) + index * 4;
            if root_addresses()?.iter().any(|address| u32::from(*address) & !3 == base) {
                continue;
            }
            let root_side = format!("mlbrs-h{index}");
            let created = ip(&[
                "link",
                "add",
                &root_side,
                "type",
                "veth",
                "peer",
                "name",
                NAMESPACE_SIDE,
                "netns",
                namespace,
            ]);
            if let Err(err) = created {
                // Another test claimed this /30 between our check and our claim.
                last_error = err.to_string();
                continue;
            }
            // From here on the link is ours: dropping the handle removes it if a step fails.
            let link = Self {
                root_side,
                root_address: Ipv4Addr::from(base + 1),
                namespace_address: Ipv4Addr::from(base + 2),
            };
            link.configure(namespace)?;
            return Ok(link);
        }
        anyhow::bail!("no free /30 in 198.18.0.0/15 after {ATTEMPTS} attempts ({last_error})")
    }

    fn configure(&self, namespace: &str) -> anyhow::Result<()> {
        ip(&["addr", "add", &format!("{}/30", self.root_address), "dev", &self.root_side])?;
        ip(&["link", "set", &self.root_side, "up"])?;
        let namespace_cidr = format!("{}/30", self.namespace_address);
        ip_in(namespace, &["addr", "add", &namespace_cidr, "dev", NAMESPACE_SIDE])?;
        ip_in(namespace, &["link", "set", NAMESPACE_SIDE, "up"])?;
        Ok(())
    }
}

impl Drop for HostLink {
    fn drop(&mut self) {
        // Already gone if the namespace was deleted first.
        let _ = Command::new("ip")
            .args(["link", "delete", &self.root_side])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// The index of the /30 to try: the process ID scattered over the range (Knuth's
/// multiplicative hash, so that consecutive PIDs land far apart), plus the counter.
fn candidate(pid: u32, counter: u32) -> u32 {
    pid.wrapping_mul(2_654_435_761).wrapping_add(counter) % SUBNETS
}

/// Every IPv4 address of the root namespace.
fn root_addresses() -> anyhow::Result<Vec<Ipv4Addr>> {
    let output = ip(&["-4", "-j", "addr", "show"])?;
    let interfaces: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout)?;
    Ok(interfaces
        .iter()
        .filter_map(|interface| interface.get("addr_info")?.as_array())
        .flatten()
        .filter_map(|info| info.get("local")?.as_str()?.parse().ok())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_stay_in_the_range_and_differ_between_processes() {
        for pid in [1, 4_194_304, u32::MAX] {
            for counter in [0, 1, u32::MAX] {
                assert!(candidate(pid, counter) < SUBNETS);
            }
        }
        assert_ne!(candidate(1000, 0), candidate(1001, 0));
        assert_ne!(candidate(1000, 0), candidate(1000, 1));
    }
}
