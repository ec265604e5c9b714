//! What a host on a segment sees of layer 2 mode: who answers ARP (`arping`, iputils) and NDP
//! (`ndisc6`) for an IP, and its kernel's neighbour entry. Every probe is bounded in time.

use std::{
    collections::BTreeSet,
    io::{BufRead, BufReader},
    net::IpAddr,
    process::{Command, Output, Stdio},
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

use crate::{
    lab::{in_namespace, ip_in},
    tools::system_tool,
};

/// The MACs that answered `count` broadcast ARP requests for `target` from `namespace`'s
/// `eth0`, one a second, one per reply. Every request is broadcast (`-b`), so every host that
/// would answer a new client answers each of them.
pub fn arping(namespace: &str, target: IpAddr, count: u32) -> Vec<String> {
    let mut command = in_namespace(namespace, &system_tool("arping"));
    command.args(["-b", "-I", "eth0", "-c", &count.to_string(), &target.to_string()]);
    let output = run_bounded(command, Duration::from_secs(u64::from(count) + 5));
    replies_of(&output)
}

/// As `arping`, but `count` requests from each of `sources` (addresses of `namespace`'s
/// `eth0`) side by side, started evenly over a second: iputils arping sends at most one
/// request a second, and each must ask from an address of its own, since it counts every reply
/// addressed to its source. Takes about `count` seconds for `count * sources.len()` requests.
pub fn arping_from_each(
    namespace: &str,
    sources: &[IpAddr],
    target: IpAddr,
    count: u32,
) -> Vec<String> {
    let children: Vec<_> = sources
        .iter()
        .enumerate()
        .map(|(index, source)| {
            if index > 0 {
                thread::sleep(Duration::from_millis(1000 / sources.len() as u64));
            }
            let mut command = in_namespace(namespace, &system_tool("arping"));
            command.args(["-b", "-I", "eth0", "-s", &source.to_string()]);
            command.args(["-c", &count.to_string(), &target.to_string()]);
            thread::spawn(move || run_bounded(command, Duration::from_secs(u64::from(count) + 5)))
        })
        .collect();
    children.into_iter().flat_map(|child| replies_of(&child.join().expect("an arping"))).collect()
}

/// The MACs of an arping's replies, checked against its own count of them.
fn replies_of(output: &Output) -> Vec<String> {
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    let macs: Vec<String> = text.lines().filter_map(reply_mac).collect();
    let summary = format!("Received {} response(s)", macs.len());
    assert!(
        text.contains(&summary),
        "arping output not understood:\n{text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    macs
}

/// The MACs that answered a neighbor solicitation for `target` from `namespace` (ndisc6
/// waiting for every answer, up to two tries). A set: ndisc6 also shows unsolicited
/// advertisements that arrive while it waits.
pub fn ndisc6(namespace: &str, target: IpAddr) -> BTreeSet<String> {
    let mut command = in_namespace(namespace, &system_tool("ndisc6"));
    command.args(["-n", "-m", "-r", "2", "-w", "500", &target.to_string(), "eth0"]);
    let output = run_bounded(command, Duration::from_secs(5));
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.strip_prefix("Target link-layer address: "))
        .map(|mac| mac.trim().to_lowercase())
        .collect()
}

/// The MAC `namespace`'s kernel has for `target` on `eth0`, if it has an entry with one.
pub fn neighbor(namespace: &str, target: IpAddr) -> Option<String> {
    let family = if target.is_ipv4() { "-4" } else { "-6" };
    let output = ip_in(
        namespace,
        &[family, "-j", "neigh", "show", "to", &target.to_string(), "dev", "eth0"],
    )
    .ok()?;
    let entries: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).ok()?;
    entries.iter().find_map(|entry| entry.get("lladdr")?.as_str().map(|mac| mac.to_lowercase()))
}

/// ARP replies as they arrive, each with when it was read: an `arping -b` from each of
/// `sources` in the background, together broadcasting `sources.len()` requests a second, until
/// stopped (at most `limit`).
pub struct ArpWatch {
    children: Vec<std::process::Child>,
    replies: Arc<Mutex<Vec<(Instant, String)>>>,
    readers: Vec<thread::JoinHandle<()>>,
}

impl ArpWatch {
    /// Starts watching who answers for `target` from `namespace`.
    pub fn start(
        namespace: &str,
        sources: &[IpAddr],
        target: IpAddr,
        limit: Duration,
    ) -> anyhow::Result<Self> {
        let replies = Arc::new(Mutex::new(Vec::new()));
        let mut watch = Self { children: Vec::new(), replies, readers: Vec::new() };
        for (index, source) in sources.iter().enumerate() {
            if index > 0 {
                thread::sleep(Duration::from_millis(1000 / sources.len() as u64));
            }
            // Line-buffered, so each reply is read (and timed) when arping prints it.
            let mut command = in_namespace(namespace, &system_tool("stdbuf"));
            command.args(["-oL", &system_tool("arping").to_string_lossy(), "-b", "-I", "eth0"]);
            command.args(["-s", &source.to_string()]);
            command.args(["-w", &limit.as_secs().max(1).to_string(), &target.to_string()]);
            let mut child = command.stdout(Stdio::piped()).stderr(Stdio::null()).spawn()?;
            let stdout = child.stdout.take().expect("piped");
            watch.children.push(child);
            let sink = watch.replies.clone();
            watch.readers.push(thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if let Some(mac) = reply_mac(&line) {
                        sink.lock().expect("replies lock").push((Instant::now(), mac));
                    }
                }
            }));
        }
        Ok(watch)
    }

    /// Stops every arping and returns every reply, in the order they were read.
    pub fn stop(mut self) -> Vec<(Instant, String)> {
        self.kill();
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        let mut replies = self.replies.lock().expect("replies lock").clone();
        replies.sort_by_key(|(at, _)| *at);
        replies
    }

    fn kill(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ArpWatch {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The MAC of an arping reply line: "Unicast reply from 192.0.2.10 [02:00:00:00:00:01]  0.6ms".
fn reply_mac(line: &str) -> Option<String> {
    if !line.contains("reply from") {
        return None;
    }
    Some(line.split_once('[')?.1.split_once(']')?.0.to_lowercase())
}

/// Runs `command` to its end, killing it (and failing) after `timeout`.
pub fn run_bounded(mut command: Command, timeout: Duration) -> Output {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("{command:?}: {err}"));
    let deadline = Instant::now() + timeout;
    while child.try_wait().expect("waiting for a child").is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let output = child.wait_with_output().expect("a killed child's output");
            panic!("{command:?} did not finish within {timeout:?}: {output:?}");
        }
        thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("a child's output")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_lines_give_their_mac() {
        let line = "Unicast reply from 192.0.2.10 [02:AB:00:00:00:01]  0.612ms";
        assert_eq!(reply_mac(line).as_deref(), Some("02:ab:00:00:00:01"));
        assert_eq!(reply_mac("Sent 3 probes (3 broadcast(s))"), None);
    }
}
