//! The layer 2 speaker (`metallb-l2-announce`) on a real segment: node and client namespaces
//! joined by a bridge, the nodes' kernels told not to answer ARP for addresses they lack
//! (`arp_ignore=1`), and the client asking with the kernel's own tools (iputils `arping`,
//! `ndisc6`) and keeping a kernel neighbor table that announcements update. The speaker must
//! answer for its IPs from its MAC and never for another node's, not answer for IPs outside
//! the segment's subnet or on interfaces it was not given, fall silent at once when fenced or
//! killed, and announce its IPs on start and, when asked, periodically.

use std::{
    collections::BTreeSet,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
    thread,
    time::{Duration, Instant},
};

use metallb_tests::{
    child::ChildProcess,
    lab::{delete_namespaces, ensure_root, in_namespace, ip, ip_in, sysctl},
    neighbor_probes::{arping, ndisc6, neighbor},
    tools::our_binary,
};

const SIGKILL: i32 = 9;
const SIGUSR1: i32 = 10;
const SIGTERM: i32 = 15;

/// How long a speaker may take to start answering, an announcement to arrive, a process to
/// stop.
const SETTLE: Duration = Duration::from_secs(5);

/// The MAC planted as a previous owner's.
const BOGUS_MAC: &str = "02:00:00:00:00:99";

static NEXT_SEGMENT: AtomicU32 = AtomicU32::new(0);

/// A host on the segment: a namespace with `eth0` on the bridge.
struct Host {
    namespace: String,
    mac: String,
    v4: Ipv4Addr,
    v6: Ipv6Addr,
}

/// A switch namespace holding a bridge, a client host and node hosts on it, all on
/// 192.0.2.0/24 and 2001:db8:0:1::/64. Dropping it kills every process inside and deletes the
/// namespaces, also when the test panics; names follow `mlbrs-<pid>-...` so that
/// `tests/scripts/remove-stale-namespaces.sh` cleans up after a killed run.
struct Segment {
    client: Host,
    nodes: Vec<Host>,
    namespaces: Vec<String>,
}

impl Segment {
    fn new(nodes: u8) -> Self {
        ensure_root().unwrap();
        let prefix = format!(
            "mlbrs-{}-l2-{}",
            std::process::id(),
            NEXT_SEGMENT.fetch_add(1, Ordering::Relaxed)
        );
        let switch = format!("{prefix}-sw");
        let mut segment = Segment {
            client: Host {
                namespace: format!("{prefix}-c"),
                mac: "02:00:00:00:00:02".into(),
                v4: Ipv4Addr::new(192, 0, 2, 2),
                v6: "2001:db8:0:1::2".parse().unwrap(),
            },
            nodes: (1..=nodes)
                .map(|n| Host {
                    namespace: format!("{prefix}-n{n}"),
                    mac: format!("02:00:00:00:00:{:02x}", 0x10 + n),
                    v4: Ipv4Addr::new(192, 0, 2, 10 + n),
                    v6: Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, 0x10 + u16::from(n)),
                })
                .collect(),
            namespaces: Vec::new(),
        };
        segment.add_namespace(&switch);
        ip(&["link", "add", "br0", "netns", &switch, "type", "bridge"]).unwrap();
        ip_in(&switch, &["link", "set", "br0", "up"]).unwrap();
        let hosts: Vec<(String, String, String, String)> = std::iter::once(&segment.client)
            .chain(&segment.nodes)
            .map(|host| {
                (host.namespace.clone(), host.mac.clone(), host.v4.to_string(), host.v6.to_string())
            })
            .collect();
        for (port, (namespace, mac, v4, v6)) in hosts.iter().enumerate() {
            segment.add_namespace(namespace);
            // The link-local address is usable at once (no duplicate address detection), so
            // that ndisc6 has a source from the start.
            sysctl(namespace, "net.ipv6.conf.default.accept_dad", "0").unwrap();
            sysctl(namespace, "net.ipv6.conf.all.accept_dad", "0").unwrap();
            let port = format!("p{port}");
            ip(&[
                "link", "add", &port, "netns", &switch, "type", "veth", "peer", "name", "eth0",
                "netns", namespace,
            ])
            .unwrap();
            ip_in(&switch, &["link", "set", &port, "master", "br0", "up"]).unwrap();
            ip_in(namespace, &["link", "set", "eth0", "address", mac]).unwrap();
            ip_in(namespace, &["addr", "add", &format!("{v4}/24"), "dev", "eth0"]).unwrap();
            ip_in(namespace, &["addr", "add", &format!("{v6}/64"), "dev", "eth0", "nodad"])
                .unwrap();
            ip_in(namespace, &["link", "set", "eth0", "up"]).unwrap();
        }
        for node in &segment.nodes {
            // The node's kernel answers only for addresses it has on the interface asked on
            // (it has none of the service IPs): what answers is the speaker.
            sysctl(&node.namespace, "net.ipv4.conf.all.arp_ignore", "1").unwrap();
        }
        // The client's kernel creates neighbor entries from gratuitous ARP.
        sysctl(&segment.client.namespace, "net.ipv4.conf.all.arp_accept", "1").unwrap();
        segment
    }

    fn add_namespace(&mut self, name: &str) {
        ip(&["netns", "add", name]).unwrap();
        self.namespaces.push(name.to_string());
        ip_in(name, &["link", "set", "lo", "up"]).unwrap();
    }

    /// Starts `metallb-l2-announce` in node `index`'s namespace.
    fn speaker(&self, index: usize, args: &[&str], logs: &std::path::Path) -> ChildProcess {
        let node = &self.nodes[index];
        let mut command = in_namespace(&node.namespace, &our_binary("metallb-l2-announce"));
        command.args(args).args(["--log-filter", "debug"]);
        ChildProcess::spawn(&format!("speaker-{index}"), command, logs).unwrap()
    }

    /// The MACs that answered `count` broadcast ARP requests for `target` from the client,
    /// one per reply.
    fn arping(&self, target: Ipv4Addr, count: u32) -> Vec<String> {
        arping(&self.client.namespace, target.into(), count)
    }

    /// The MACs that answered a neighbor solicitation for `target` from the client.
    fn ndisc6(&self, target: Ipv6Addr) -> BTreeSet<String> {
        ndisc6(&self.client.namespace, target.into())
    }

    /// The MAC the client's kernel has for `target`, if it has an entry with one.
    fn client_neighbor(&self, target: IpAddr) -> Option<String> {
        neighbor(&self.client.namespace, target)
    }

    /// Gives the client's kernel a stale entry for `target` at a MAC nobody has, as if a
    /// previous owner had answered.
    fn plant_stale_neighbor(&self, target: IpAddr) {
        ip_in(
            &self.client.namespace,
            &[
                "neigh",
                "replace",
                &target.to_string(),
                "lladdr",
                BOGUS_MAC,
                "dev",
                "eth0",
                "nud",
                "stale",
            ],
        )
        .unwrap();
    }

    /// Waits until the client's kernel has `target` at `mac`.
    fn wait_client_neighbor(&self, target: IpAddr, mac: &str, why: &str) {
        wait_for(why, SETTLE, || {
            (self.client_neighbor(target).as_deref() == Some(mac)).then_some(())
        })
        .unwrap_or_else(|| {
            panic!("{why}: the client has {target} at {:?}", self.client_neighbor(target))
        });
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        delete_namespaces(&self.namespaces);
    }
}

/// Polls `check` every 50 ms until it gives a value, for at most `timeout`.
fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            eprintln!("gave up waiting: {what}");
            return None;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Waits for `line` in `speaker`'s log.
fn wait_log(speaker: &ChildProcess, line: &str) {
    wait_for(line, SETTLE, || speaker.log().contains(line).then_some(()))
        .unwrap_or_else(|| panic!("the speaker never logged {line:?}:\n{}", speaker.log()));
}

/// Sends `signal` to `process` without waiting for it to exit.
fn signal(process: &ChildProcess, signal: i32) {
    let status = Command::new("kill")
        .args([format!("-{signal}"), process.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal} {}", process.pid());
}

/// Stops `speaker` with SIGTERM and returns its metrics as printed on the way out.
fn stop(mut speaker: ChildProcess) -> String {
    let status = speaker.signal_and_wait(SIGTERM, SETTLE).unwrap();
    assert!(status.success(), "the speaker exited with {status}:\n{}", speaker.log());
    let log = speaker.log();
    let metrics: Vec<&str> = log.lines().filter(|line| line.starts_with("metallb_")).collect();
    metrics.join("\n")
}

/// The value of metric `name` for `ip` in `metrics` (0 when absent).
fn metric(metrics: &str, name: &str, ip: &str) -> u64 {
    let prefix = format!("{name}{{ip=\"{ip}\"}} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map(|value| value.trim().parse().unwrap())
        .unwrap_or(0)
}

#[test]
fn only_the_owner_answers_for_its_ips_where_they_belong_until_fenced_or_killed() {
    let logs = tempfile::tempdir().unwrap();
    let segment = Segment::new(2);
    let (first, second) = (&segment.nodes[0], &segment.nodes[1]);
    let service: Ipv4Addr = "192.0.2.100".parse().unwrap();
    let service_v6: Ipv6Addr = "2001:db8:0:1::100".parse().unwrap();
    let other_service: Ipv4Addr = "192.0.2.101".parse().unwrap();
    let other_service_v6: Ipv6Addr = "2001:db8:0:1::101".parse().unwrap();
    // Not on the segment's subnets: nothing answers for these there.
    let elsewhere: Ipv4Addr = "198.51.100.7".parse().unwrap();
    let elsewhere_v6: Ipv6Addr = "2001:db8:9::7".parse().unwrap();
    // A previous owner's entry, which the new owner's announcement must override.
    segment.plant_stale_neighbor(service_v6.into());

    let mut args = Vec::new();
    for ip in [service.to_string(), service_v6.to_string(), elsewhere.to_string()] {
        args.extend(["--ip".to_string(), ip]);
    }
    args.extend(["--ip".to_string(), elsewhere_v6.to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let first_speaker = segment.speaker(0, &args, logs.path());
    let other = ["--ip", "192.0.2.101", "--ip", "2001:db8:0:1::101"];
    let mut second_speaker = segment.speaker(1, &other, logs.path());

    // Announced on start: the client learns the IPs without asking.
    segment.wait_client_neighbor(service.into(), &first.mac, "gratuitous ARP on start");
    segment.wait_client_neighbor(service_v6.into(), &first.mac, "unsolicited NA on start");
    segment.wait_client_neighbor(other_service.into(), &second.mac, "the second node's ARP");

    // 20 requests, one a second (broadcast, then unicast once answered): every one answered,
    // every answer from the owner. Meanwhile (arping counts only answers from the IP it asks
    // for) the other checks.
    let replies = thread::scope(|scope| {
        let asker = scope.spawn(|| segment.arping(service, 20));
        assert_eq!(segment.ndisc6(service_v6), BTreeSet::from([first.mac.clone()]));
        // The second node answers for its own IPs, and only those.
        assert_eq!(segment.arping(other_service, 2), [second.mac.clone(), second.mac.clone()]);
        assert_eq!(segment.ndisc6(other_service_v6), BTreeSet::from([second.mac.clone()]));
        // Outside the interface's subnets: no answer, although the speaker owns them.
        assert_eq!(segment.arping(elsewhere, 2), Vec::<String>::new());
        assert_eq!(segment.ndisc6(elsewhere_v6), BTreeSet::new());
        asker.join().unwrap()
    });
    assert_eq!(replies, vec![first.mac.clone(); 20]);

    // Fenced: silent from the next request on, while the process lives.
    signal(&first_speaker, SIGUSR1);
    wait_log(&first_speaker, "fenced: answering for nothing");
    assert_eq!(segment.arping(service, 2), Vec::<String>::new());
    assert_eq!(segment.ndisc6(service_v6), BTreeSet::new());
    let metrics = stop(first_speaker);
    let requests = metric(&metrics, "metallb_layer2_requests_received", "192.0.2.100");
    let responses = metric(&metrics, "metallb_layer2_responses_sent", "192.0.2.100");
    assert!(requests >= 20 && responses == requests, "{metrics}");
    assert!(metric(&metrics, "metallb_layer2_responses_sent", "2001:db8:0:1::100") >= 1);
    assert_eq!(metric(&metrics, "metallb_layer2_gratuitous_sent", "192.0.2.100"), 3, "{metrics}");
    assert_eq!(metric(&metrics, "metallb_layer2_gratuitous_sent", "2001:db8:0:1::100"), 3);
    assert!(!metrics.contains("198.51.100.7"), "{metrics}");

    // Killed: nothing answers any more.
    second_speaker.signal_and_wait(SIGKILL, SETTLE).unwrap();
    assert_eq!(segment.arping(other_service, 2), Vec::<String>::new());
    assert_eq!(segment.ndisc6(other_service_v6), BTreeSet::new());
}

#[test]
fn announcements_repeat_only_when_asked_and_only_on_the_named_interfaces() {
    let logs = tempfile::tempdir().unwrap();
    let segment = Segment::new(3);
    let refreshing: IpAddr = "192.0.2.100".parse().unwrap();
    let quiet: IpAddr = "192.0.2.101".parse().unwrap();
    let elsewhere: Ipv4Addr = "192.0.2.102".parse().unwrap();
    let first = segment.speaker(
        0,
        &["--ip", "192.0.2.100", "--interface", "eth0", "--refresh-interval-ms", "300"],
        logs.path(),
    );
    let second = segment.speaker(1, &["--ip", "192.0.2.101"], logs.path());
    // The segment's subnet, but on an interface the node does not have.
    let third = segment.speaker(2, &["--ip", "192.0.2.102", "--interface", "eth1"], logs.path());
    segment.wait_client_neighbor(refreshing, &segment.nodes[0].mac, "the first node's burst");
    segment.wait_client_neighbor(quiet, &segment.nodes[1].mac, "the second node's burst");
    wait_log(&third, "started");

    // Once the bursts are over (1.1 s after they start), a previous owner's entry comes back.
    thread::sleep(Duration::from_millis(1500));
    segment.plant_stale_neighbor(refreshing);
    segment.plant_stale_neighbor(quiet);
    // The refresh corrects it; without a refresh nothing does.
    segment.wait_client_neighbor(refreshing, &segment.nodes[0].mac, "a refresh");
    thread::sleep(Duration::from_secs(1));
    assert_eq!(segment.client_neighbor(quiet).as_deref(), Some(BOGUS_MAC));
    // Nothing announced or answered for the IP off its named interface.
    assert_eq!(segment.client_neighbor(elsewhere.into()), None);
    assert_eq!(segment.arping(elsewhere, 2), Vec::<String>::new());

    let refreshed = stop(first);
    let sent = metric(&refreshed, "metallb_layer2_gratuitous_sent", "192.0.2.100");
    assert!(sent >= 3 + 3, "a burst and at least three refreshes: {refreshed}");
    let quiet_metrics = stop(second);
    let sent = metric(&quiet_metrics, "metallb_layer2_gratuitous_sent", "192.0.2.101");
    assert_eq!(sent, 3, "one burst: {quiet_metrics}");
    let third_metrics = stop(third);
    assert!(!third_metrics.contains("192.0.2.102\""), "{third_metrics}");
}
