//! Chaos: the whole system as processes with two allocators and two watchers, against the real
//! control plane and BIRD. During a churn of Services, the primary allocator, the leading
//! watcher, an announcer and then the other allocator are killed with SIGKILL and started
//! again. Watched all along, every 100 ms: no Service's IP changes, no IP shows in two
//! Services' status, and no route the router had for a Service's IP is withdrawn while that
//! Service exists. At the end every Service has an IP and the router's table is exactly the
//! Services' IPs.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use k8s_openapi::api::core::v1::Service;
use kube::{Api, api::ListParams};
use metallb_tests::{
    grpcurl::grpcurl,
    lab::Lab,
    stack::{Stack, StackOptions, kube_objects::TrafficPolicy},
};

/// The pool: room for every Service of the churn.
fn resources(stack: &Stack) -> String {
    format!(
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata:\n  name: public\n  namespace: metallb-system\nspec:\n  addresses:\n  - 203.0.113.0/24\n---\n{}---\napiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata:\n  name: everything\n  namespace: metallb-system\nspec: {{}}\n",
        stack.bgp_peer_resource()
    )
}

/// What the observer saw go wrong.
#[derive(Default)]
struct Violations {
    moved: Vec<String>,
    doubled: Vec<String>,
    withdrawn: Vec<String>,
    samples: usize,
    /// Services seen routed at least once.
    routed: usize,
}

/// Samples the router's table and the Services' status until stopped.
struct Observer {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Violations>,
}

impl Observer {
    fn start(stack: &Stack) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let services: Api<Service> = Api::namespaced(stack.client().clone(), "default");
        let router = stack.lab.router.clone();
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let mut seen = Violations::default();
            let mut first_ip: BTreeMap<String, String> = BTreeMap::new();
            let mut routed_once: BTreeSet<(String, String)> = BTreeSet::new();
            while !stopped.load(Ordering::Relaxed) {
                // Routes first, then Services: a route missing now for a Service listed after
                // it is a route missing while that Service existed.
                let Ok(routes) = Lab::kernel_routes(&router, "-4") else { continue };
                let routed: BTreeSet<String> =
                    routes.into_iter().map(|route| route.destination).collect();
                let Ok(list) = services.list(&ListParams::default()).await else { continue };
                seen.samples += 1;
                let mut holders: BTreeMap<String, Vec<String>> = BTreeMap::new();
                for service in list {
                    let name = service.metadata.name.clone().unwrap_or_default();
                    let Some(ip) =
                        metallb_watcher::translate::ingress_ips(&service).first().cloned()
                    else {
                        continue;
                    };
                    holders.entry(ip.clone()).or_default().push(name.clone());
                    let first = first_ip.entry(name.clone()).or_insert_with(|| ip.clone());
                    if *first != ip {
                        seen.moved.push(format!("{name}: {first} -> {ip}"));
                    }
                    let pair = (name.clone(), ip.clone());
                    if routed.contains(&ip) {
                        routed_once.insert(pair);
                    } else if routed_once.contains(&pair) {
                        seen.withdrawn.push(format!("{name}'s {ip}"));
                    }
                }
                for (ip, names) in holders.into_iter().filter(|(_, names)| names.len() > 1) {
                    seen.doubled.push(format!("{ip}: {names:?}"));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            seen.routed = routed_once.len();
            seen
        });
        Self { stop, task }
    }

    async fn finish(self) -> Violations {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("the observer does not panic")
    }
}

/// Creates Services `{prefix}-0..count`, each with a ready endpoint on node-1.
async fn create(stack: &Stack, prefix: &str, count: usize, names: &Mutex<Vec<String>>) {
    for index in 0..count {
        let name = format!("{prefix}-{index}");
        stack.set_endpoints(&name, &["node-1"]).await.unwrap();
        stack.create_load_balancer(&name, TrafficPolicy::Cluster).await.unwrap();
        names.lock().unwrap().push(name);
    }
}

/// Waits until every Service in `names` shows an IP.
async fn all_have_ips(stack: &Stack, names: &Mutex<Vec<String>>, what: &str) {
    let names = names.lock().unwrap().clone();
    stack
        .eventually(what, || async {
            for name in &names {
                stack.ingress(name).await?;
            }
            Some(())
        })
        .await
        .unwrap();
}

/// Asserts that allocator `index` holds the lease of Service `name` (it took over).
async fn assert_holds(stack: &Stack, index: usize, name: &str) {
    let data = format!(r#"{{"service": {{"namespace": "default", "name": "{name}"}}}}"#);
    let target = stack.allocator_target(index);
    let lease = grpcurl(&target, Some(&data), &["metallb.v1.Allocator/GetLease"]).unwrap();
    assert_eq!(lease.code, 0, "allocator {} has no lease for {name}: {lease:?}", index + 1);
}

#[tokio::test]
async fn killing_any_component_during_churn_moves_no_ip_and_withdraws_no_route() {
    let mut stack =
        Stack::start(StackOptions { nodes: 2, replicas: 2, ..Default::default() }).await.unwrap();
    stack.apply_yaml(&resources(&stack)).await.unwrap();
    stack.wait_for_sessions().await.unwrap();
    let names = Mutex::new(Vec::new());
    create(&stack, "before", 10, &names).await;
    all_have_ips(&stack, &names, "the first Services' IPs").await;
    let observer = Observer::start(&stack);

    // The primary allocator dies mid-burst; the standby takes over.
    create(&stack, "a", 5, &names).await;
    stack.allocators[0].daemon.kill().unwrap();
    create(&stack, "b", 10, &names).await;
    all_have_ips(&stack, &names, "IPs from the standby allocator").await;
    assert_holds(&stack, 1, "b-9").await;
    stack.restart_allocator(0).await.unwrap();
    stack.allocators[0].daemon.wait_ready().await.unwrap();

    // The leading watcher dies mid-burst, with deletes in it; the other one takes over.
    let leader = stack.leading_watcher().await.unwrap();
    create(&stack, "c", 5, &names).await;
    stack.watchers[leader].kill().unwrap();
    for index in 0..3 {
        let name = format!("before-{index}");
        stack.delete_service(&name).await.unwrap();
        names.lock().unwrap().retain(|known| *known != name);
    }
    create(&stack, "d", 10, &names).await;
    all_have_ips(&stack, &names, "IPs through the new leading watcher").await;
    stack.restart_watcher(leader).unwrap();

    // An announcer dies and comes back; the other node keeps every route meanwhile.
    stack.announcers[0].kill().unwrap();
    create(&stack, "e", 5, &names).await;
    stack.restart_announcer(0).unwrap();
    stack.wait_for_sessions().await.unwrap();

    // The allocator that took over dies too: the restarted first one, synced as a standby,
    // takes over in turn.
    stack.allocators[1].daemon.kill().unwrap();
    create(&stack, "f", 5, &names).await;
    all_have_ips(&stack, &names, "IPs from the restarted allocator").await;
    assert_holds(&stack, 0, "f-4").await;
    stack.restart_allocator(1).await.unwrap();

    // Converged: the router routes exactly the Services' IPs.
    let names = names.lock().unwrap().clone();
    let mut expected = BTreeSet::new();
    for name in &names {
        expected.insert(stack.ingress(name).await.expect("every Service keeps an IP"));
    }
    assert_eq!(expected.len(), names.len(), "an IP held by two Services");
    stack
        .eventually("the router's table equal to the Services' IPs", || async {
            let routes = Lab::kernel_routes(&stack.lab.router, "-4").ok()?;
            let routed: BTreeSet<String> = routes
                .into_iter()
                .filter(|route| route.destination.starts_with("203.0.113."))
                .map(|route| route.destination)
                .collect();
            (routed == expected).then_some(())
        })
        .await
        .unwrap();

    let seen = observer.finish().await;
    assert!(seen.samples > 20, "the observer sampled only {} times", seen.samples);
    assert!(seen.routed >= 40, "the observer saw only {} Services routed", seen.routed);
    assert!(seen.moved.is_empty(), "IPs moved: {:?}\n{}", seen.moved, stack.diagnostics());
    assert!(seen.doubled.is_empty(), "IPs doubled: {:?}\n{}", seen.doubled, stack.diagnostics());
    assert!(
        seen.withdrawn.is_empty(),
        "routes withdrawn while their Service existed: {:?}\n{}",
        seen.withdrawn,
        stack.diagnostics()
    );
}
