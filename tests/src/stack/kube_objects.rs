//! The Kubernetes objects the end-to-end tests create and read: LoadBalancer Services, the
//! EndpointSlices and Nodes a kube-controller-manager and kubelets would have made (the test
//! control plane has neither), MetalLB's configuration, and what the watcher writes back
//! (status ingress, Events, the ConfigurationState).

use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
};

use k8s_openapi::{
    api::{
        core::v1::{ConfigMap, Node, Service},
        discovery::v1::EndpointSlice,
        events::v1::Event,
    },
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, Client,
    api::{ObjectMeta, Patch, PatchParams},
};

use crate::kube_control_plane::ControlPlane;

pub use crate::configuration::CONFIG_NAMESPACE;

/// Where the tests' Services live.
pub const SERVICE_NAMESPACE: &str = "default";

/// The field manager of the tests' server-side applies.
const FIELD_MANAGER: &str = "metallb-tests";

/// The label naming an EndpointSlice's Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// The repository's deploy/ directory.
pub fn deploy_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy"))
}

/// The watcher's ServiceAccount, as deploy/rbac-watcher.yaml binds it.
const WATCHER_USER: &str = "system:serviceaccount:metallb-system:metallb-watcher";
const WATCHER_GROUPS: [&str; 2] =
    ["system:serviceaccounts", "system:serviceaccounts:metallb-system"];

/// Does what installing MetalLB's manifests does before its pods start: the metallb-system
/// namespace, the metallb.io CRDs (waited for until served, since the watcher decides once at
/// start which kinds to watch) and the watcher's RBAC from deploy/. Returns a kubeconfig for
/// the watcher's ServiceAccount, so it runs with exactly the access it is given in a cluster.
pub async fn install_metallb(control_plane: &ControlPlane) -> anyhow::Result<PathBuf> {
    control_plane.kubectl(&["create", "namespace", CONFIG_NAMESPACE]).await?;
    control_plane.apply_file(&deploy_dir().join("crds.yaml")).await?;
    let crds = Api::<CustomResourceDefinition>::all(control_plane.client().await)
        .list(&Default::default())
        .await?;
    for crd in crds.items.iter().filter(|crd| crd.spec.group == "metallb.io") {
        control_plane.wait_for_crd(crd.metadata.name.as_deref().unwrap_or_default()).await?;
    }
    control_plane.apply_file(&deploy_dir().join("rbac-watcher.yaml")).await?;
    control_plane.kubeconfig_for_user(WATCHER_USER, &WATCHER_GROUPS)
}

/// spec.externalTrafficPolicy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrafficPolicy {
    /// Every node forwards to every endpoint: any node may announce.
    Cluster,
    /// Only nodes with a ready endpoint receive traffic, and announce.
    Local,
}

impl TrafficPolicy {
    /// The value Kubernetes spells.
    pub fn as_str(self) -> &'static str {
        match self {
            TrafficPolicy::Cluster => "Cluster",
            TrafficPolicy::Local => "Local",
        }
    }
}

/// A LoadBalancer Service `name` in the default namespace, TCP port 80, asking for
/// `load_balancer_ip` (spec.loadBalancerIP) if given.
pub fn load_balancer(name: &str, load_balancer_ip: Option<&str>, policy: TrafficPolicy) -> Service {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": SERVICE_NAMESPACE},
        "spec": {
            "type": "LoadBalancer",
            "ports": [{"port": 80}],
            "loadBalancerIP": load_balancer_ip,
            "externalTrafficPolicy": policy.as_str(),
        },
    }))
    .expect("a valid Service")
}

/// The EndpointSlice of Service `service` with one ready endpoint on each of `nodes` (made-up
/// pod addresses: nothing routes to them, only the node names count for announcing).
pub fn endpoint_slice(service: &str, nodes: &[&str]) -> EndpointSlice {
    let endpoints: Vec<_> = nodes
        .iter()
        .zip(1u8..)
        .map(|(node, index)| {
            serde_json::json!({
                "addresses": [Ipv4Addr::new(10, 244, index, 10).to_string()],
                "nodeName": node,
                "conditions": {"ready": true},
            })
        })
        .collect();
    serde_json::from_value(serde_json::json!({
        "metadata": {
            "name": format!("{service}-slice"),
            "namespace": SERVICE_NAMESPACE,
            "labels": {SERVICE_NAME_LABEL: service},
        },
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{"name": "", "port": 80, "protocol": "TCP"}],
    }))
    .expect("a valid EndpointSlice")
}

/// A Ready Node `name` with InternalIP `address`, as its kubelet would register it.
pub fn node(name: &str, address: Ipv4Addr) -> Node {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "status": {
            "addresses": [
                {"type": "InternalIP", "address": address.to_string()},
                {"type": "Hostname", "address": name},
            ],
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
        },
    }))
    .expect("a valid Node")
}

/// Creates or replaces `object` (server-side apply, taking over fields others own).
pub async fn apply<K>(api: &Api<K>, object: &K) -> anyhow::Result<()>
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let name = object.meta().name.clone().unwrap_or_default();
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch(&name, &params, &Patch::Apply(object)).await?;
    Ok(())
}

/// Creates or replaces the v0.1 ConfigMap `metallb-system/config` with `text` under `config`.
pub async fn apply_config_map(client: &Client, text: &str) -> anyhow::Result<()> {
    let object = ConfigMap {
        metadata: ObjectMeta {
            name: Some("config".into()),
            namespace: Some(CONFIG_NAMESPACE.into()),
            ..Default::default()
        },
        data: Some([("config".to_string(), text.to_string())].into()),
        ..Default::default()
    };
    apply(&Api::namespaced(client.clone(), CONFIG_NAMESPACE), &object).await
}

/// Creates Node `name` with its status (the apiserver keeps the status a Node is created with,
/// as kubelets rely on; it is patched as well so that does not have to hold).
pub async fn create_node(client: &Client, name: &str, address: Ipv4Addr) -> anyhow::Result<()> {
    let api: Api<Node> = Api::all(client.clone());
    let object = node(name, address);
    api.create(&Default::default(), &object).await?;
    let status = serde_json::json!({"status": object.status});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(status)).await?;
    Ok(())
}

/// The first IP in status.loadBalancer.ingress of Service `name` (default namespace).
pub async fn ingress(client: &Client, name: &str) -> Option<String> {
    let service =
        Api::<Service>::namespaced(client.clone(), SERVICE_NAMESPACE).get(name).await.ok()?;
    ingress_ips(&service).into_iter().next()
}

/// IPs in status.loadBalancer.ingress.
pub fn ingress_ips(service: &Service) -> Vec<String> {
    service
        .status
        .as_ref()
        .and_then(|status| status.load_balancer.as_ref())
        .and_then(|load_balancer| load_balancer.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|ingress| ingress.ip.clone())
        .collect()
}

/// Notes of the Events with `reason` about `object` in `namespace`; empty when there are none
/// (or the API cannot be asked).
pub async fn event_notes(
    client: &Client,
    namespace: &str,
    object: &str,
    reason: &str,
) -> Vec<String> {
    let Ok(events) =
        Api::<Event>::namespaced(client.clone(), namespace).list(&Default::default()).await
    else {
        return Vec::new();
    };
    events
        .items
        .into_iter()
        .filter(|event| {
            event.reason.as_deref() == Some(reason)
                && event.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(object)
        })
        .map(|event| event.note.unwrap_or_default())
        .collect()
}

/// The note of the first Event with `reason` about `object` in `namespace`.
pub async fn event_note(
    client: &Client,
    namespace: &str,
    object: &str,
    reason: &str,
) -> Option<String> {
    event_notes(client, namespace, object, reason).await.into_iter().next()
}

/// The error summary of the watcher's ConfigurationState once its result is `result`
/// ("Valid" or "Invalid").
pub async fn configuration_state(control_plane: &ControlPlane, result: &str) -> Option<String> {
    let path = "{.status.result}|{.status.errorSummary}";
    let out = crate::configuration::configuration_state(control_plane, path).await;
    let (found, summary) = out.split_once('|')?;
    (found == result).then(|| summary.to_string())
}
