//! MetalLB's v0.1 tutorial ("BGP on Minikube"), replayed against the whole system as processes
//! (tests/src/stack.rs), with BIRD as the tutorial's test router and one node as in Minikube:
//! configure one peer and one pool with the v0.1 ConfigMap; a Service gets the pool's first
//! address and is announced; `avoid-buggy-ips` is then rejected because that Service holds the
//! .0, and the old configuration stays; moving the Service to .1 moves the route and lets the
//! waiting configuration take effect by itself.

use metallb_tests::stack::{
    Stack, StackOptions,
    kube_objects::{CONFIG_NAMESPACE, SERVICE_NAMESPACE, TrafficPolicy},
};

const SERVICE: &str = "nginx";
const POOL: &str = "address-pools:\n- name: my-ip-space\n  cidr:\n  - 203.0.113.0/24\n";
const POOL_AVOIDING_BUGGY_IPS: &str =
    "address-pools:\n- name: my-ip-space\n  avoid-buggy-ips: true\n  cidr:\n  - 203.0.113.0/24\n";

/// How many addresses the allocator's configuration in force offers in the pool.
fn pool_size(stack: &Stack) -> String {
    let pools = stack.allocator_call("ListPools", "{}").unwrap();
    let pool = pools["pools"]
        .as_array()
        .and_then(|pools| pools.iter().find(|pool| pool["name"] == "my-ip-space"))
        .unwrap_or_else(|| panic!("no pool my-ip-space: {pools}"));
    pool["families"][0]["size"].as_str().unwrap_or_default().to_string()
}

#[tokio::test]
async fn the_v0_1_tutorial_replayed() {
    let stack = Stack::start(StackOptions { nodes: 1, ..Default::default() }).await.unwrap();

    // Configure MetalLB to peer with the router and give it some IP addresses to manage.
    stack.apply_config_map(&format!("{}{POOL}", stack.v01_peers())).await.unwrap();
    stack.wait_for_sessions().await.unwrap();

    // Create a load-balanced service and observe how MetalLB sets it up.
    stack.set_endpoints(SERVICE, &["node-1"]).await.unwrap();
    stack.create_load_balancer(SERVICE, TrafficPolicy::Cluster).await.unwrap();
    stack.wait_for_ingress(SERVICE, "203.0.113.0").await.unwrap();
    stack.wait_for_event(SERVICE_NAMESPACE, SERVICE, "IPAllocated", "203.0.113.0").await.unwrap();
    stack.wait_for_router_next_hops("203.0.113.0", &["node-1"]).await.unwrap();

    // Avoid buggy IPs: rejected, since nginx holds the .0; the old configuration stays.
    let avoiding = format!("{}{POOL_AVOIDING_BUGGY_IPS}", stack.v01_peers());
    stack.apply_config_map(&avoiding).await.unwrap();
    let note = stack
        .wait_for_event(CONFIG_NAMESPACE, "config", "InvalidConfig", "203.0.113.0")
        .await
        .unwrap();
    assert!(note.contains("default/nginx"), "the reason names the service: {note}");
    let summary = stack.wait_for_configuration_state("Invalid").await.unwrap();
    assert!(summary.contains("203.0.113.0"), "{summary}");
    assert_eq!(pool_size(&stack), "256", "the old configuration is no longer in force");
    assert_eq!(stack.ingress(SERVICE).await.as_deref(), Some("203.0.113.0"));
    assert_eq!(
        stack.router_next_hops("203.0.113.0").unwrap(),
        [std::net::IpAddr::V4(stack.node("node-1").unwrap().address)]
    );

    // Fix it by moving the service to .1: its route moves with it.
    let move_to_1 = serde_json::json!({"spec": {"loadBalancerIP": "203.0.113.1"}});
    stack.patch_service(SERVICE, move_to_1).await.unwrap();
    stack.wait_for_ingress(SERVICE, "203.0.113.1").await.unwrap();
    stack.wait_for_event(SERVICE_NAMESPACE, SERVICE, "IPAllocated", "203.0.113.1").await.unwrap();
    stack.wait_for_router_next_hops("203.0.113.1", &["node-1"]).await.unwrap();
    stack.wait_for_router_next_hops("203.0.113.0", &[]).await.unwrap();

    // Nothing blocks the waiting configuration any more: it takes effect without an edit.
    let summary = stack.wait_for_configuration_state("Valid").await.unwrap();
    assert_eq!(summary, "");
    assert_eq!(pool_size(&stack), "254", "avoid-buggy-ips is in force: no .0, no .255");
}
