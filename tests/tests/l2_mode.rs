//! Layer 2 mode end to end (tests/src/stack.rs): three node namespaces and a client on one
//! bridged segment, the real kube-apiserver, the allocator, the watcher and an announcer per
//! node as processes, configured with metallb.io resources. The client asks with the kernel's
//! own tools (iputils `arping`, `ndisc6`) and connects over TCP to servers on every node that
//! answer with their node's name, so the answers say which node took the traffic.
//!
//! Exactly one node answers for an IP; killing its announcer (`kill -9`) or bringing its link
//! down moves the IP and the client's traffic to another node; a node cut off from the
//! allocator but not from the segment falls silent before another node starts; with
//! `externalTrafficPolicy: Local` the IP follows the endpoints; a pool advertised both ways is
//! routed over BGP too.

use std::{
    collections::BTreeSet,
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use metallb_tests::{
    child::ChildProcess,
    lab::{Lab, ROUTER_V4, ip_in, segment_client_sources},
    neighbor_probes::{ArpWatch, arping, arping_from_each, ndisc6},
    stack::{Stack, StackOptions, kube_objects::TrafficPolicy, traffic},
};

const V4_IP: &str = "192.0.2.200";
const V6_IP: &str = "2001:db8:0:1::200";
/// ARP requests of the first check that exactly one node answers (20 sources, about 10 s).
const REQUESTS: u32 = 200;
/// ARP requests of later checks (about 2 s).
const FEW_REQUESTS: u32 = 40;
/// Longest a failover may take before the test gives up (the target is under 2 s).
const FAILOVER_LIMIT: Duration = Duration::from_secs(20);

/// A pool on the segment's own subnet, announced by layer 2 from every node and, with the
/// BGPPeer and BGPAdvertisement, over BGP as well.
fn resources(stack: &Stack) -> String {
    format!(
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata:\n  name: segment\n  namespace: metallb-system\nspec:\n  addresses:\n  - 192.0.2.200-192.0.2.209\n  - 2001:db8:0:1::200-2001:db8:0:1::209\n---\napiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata:\n  name: segment\n  namespace: metallb-system\n---\n{}---\napiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata:\n  name: segment\n  namespace: metallb-system\nspec: {{}}\n",
        stack.bgp_peer_resource()
    )
}

async fn start() -> Stack {
    let options = StackOptions { segment_client: true, ..Default::default() };
    let stack = Stack::start(options).await.unwrap();
    stack.apply_yaml(&resources(&stack)).await.unwrap();
    stack
}

/// Serves the node's name on `ip`:80 on every node (the IP on each node's loopback, as
/// kube-proxy would take it), whichever node gets the traffic.
fn serve_everywhere(stack: &Stack, ip: &str) -> Vec<ChildProcess> {
    let addr = SocketAddr::new(ip.parse().unwrap(), 80);
    stack.nodes().iter().map(|node| stack.serve(&node.name, addr).unwrap()).collect()
}

/// The one node that answers ARP for `ip`, from `REQUESTS` broadcast requests: every one
/// answered, all by one MAC.
fn the_one_arp_answerer(stack: &Stack, ip: &str, requests: u32) -> String {
    let client = stack.segment_client().unwrap();
    let sources = segment_client_sources();
    let each = requests.div_ceil(sources.len() as u32);
    let macs = arping_from_each(client, &sources, ip.parse().unwrap(), each);
    let distinct: BTreeSet<&String> = macs.iter().collect();
    assert_eq!(distinct.len(), 1, "MACs answering for {ip}: {distinct:?}\n{}", stack.diagnostics());
    assert!(
        macs.len() as u32 >= each * sources.len() as u32 * 9 / 10,
        "{} of {requests} requests answered",
        macs.len()
    );
    stack.node_with_mac(&macs[0]).expect("the MAC of a node")
}

/// Waits until one node answers ARP for `ip`; returns it.
async fn wait_for_arp_answerer(stack: &Stack, ip: &str) -> String {
    let client = stack.segment_client().unwrap().to_string();
    let target: IpAddr = ip.parse().unwrap();
    stack
        .eventually(&format!("a node answering ARP for {ip}"), || {
            let macs = arping(&client, target, 1);
            async move { macs.first().and_then(|mac| stack.node_with_mac(mac)) }
        })
        .await
        .unwrap()
}

/// The node the allocator gives `ip` to, as the watcher writes it in ServiceL2Status.
async fn wait_for_l2_status(stack: &Stack, service: &str, node: &str) {
    let what = format!("ServiceL2Status of {service} naming only {node}");
    stack
        .eventually(&what, || async {
            let listed = stack
                .control_plane
                .kubectl(&[
                    "get",
                    "servicel2statuses.metallb.io",
                    "-n",
                    "metallb-system",
                    "-l",
                    &format!("metallb.io/service-name={service}"),
                    "-o",
                    "jsonpath={.items[*].status.node}",
                ])
                .await
                .ok()?;
            (listed.trim() == node).then_some(())
        })
        .await
        .unwrap();
}

/// The value of the sample `series` (name and labels as exposed) in `metrics`; 0 without it.
fn metric(metrics: &str, series: &str) -> f64 {
    metrics.lines().find_map(|line| line.strip_prefix(series)?.trim().parse().ok()).unwrap_or(0.0)
}

/// Starts asking the segment who has `V4_IP` (20 requests a second, see `ArpWatch`), and
/// lets the first answers come in.
async fn watch_answers(stack: &Stack) -> ArpWatch {
    let client = stack.segment_client().unwrap();
    let target = V4_IP.parse().unwrap();
    let watch = ArpWatch::start(client, &segment_client_sources(), target, Duration::from_secs(60))
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    watch
}

fn node_index(name: &str) -> usize {
    name.trim_start_matches("node-").parse::<usize>().unwrap() - 1
}

#[tokio::test]
async fn one_node_answers_and_traffic_follows_it_when_its_announcer_dies_or_its_link_goes() {
    let mut stack = start().await;
    stack.set_endpoints("web", &["node-1", "node-2", "node-3"]).await.unwrap();
    stack.create_load_balancer("web", TrafficPolicy::Cluster).await.unwrap();
    stack.wait_for_ingress("web", V4_IP).await.unwrap();
    let ipv6_service = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web6", "namespace": "default"},
        "spec": {
            "type": "LoadBalancer",
            "ipFamilies": ["IPv6"],
            "ipFamilyPolicy": "SingleStack",
            "ports": [{"port": 80}],
        },
    });
    stack.apply_yaml(&serde_json::to_string(&ipv6_service).unwrap()).await.unwrap();
    stack.set_endpoints("web6", &["node-1", "node-2", "node-3"]).await.unwrap();
    stack.wait_for_ingress("web6", V6_IP).await.unwrap();
    let _v4_servers = serve_everywhere(&stack, V4_IP);
    let _v6_servers = serve_everywhere(&stack, V6_IP);

    // Exactly one node answers ARP, hundreds of times; the watcher says which; TCP reaches it.
    let owner = wait_for_arp_answerer(&stack, V4_IP).await;
    assert_eq!(the_one_arp_answerer(&stack, V4_IP, REQUESTS), owner);
    wait_for_l2_status(&stack, "web", &owner).await;
    let expected = format!("announcing from node \"{owner}\" with protocol \"layer2\"");
    let note = stack
        .wait_for_event("default", "web", "nodeAssigned", &owner)
        .await
        .unwrap_or_else(|err| panic!("{err:#}"));
    assert_eq!(note, expected);
    let v4 = SocketAddr::new(V4_IP.parse().unwrap(), 80);
    assert_eq!(stack.connect_from_segment(v4).unwrap(), owner);
    // MetalLB's layer 2 metrics, on the owner's announcer only.
    for node in stack.nodes() {
        let (_, metrics) =
            stack.announcers[node_index(&node.name)].admin_get("/metrics").await.unwrap();
        let answered =
            metric(&metrics, &format!("metallb_layer2_responses_sent{{ip=\"{V4_IP}\"}}"));
        let asked =
            metric(&metrics, &format!("metallb_layer2_requests_received{{ip=\"{V4_IP}\"}}"));
        let announced =
            metric(&metrics, &format!("metallb_layer2_gratuitous_sent{{ip=\"{V4_IP}\"}}"));
        if node.name == owner {
            assert!(answered >= f64::from(REQUESTS) * 0.9 && asked >= answered, "{metrics}");
            assert!(announced >= 1.0, "{metrics}");
        } else {
            assert_eq!(answered + announced, 0.0, "{} answered: {metrics}", node.name);
        }
    }

    // IPv6: one node answers neighbor solicitations, and takes the traffic.
    let client = stack.segment_client().unwrap().to_string();
    let v6_owner = stack
        .eventually("a node answering NDP", || {
            let macs = ndisc6(&client, V6_IP.parse().unwrap());
            let node = (macs.len() == 1).then(|| stack.node_with_mac(macs.first()?)).flatten();
            async move { node }
        })
        .await
        .unwrap();
    for _ in 0..10 {
        let macs = ndisc6(&client, V6_IP.parse().unwrap());
        assert_eq!(macs.len(), 1, "NDP answers: {macs:?}");
        assert_eq!(stack.node_with_mac(macs.first().unwrap()).as_ref(), Some(&v6_owner));
    }
    let v6 = SocketAddr::new(V6_IP.parse().unwrap(), 80);
    assert_eq!(stack.connect_from_segment(v6).unwrap(), v6_owner);

    // Advertised both ways: the router has the IP over BGP from every node as well.
    stack.wait_for_sessions().await.unwrap();
    stack.wait_for_router_next_hops(V4_IP, &["node-1", "node-2", "node-3"]).await.unwrap();

    // kill -9 of the owner's announcer: the IP and the client's connections move.
    stack.announcers[node_index(&owner)].kill().unwrap();
    let second = traffic::until_not(&client, v4, &owner, FAILOVER_LIMIT)
        .unwrap_or_else(|err| panic!("{err:#}\n{}", stack.diagnostics()));
    assert_ne!(second, owner);
    assert_eq!(the_one_arp_answerer(&stack, V4_IP, FEW_REQUESTS), second);
    wait_for_l2_status(&stack, "web", &second).await;

    // The old owner's announcer comes back: the IP stays where it is (a move breaks caches).
    stack.restart_announcer(node_index(&owner)).unwrap();
    stack.announcers[node_index(&owner)].wait_ready().await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(the_one_arp_answerer(&stack, V4_IP, FEW_REQUESTS), second);

    // The new owner's link goes down (its announcer's stream with it): the third node takes it.
    stack.lab.cut_node_link(node_index(&second)).unwrap();
    let third = traffic::until_not(&client, v4, &second, FAILOVER_LIMIT)
        .unwrap_or_else(|err| panic!("{err:#}\n{}", stack.diagnostics()));
    assert_ne!(third, second);
    assert_eq!(the_one_arp_answerer(&stack, V4_IP, FEW_REQUESTS), third);
    stack.lab.restore_node_link(node_index(&second)).unwrap();
}

#[tokio::test]
async fn a_node_cut_off_from_the_allocator_falls_silent_before_another_node_answers() {
    let stack = start().await;
    stack.set_endpoints("web", &["node-1", "node-2", "node-3"]).await.unwrap();
    stack.create_load_balancer("web", TrafficPolicy::Cluster).await.unwrap();
    stack.wait_for_ingress("web", V4_IP).await.unwrap();
    let _servers = serve_everywhere(&stack, V4_IP);
    let owner = wait_for_arp_answerer(&stack, V4_IP).await;
    let owner_node = stack.node(&owner).unwrap().clone();
    let owner_mac = Lab::mac_of(&owner_node.namespace).unwrap();

    // The client keeps asking, every 50 ms, while the owner loses the allocator (both ways:
    // the allocator's heartbeats stop reaching it, and its acknowledgements stop coming back)
    // but keeps its link to the segment and the client.
    let client = stack.segment_client().unwrap().to_string();
    let watch = watch_answers(&stack).await;
    let cut = Instant::now();
    let router = ROUTER_V4.to_string();
    let node_address = owner_node.address.to_string();
    ip_in(&owner_node.namespace, &["route", "add", "blackhole", &format!("{router}/32")]).unwrap();
    ip_in(&stack.lab.router, &["route", "add", "blackhole", &format!("{node_address}/32")])
        .unwrap();

    let v4 = SocketAddr::new(V4_IP.parse().unwrap(), 80);
    let second = traffic::until_not(&client, v4, &owner, FAILOVER_LIMIT)
        .unwrap_or_else(|err| panic!("{err:#}\n{}", stack.diagnostics()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let replies = watch.stop();

    let from_owner: Vec<Instant> =
        replies.iter().filter(|(_, mac)| *mac == owner_mac).map(|(at, _)| *at).collect();
    let from_others: Vec<&(Instant, String)> =
        replies.iter().filter(|(_, mac)| *mac != owner_mac).collect();
    let last_owner = *from_owner.last().expect("the owner answered before the cut");
    let (first_other, other_mac) = from_others.first().expect("another node answered");
    assert_eq!(stack.node_with_mac(other_mac).as_ref(), Some(&second));
    assert!(
        from_others.iter().all(|(_, mac)| mac == other_mac),
        "one new answerer only: {from_others:?}"
    );
    assert!(
        last_owner > cut,
        "the owner answered on its last word after the cut ({:?} after it)",
        last_owner.saturating_duration_since(cut)
    );
    // Silence first: a gap of several requests between the last answer of the old owner and
    // the first of the new one (by design, 250 ms at the least).
    let gap = first_other.saturating_duration_since(last_owner);
    assert!(
        *first_other > last_owner && gap >= Duration::from_millis(100),
        "the old owner answered until {:?} after the cut, the new one from {:?}",
        last_owner - cut,
        first_other.saturating_duration_since(cut),
    );
    eprintln!(
        "cut at 0: old owner silent after {:?}, new owner from {:?} (gap {gap:?})",
        last_owner - cut,
        *first_other - cut
    );

    // Reconnected, the old owner does not take the IP back: one answerer still.
    ip_in(&owner_node.namespace, &["route", "del", "blackhole", &format!("{router}/32")]).unwrap();
    ip_in(&stack.lab.router, &["route", "del", "blackhole", &format!("{node_address}/32")])
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(the_one_arp_answerer(&stack, V4_IP, FEW_REQUESTS), second);
}

#[tokio::test]
async fn with_local_traffic_policy_the_ip_follows_the_endpoints() {
    let stack = start().await;
    stack.set_endpoints("local", &["node-2"]).await.unwrap();
    stack.create_load_balancer("local", TrafficPolicy::Local).await.unwrap();
    stack.wait_for_ingress("local", V4_IP).await.unwrap();
    let _servers = serve_everywhere(&stack, V4_IP);
    assert_eq!(wait_for_arp_answerer(&stack, V4_IP).await, "node-2");
    assert_eq!(the_one_arp_answerer(&stack, V4_IP, FEW_REQUESTS), "node-2");

    stack.set_endpoints("local", &["node-3"]).await.unwrap();
    let client = stack.segment_client().unwrap().to_string();
    let v4 = SocketAddr::new(V4_IP.parse().unwrap(), 80);
    let moved = traffic::until_not(&client, v4, "node-2", FAILOVER_LIMIT)
        .unwrap_or_else(|err| panic!("{err:#}\n{}", stack.diagnostics()));
    assert_eq!(moved, "node-3");
    assert_eq!(the_one_arp_answerer(&stack, V4_IP, FEW_REQUESTS), "node-3");
    wait_for_l2_status(&stack, "local", "node-3").await;

    // No endpoint anywhere: nobody answers.
    stack.set_endpoints("local", &[]).await.unwrap();
    stack
        .eventually("nobody answering ARP", || {
            let macs = arping(&client, V4_IP.parse().unwrap(), 3);
            async move { macs.is_empty().then_some(()) }
        })
        .await
        .unwrap();
}

/// Every switch from one answering MAC to another in `replies` comes after a silence of at
/// least `gap`: two nodes never answered at the same time.
fn assert_never_two_answerers(replies: &[(Instant, String)], gap: Duration) {
    for pair in replies.windows(2) {
        let ((before, old), (after, new)) = (&pair[0], &pair[1]);
        if old != new {
            let silence = after.saturating_duration_since(*before);
            assert!(silence >= gap, "{old} answered {silence:?} before {new}: {replies:?}");
        }
    }
}

#[tokio::test]
async fn with_two_allocators_only_the_primary_decides_and_its_failover_keeps_one_answerer() {
    let options = StackOptions { segment_client: true, replicas: 2, ..Default::default() };
    let stack = Stack::start(options).await.unwrap();
    stack.apply_yaml(&resources(&stack)).await.unwrap();
    stack.set_endpoints("web", &["node-1", "node-2", "node-3"]).await.unwrap();
    stack.create_load_balancer("web", TrafficPolicy::Cluster).await.unwrap();
    stack.wait_for_ingress("web", V4_IP).await.unwrap();
    let _servers = serve_everywhere(&stack, V4_IP);
    let owner = wait_for_arp_answerer(&stack, V4_IP).await;
    assert_eq!(the_one_arp_answerer(&stack, V4_IP, FEW_REQUESTS), owner);
    // The standby serves no announcer: they all follow the primary, the one that decides.
    stack
        .eventually("the standby allocator told to stand by", || async {
            stack.allocators[1].daemon.log().contains("told to stand by").then_some(())
        })
        .await
        .unwrap();

    // The primary dies: the announcers fall silent at once (their streams end), the watcher
    // promotes the standby once the old primary's word has run out, and the new primary
    // decides after its own start-up wait. Never two answerers meanwhile.
    let watch = watch_answers(&stack).await;
    let killed = Instant::now();
    let mut stack = stack;
    stack.allocators[0].daemon.kill().unwrap();
    let back = wait_for_arp_answerer(&stack, V4_IP).await;
    let answered_again = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let replies = watch.stop();
    assert_never_two_answerers(&replies, Duration::from_millis(100));
    assert!(replies.iter().any(|(at, _)| *at > answered_again), "answers after the failover");
    eprintln!(
        "allocator failover: layer 2 answers back from {back} {:?} after the kill",
        answered_again - killed
    );
    assert_eq!(the_one_arp_answerer(&stack, V4_IP, FEW_REQUESTS), back);
}
