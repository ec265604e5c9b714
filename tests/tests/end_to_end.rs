//! The whole system as processes (tests/src/stack.rs): three nodes, BIRD, a client behind the
//! router, configured with metallb.io resources. A Service's IP lands in its status and in the
//! router's kernel table with every eligible node as a next hop; externalTrafficPolicy Local
//! narrows that to the nodes with endpoints, and real TCP connections from the client reach
//! both of them; deleting the Service withdraws the route.

use std::{collections::BTreeSet, net::SocketAddr};

use metallb_tests::stack::{Stack, StackOptions, kube_objects::TrafficPolicy};

const SERVICE: &str = "web";
/// The first address of the pool.
const SERVICE_IP: &str = "203.0.113.0";
/// Connections tried before concluding that traffic does not spread over both nodes; with the
/// router hashing on ports, 24 connections all landing on one of two nodes has odds of 2^-23.
const CONNECTIONS: usize = 24;

/// One pool, the router as peer, and an advertisement of every pool.
fn resources(stack: &Stack) -> String {
    format!(
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata:\n  name: public\n  namespace: metallb-system\nspec:\n  addresses:\n  - 203.0.113.0/24\n---\n{}---\napiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata:\n  name: everything\n  namespace: metallb-system\nspec: {{}}\n",
        stack.bgp_peer_resource()
    )
}

#[tokio::test]
async fn a_service_is_routed_over_eligible_nodes_and_reached_through_the_router() {
    let stack = Stack::start(StackOptions { client: true, ..Default::default() }).await.unwrap();
    stack.apply_yaml(&resources(&stack)).await.unwrap();
    stack.wait_for_sessions().await.unwrap();

    // Endpoints on two of three nodes; Cluster policy: every node may take the traffic.
    stack.set_endpoints(SERVICE, &["node-1", "node-2"]).await.unwrap();
    stack.create_load_balancer(SERVICE, TrafficPolicy::Cluster).await.unwrap();
    stack.wait_for_ingress(SERVICE, SERVICE_IP).await.unwrap();
    stack.wait_for_router_next_hops(SERVICE_IP, &["node-1", "node-2", "node-3"]).await.unwrap();

    // Local policy: only the nodes with endpoints announce.
    let local = serde_json::json!({"spec": {"externalTrafficPolicy": "Local"}});
    stack.patch_service(SERVICE, local).await.unwrap();
    stack.wait_for_router_next_hops(SERVICE_IP, &["node-1", "node-2"]).await.unwrap();
    // ServiceBGPStatus, as MetalLB keeps it: one per announcing node, with its peers.
    wait_for_bgp_statuses(&stack, &["node-1", "node-2"]).await;

    // Real traffic from the client, through the router's ECMP route, to both nodes.
    let addr = SocketAddr::new(SERVICE_IP.parse().unwrap(), 80);
    let _servers = [stack.serve("node-1", addr).unwrap(), stack.serve("node-2", addr).unwrap()];
    let mut answered = BTreeSet::new();
    for _ in 0..CONNECTIONS {
        let node = stack.connect_from_client(addr).unwrap_or_else(|err| {
            panic!(
                "{err:#}\nrouter: {:?}\n{}",
                stack.router_next_hops(SERVICE_IP),
                stack.diagnostics()
            )
        });
        answered.insert(node);
        if answered.len() == 2 {
            break;
        }
    }
    assert_eq!(answered, BTreeSet::from(["node-1".to_string(), "node-2".to_string()]));

    // Deleting the Service withdraws its route, and its ServiceBGPStatus objects go.
    stack.delete_service(SERVICE).await.unwrap();
    stack.wait_for_router_next_hops(SERVICE_IP, &[]).await.unwrap();
    wait_for_bgp_statuses(&stack, &[]).await;
}

/// Waits until the ServiceBGPStatus objects of the Service name exactly `nodes`, each with a
/// peer.
async fn wait_for_bgp_statuses(stack: &Stack, nodes: &[&str]) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let listed = stack
            .control_plane
            .kubectl(&[
                "get",
                "servicebgpstatuses.metallb.io",
                "-n",
                "metallb-system",
                "-o",
                "json",
            ])
            .await
            .unwrap();
        let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
        let mut found: Vec<String> = listed["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|item| item["status"]["serviceName"] == SERVICE)
            .filter(|item| {
                item["status"]["peers"].as_array().is_some_and(|peers| !peers.is_empty())
            })
            .filter_map(|item| item["status"]["node"].as_str().map(String::from))
            .collect();
        found.sort();
        if found == nodes {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "ServiceBGPStatus nodes {found:?}, not {nodes:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
