//! The local demo (the README's main command): the whole system on one machine with embedded
//! defaults. It starts kube-apiserver and etcd, a BGP router (BIRD) and three nodes in network
//! namespaces, a client behind the router and one on the nodes' segment, Jaeger, the allocator,
//! the watcher and one announcer per node; configures a BGP pool and a pool on the segment
//! advertised both by layer 2 and over BGP; creates a sample Service in each; shows the first's
//! IP, the router's route to it and the answers to requests sent through that route, then the
//! second's node, who answers ARP for its IP on the segment and who answers a TCP connection
//! from there; and how to look further (kubectl, grpcurl, Jaeger). Ctrl-C (or SIGTERM) tears
//! everything down. `--once` stops after the tour instead of waiting.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use metallb_tests::{
    daemons::Daemon,
    lab::{SEGMENT_CLIENT_V4, in_namespace, ip_in},
    neighbor_probes::{self, run_bounded},
    stack::{Stack, StackOptions, kube_objects::TrafficPolicy},
    tools::{cached_tool, system_tool},
    trust::{AUDIENCE, NAMESPACE, READER_ACCOUNT, SERVER_NAME},
};
use tokio::signal::unix::{SignalKind, signal};

const SERVICE: &str = "hello";
const POOL: &str = "203.0.113.0/24";
/// Requests sent through the router, enough to see both nodes answer.
const REQUESTS: usize = 6;
/// The layer 2 Service, from the pool on the nodes' segment.
const L2_SERVICE: &str = "hello-l2";
/// Addresses on the nodes' own subnet (192.0.2.0/24): a layer 2 IP must be where the clients
/// on the segment look for it.
const L2_POOL: &str = "192.0.2.200-192.0.2.209";
/// ARP requests broadcast from the segment client.
const ARP_REQUESTS: u32 = 3;

/// The demo's configuration, in MetalLB's metallb.io form: the pool `demo`, given to Services
/// unasked and routed over BGP; the pool `segment`, only for Services that ask for it, answered
/// for by layer 2 (the L2Advertisement names it) and routed over BGP too (the BGPAdvertisement
/// names no pool, so it covers both).
fn configuration(stack: &Stack) -> String {
    format!(
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata:\n  name: demo\n  namespace: metallb-system\nspec:\n  addresses:\n  - {POOL}\n---\napiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata:\n  name: segment\n  namespace: metallb-system\nspec:\n  autoAssign: false\n  addresses:\n  - {L2_POOL}\n---\n{}---\napiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata:\n  name: demo\n  namespace: metallb-system\nspec:\n  communities:\n  - 64512:100\n---\napiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata:\n  name: segment\n  namespace: metallb-system\nspec:\n  ipAddressPools:\n  - segment\n",
        stack.bgp_peer_resource()
    )
}

/// The layer 2 Service: from the pool `segment`, endpoints on every node.
fn l2_service() -> String {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": L2_SERVICE,
            "namespace": "default",
            "annotations": {"metallb.io/address-pool": "segment"},
        },
        "spec": {
            "type": "LoadBalancer",
            "ports": [{"port": 80}],
            "externalTrafficPolicy": "Cluster",
        },
    })
    .to_string()
}

fn heading(title: &str) {
    println!("\n== {title}");
}

/// What the command line asks for.
struct DemoArgs {
    /// Stop after the tour instead of waiting for Ctrl-C.
    once: bool,
    /// Where the processes log; kept after the demo stops.
    log_dir: PathBuf,
}

const USAGE: &str = "usage: metallb-demo [--once] [--log-dir DIR]";

fn parse_args() -> Result<DemoArgs, String> {
    let mut args = std::env::args().skip(1);
    let mut parsed = DemoArgs { once: false, log_dir: default_log_dir() };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--once" => parsed.once = true,
            "--log-dir" => {
                parsed.log_dir = args.next().ok_or("--log-dir needs a directory")?.into()
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(parsed)
}

/// `target/metallb-demo-logs`, beside the demo's own binary (in target/debug).
fn default_log_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let target = exe.parent().and_then(Path::parent).unwrap_or(Path::new("."));
    target.join("metallb-demo-logs")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let DemoArgs { once, log_dir } = parse_args().unwrap_or_else(|err| {
        eprintln!("metallb-demo: {err}\n{USAGE}");
        std::process::exit(64);
    });
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;

    heading(
        "Starting kube-apiserver, a BGP router, three nodes, two clients, Jaeger and metallb-rs",
    );
    let options = StackOptions {
        client: true,
        segment_client: true,
        jaeger: true,
        log_dir: Some(log_dir.clone()),
        ..Default::default()
    };
    let stack = Stack::start(options).await?;
    let result = tour(&stack, once).await;
    if let Err(err) = &result {
        eprintln!("\nThe demo failed: {err:#}\n{}", stack.diagnostics());
    } else if !once {
        println!("\nPress Ctrl-C to stop and clean up.");
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    }
    println!("\nStopping: daemons, router, namespaces, control plane...");
    drop(stack);
    println!("Stopped; everything is removed but the logs, in {}.", log_dir.display());
    result
}

async fn tour(stack: &Stack, once: bool) -> anyhow::Result<()> {
    let node_list: Vec<String> =
        stack.nodes().iter().map(|n| format!("{} ({})", n.name, n.address)).collect();
    println!("nodes: {}", node_list.join(", "));
    println!("router: BIRD in namespace {}, AS {}", stack.lab.router, stack.router_asn());

    heading("Configuration (metallb.io resources)");
    let config = configuration(stack);
    print!("{config}");
    stack.apply_yaml(&config).await?;
    stack.wait_for_sessions().await?;
    println!("BGP sessions Established between the router and every node.");

    heading(
        "A LoadBalancer Service, with endpoints on node-1 and node-2 (externalTrafficPolicy Local)",
    );
    stack.set_endpoints(SERVICE, &["node-1", "node-2"]).await?;
    stack.create_load_balancer(SERVICE, TrafficPolicy::Local).await?;
    let ip =
        stack.eventually("the Service's IP", || async { stack.ingress(SERVICE).await }).await?;
    println!("default/{SERVICE} got {ip}");
    let event = stack.wait_for_event("default", SERVICE, "IPAllocated", &ip).await?;
    println!("Event IPAllocated: {event}");

    heading("The router's route to it (ECMP over the nodes with endpoints)");
    stack.wait_for_router_next_hops(&ip, &["node-1", "node-2"]).await?;
    let route = ip_in(&stack.lab.router, &["route", "show", &ip])?;
    print!(
        "$ ip -n {} route show {ip}\n{}",
        stack.lab.router,
        String::from_utf8_lossy(&route.stdout)
    );

    heading("Requests from a client behind the router");
    let addr = SocketAddr::new(ip.parse()?, 80);
    let _servers = [stack.serve("node-1", addr)?, stack.serve("node-2", addr)?];
    for _ in 0..REQUESTS {
        println!("client -> {addr}: answered by {}", stack.connect_from_client(addr)?);
    }
    layer2(stack).await?;

    heading("The allocator's view (grpcurl)");
    let leases = stack.allocator_call("ListLeases", "{}")?;
    println!("{}", serde_json::to_string_pretty(&leases)?);

    heading(&format!("The trace of {SERVICE}, from the watcher to the BGP UPDATE"));
    let trace_line = match &stack.jaeger {
        Some(jaeger) => {
            let trace = jaeger
                .wait_for_trace(
                    "metallb-watcher",
                    |trace| {
                        trace.spans.iter().any(|s| s.tag_str("service") == Some("default/hello"))
                            && trace.spans.iter().any(|s| s.operation_name == "send_update")
                    },
                    Duration::from_secs(20),
                )
                .await?;
            print!("{}", trace.tree());
            // Jaeger built from its Go module has no UI, only the query API: print what
            // shows the trace here rather than a page that cannot.
            format!(
                "{} -s {}/api/traces/{}",
                system_tool("curl").display(),
                jaeger.query_url(),
                trace.trace_id
            )
        }
        None => "Jaeger is not running".into(),
    };

    heading("Look further");
    let allocator = stack.allocator_addr();
    let kubeconfig = stack.control_plane.kubeconfig_path().display().to_string();
    let kubectl = cached_tool("kubectl").display().to_string();
    // The allocator serves TLS only and wants a ServiceAccount token on every call: grpcurl
    // trusts the CA bundle and presents a token of a reader (an operator's read-only account)
    // made by `kubectl create token`, as in a cluster.
    let grpcurl = format!(
        "{grpcurl} -cacert {ca} -authority {SERVER_NAME} -H \"authorization: Bearer $(KUBECONFIG={kubeconfig} {kubectl} -n {NAMESPACE} create token {READER_ACCOUNT} --audience {AUDIENCE})\"",
        grpcurl = cached_tool("grpcurl").display(),
        ca = stack.trust.ca_file().display(),
    );
    let grpcurl_lines = [
        format!("{grpcurl} {allocator} list metallb.v1.Allocator"),
        format!("{grpcurl} {allocator} metallb.v1.Allocator/ListPools"),
        format!(
            "{grpcurl} -d '{{\"node_name\": \"node-1\"}}' {allocator} metallb.v1.Allocator/GetNodeAssignments"
        ),
    ];
    let metrics_lines: Vec<String> = stack
        .watchers
        .iter()
        .chain(stack.allocators.iter().map(|allocator| &allocator.daemon))
        .chain(&stack.announcers)
        .map(Daemon::metrics_command)
        .collect();
    let kubectl_lines = [
        format!("KUBECONFIG={kubeconfig} {kubectl} get service {SERVICE} -o wide"),
        format!(
            "KUBECONFIG={kubeconfig} {kubectl} get events --field-selector involvedObject.name={SERVICE}"
        ),
        format!(
            "KUBECONFIG={kubeconfig} {kubectl} -n metallb-system get servicel2statuses.metallb.io"
        ),
    ];
    let router_line = format!(
        "{ip_tool} netns exec {router} birdc -s {bird_socket} show route all",
        ip_tool = system_tool("ip").display(),
        router = stack.lab.router,
        bird_socket = stack.router.dir().join("bird.ctl").display(),
    );
    let indent = "\n          ";
    println!(
        "kubectl:  {}\n\
         grpcurl:  {}\n\
         metrics:  {}\n          (watcher, allocator, then the announcers of node-1, node-2, node-3)\n\
         router:   {router_line}\n\
         trace:    {trace_line}\n          (Jaeger's query API; a cluster's Jaeger from deploy/components/jaeger has the UI too)\n\
         logs:     {logs} (kept after the demo stops)",
        kubectl_lines.join(indent),
        grpcurl_lines.join(indent),
        metrics_lines.join(indent),
        logs = stack.log_dir().display(),
    );
    if once {
        // The commands above are for pasting: run each exactly as printed.
        let printed = kubectl_lines
            .iter()
            .chain(&grpcurl_lines)
            .chain(&metrics_lines)
            .chain([&router_line, &trace_line]);
        for line in printed {
            let output =
                std::process::Command::new(system_tool("bash")).args(["-c", line]).output()?;
            anyhow::ensure!(
                output.status.success() && !output.stdout.is_empty(),
                "{line}\nfailed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        println!("Every command above ran as printed.");
    }
    Ok(())
}

/// Layer 2: one node answers ARP for the Service's IP on the segment, the allocator's choice
/// (the nodeAssigned Event), and a connection from the segment reaches that node. Fails unless
/// all three agree.
async fn layer2(stack: &Stack) -> anyhow::Result<()> {
    heading(&format!(
        "Layer 2: a Service from pool segment ({L2_POOL}), endpoints on every node, \
         externalTrafficPolicy Cluster"
    ));
    stack.set_endpoints(L2_SERVICE, &["node-1", "node-2", "node-3"]).await?;
    stack.apply_yaml(&l2_service()).await?;
    let ip = stack
        .eventually("the layer 2 Service's IP", || async { stack.ingress(L2_SERVICE).await })
        .await?;
    println!("default/{L2_SERVICE} got {ip}");
    let event = stack.wait_for_event("default", L2_SERVICE, "nodeAssigned", "layer2").await?;
    println!("Event nodeAssigned: {event}");
    let assigned = event.split('"').nth(1).unwrap_or_default().to_string();

    let client = stack.segment_client()?;
    println!("\nARP from the client on the segment ({SEGMENT_CLIENT_V4}), broadcast:");
    // The new owner's speaker opens its socket within a moment: wait for a first answer.
    let target = ip.parse()?;
    stack
        .eventually("a node answering ARP", || {
            let answered = !neighbor_probes::arping(client, target, 1).is_empty();
            async move { answered.then_some(()) }
        })
        .await?;
    let macs = arping(client, &ip, ARP_REQUESTS);
    let distinct: std::collections::BTreeSet<&String> = macs.iter().collect();
    let owners: Vec<String> = distinct.iter().filter_map(|mac| stack.node_with_mac(mac)).collect();
    anyhow::ensure!(
        !macs.is_empty() && distinct.len() == 1 && owners.len() == 1,
        "{} of {ARP_REQUESTS} ARP requests answered, by {distinct:?} (nodes {owners:?})",
        macs.len()
    );
    let owner = &owners[0];
    println!("ARP for {ip} answered by {owner} only ({}, its eth0)", macs[0]);
    anyhow::ensure!(
        *owner == assigned,
        "{owner} answers ARP for {ip}, but the Event names {assigned:?}"
    );

    let addr = SocketAddr::new(target, 80);
    let _servers: Vec<_> = stack
        .nodes()
        .iter()
        .map(|node| stack.serve(&node.name, addr))
        .collect::<anyhow::Result<_>>()?;
    let answer = stack.connect_from_segment(addr)?;
    println!("segment client -> {addr}: answered by {answer}");
    anyhow::ensure!(answer == *owner, "{answer} answered on {addr}, not {owner}");

    println!("\nThe same IP over BGP, from every node (the pool is advertised both ways):");
    stack.wait_for_router_next_hops(&ip, &["node-1", "node-2", "node-3"]).await?;
    let route = ip_in(&stack.lab.router, &["route", "show", &ip])?;
    print!(
        "$ ip -n {} route show {ip}\n{}",
        stack.lab.router,
        String::from_utf8_lossy(&route.stdout)
    );
    Ok(())
}

/// Broadcasts `count` ARP requests for `ip` from `namespace` (iputils arping, one a second),
/// prints arping's output, and returns the MACs that answered, one per reply.
fn arping(namespace: &str, ip: &str, count: u32) -> Vec<String> {
    let mut command = in_namespace(namespace, &system_tool("arping"));
    command.args(["-b", "-I", "eth0", "-c", &count.to_string(), ip]);
    let output = run_bounded(command, Duration::from_secs(u64::from(count) + 5));
    let text = String::from_utf8_lossy(&output.stdout);
    print!("$ ip netns exec {namespace} arping -b -I eth0 -c {count} {ip}\n{text}");
    text.lines()
        .filter(|line| line.contains("reply from"))
        .filter_map(|line| Some(line.split_once('[')?.1.split_once(']')?.0.to_lowercase()))
        .collect()
}
