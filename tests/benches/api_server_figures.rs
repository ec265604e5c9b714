//! The floor under the end-to-end burst figure: how fast the test control plane (etcd and
//! kube-apiserver on this machine) accepts 1,000 LoadBalancer Services created at once, with
//! nothing of ours running. Prints the figure.
//!
//! Run: `cargo bench -p metallb-tests --bench api_server_figures`

use std::time::Instant;

use futures::StreamExt;
use metallb_tests::{kube_control_plane::ControlPlane, stack::kube_objects};

const BURST: usize = 1000;
/// As many concurrent clients as the end-to-end burst uses.
const CREATORS: usize = 32;

#[tokio::main]
async fn main() {
    let control_plane = ControlPlane::start().await.expect("the control plane starts");
    let client = control_plane.client().await;
    let services: kube::Api<k8s_openapi::api::core::v1::Service> =
        kube::Api::namespaced(client, "default");
    let started = Instant::now();
    futures::stream::iter(0..BURST)
        .map(|n| {
            let services = services.clone();
            async move {
                let service = kube_objects::load_balancer(
                    &format!("burst-{n}"),
                    None,
                    kube_objects::TrafficPolicy::Cluster,
                );
                services.create(&Default::default(), &service).await.expect("created");
            }
        })
        .buffer_unordered(CREATORS)
        .collect::<Vec<()>>()
        .await;
    println!(
        "{BURST} LoadBalancer Services created at once by {CREATORS} clients against the bare control plane: {:.2} s",
        started.elapsed().as_secs_f64()
    );
}
