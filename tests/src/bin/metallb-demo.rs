//! The local demo (the README's main command): the whole system on one machine with embedded
//! defaults. It starts kube-apiserver and etcd, a BGP router (BIRD) and three nodes in network
//! namespaces, Jaeger, the allocator, the watcher and one announcer per node; configures a pool;
//! creates a sample Service; shows its IP, the router's route to it, the answer to a request
//! sent through that route, and how to look further (kubectl, grpcurl, Jaeger). Ctrl-C (or
//! SIGTERM) tears everything down. `--once` stops after the tour instead of waiting.

use std::{net::SocketAddr, time::Duration};

use metallb_tests::{
    lab::ip_in,
    stack::{Stack, StackOptions, kube_objects::TrafficPolicy},
    tools::{cached_tool, system_tool},
    trust::{AUDIENCE, NAMESPACE, READER_ACCOUNT, SERVER_NAME},
};
use tokio::signal::unix::{SignalKind, signal};

const SERVICE: &str = "hello";
const POOL: &str = "203.0.113.0/24";
/// Requests sent through the router, enough to see both nodes answer.
const REQUESTS: usize = 6;

/// The demo's configuration, in MetalLB's metallb.io form.
fn configuration(stack: &Stack) -> String {
    format!(
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata:\n  name: demo\n  namespace: metallb-system\nspec:\n  addresses:\n  - {POOL}\n---\n{}---\napiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata:\n  name: demo\n  namespace: metallb-system\nspec:\n  communities:\n  - 64512:100\n",
        stack.bgp_peer_resource()
    )
}

fn heading(title: &str) {
    println!("\n== {title}");
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let once = match std::env::args().nth(1).as_deref() {
        None => false,
        Some("--once") => true,
        Some(other) => {
            eprintln!("metallb-demo: unknown argument {other:?} (the only one is --once)");
            std::process::exit(64);
        }
    };
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;

    heading("Starting kube-apiserver, a BGP router, three nodes, Jaeger and metallb-rs");
    let stack =
        Stack::start(StackOptions { client: true, jaeger: true, ..Default::default() }).await?;
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
    println!("Stopped; everything is removed.");
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

    heading("The allocator's view (grpcurl)");
    let leases = stack.allocator_call("ListLeases", "{}")?;
    println!("{}", serde_json::to_string_pretty(&leases)?);

    heading("The trace of this Service, from the watcher to the BGP UPDATE");
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
            println!("{}", trace.summary());
            format!("{}/trace/{}", jaeger.query_url(), trace.trace_id)
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
    println!(
        "kubectl:  KUBECONFIG={kubeconfig} {kubectl} get service {SERVICE} -o wide\n          \
         KUBECONFIG={kubeconfig} {kubectl} get events --field-selector involvedObject.name={SERVICE}\n\
         grpcurl:  {}\n\
         router:   {ip_tool} netns exec {router} birdc -s {bird_socket} show route all\n\
         Jaeger:   {trace_line}\n          (or open {jaeger_ui} and pick the service metallb-watcher)\n\
         logs:     {logs}",
        grpcurl_lines.join("\n          "),
        ip_tool = system_tool("ip").display(),
        router = stack.lab.router,
        bird_socket = stack.router.dir().join("bird.ctl").display(),
        jaeger_ui = stack.jaeger.as_ref().map(|j| j.query_url()).unwrap_or_default(),
        logs = stack.log_dir().display(),
    );
    if once {
        // The commands above are for pasting: run each exactly as printed.
        for line in &grpcurl_lines {
            let output =
                std::process::Command::new(system_tool("bash")).args(["-c", line]).output()?;
            anyhow::ensure!(
                output.status.success(),
                "{line}\nfailed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        println!("Every grpcurl line above ran as printed.");
    }
    Ok(())
}
