//! The router's kernel table as `ip monitor route` reports it in a namespace: when each
//! destination first appeared, and when it was last added and removed. For benches, so that a
//! time is the time the kernel reported the change, not the time a poll happened to look.

use std::{
    collections::HashMap,
    io::{BufRead, BufReader},
    net::IpAddr,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::Instant,
};

use crate::tools::system_tool;

/// When a destination was last added to and removed from the table.
#[derive(Clone, Copy, Debug, Default)]
pub struct Changed {
    /// Last added (or replaced).
    pub added: Option<Instant>,
    /// Last removed.
    pub removed: Option<Instant>,
}

#[derive(Default)]
struct Seen {
    /// When each new destination first appeared, in order.
    first_appearances: Vec<Instant>,
    changes: HashMap<IpAddr, Changed>,
}

/// Follows `ip monitor route` until dropped.
pub struct RouteMonitor {
    seen: Arc<Mutex<Seen>>,
    child: Child,
}

impl RouteMonitor {
    /// Starts following IPv4 routes in `namespace`.
    pub fn follow(namespace: &str) -> anyhow::Result<Self> {
        let mut child = Command::new(system_tool("ip"))
            .args(["-n", namespace, "-4", "monitor", "route"])
            .stdout(Stdio::piped())
            .spawn()?;
        let seen = Arc::new(Mutex::new(Seen::default()));
        let stdout = child.stdout.take().expect("piped");
        let writer = seen.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // Added or replaced routes start with the destination; continuation lines (the
                // next hops of a multipath route) with white space; removals with "Deleted".
                let mut words = line.split_whitespace();
                let (removed, destination) = match words.next() {
                    Some("Deleted") => (true, words.next()),
                    first => (false, first),
                };
                let Some(ip) = destination.and_then(|d| d.parse::<IpAddr>().ok()) else {
                    continue;
                };
                let now = Instant::now();
                let mut seen = writer.lock().unwrap();
                let first = !seen.changes.contains_key(&ip);
                let entry = seen.changes.entry(ip).or_default();
                if removed {
                    entry.removed = Some(now);
                } else {
                    entry.added = Some(now);
                    if first {
                        seen.first_appearances.push(now);
                    }
                }
            }
        });
        Ok(Self { seen, child })
    }

    /// When the `n`th new destination (from 0) first appeared.
    pub fn nth_appearance(&self, n: usize) -> Option<Instant> {
        self.seen.lock().unwrap().first_appearances.get(n).copied()
    }

    /// How many destinations have appeared.
    pub fn appeared(&self) -> usize {
        self.seen.lock().unwrap().first_appearances.len()
    }

    /// What happened to `ip`.
    pub fn changes(&self, ip: IpAddr) -> Changed {
        self.seen.lock().unwrap().changes.get(&ip).copied().unwrap_or_default()
    }
}

impl Drop for RouteMonitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
