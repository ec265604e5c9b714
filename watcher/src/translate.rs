//! Kubernetes objects into the allocator's contract: Services (with their endpoints and their
//! namespace's labels), Nodes, and the configuration (the ConfigMap and the metallb.io
//! resources together).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use k8s_openapi::api::{
    core::v1::{ConfigMap, Node, Secret, Service},
    discovery::v1::EndpointSlice,
};
use kube::api::DynamicObject;
use metallb_config_formats::{
    FormatError, annotations, configmap,
    resources::{Resources, SecretReference},
};
use metallb_proto::pb;

use crate::slice_index::SERVICE_NAME_LABEL;

/// Name and key of the v0.1 ConfigMap.
pub const CONFIG_MAP_NAME: &str = "config";
const CONFIG_MAP_KEY: &str = "config";

/// Which Services are ours: those of this loadBalancerClass, or without one when `None`.
pub fn is_ours(service: &Service, class: Option<&str>) -> bool {
    let Some(spec) = &service.spec else { return false };
    spec.type_.as_deref() == Some("LoadBalancer") && spec.load_balancer_class.as_deref() == class
}

/// The Service as the allocator sees it, or `None` when it is not a LoadBalancer of ours.
/// `slices` may hold any slices; only the Service's own count.
pub fn service(
    service: &Service,
    slices: &[&EndpointSlice],
    namespace_labels: &BTreeMap<String, String>,
    class: Option<&str>,
) -> Option<pb::Service> {
    if !is_ours(service, class) {
        return None;
    }
    let spec = service.spec.as_ref()?;
    let namespace = service.metadata.namespace.clone().unwrap_or_default();
    let name = service.metadata.name.clone().unwrap_or_default();
    let wanted =
        annotations::read(service.metadata.annotations.as_ref().unwrap_or(&BTreeMap::new()));

    let mut ready_nodes = BTreeSet::new();
    let mut any_ready = false;
    for slice in slices {
        let labels = slice.metadata.labels.as_ref();
        if slice.metadata.namespace.as_deref() != Some(&namespace)
            || labels.and_then(|l| l.get(SERVICE_NAME_LABEL)) != Some(&name)
        {
            continue;
        }
        for endpoint in slice.endpoints.iter().flatten() {
            // Unset means ready (discovery.k8s.io/v1).
            let ready = endpoint.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
            if ready {
                any_ready = true;
                ready_nodes.extend(endpoint.node_name.clone());
            }
        }
    }

    let family = |f: &str| match f {
        "IPv6" => pb::IpFamily::Ipv6,
        _ => pb::IpFamily::Ipv4,
    };
    let protocol = |p: Option<&str>| match p {
        Some("UDP") => pb::Protocol::Udp,
        Some("SCTP") => pb::Protocol::Sctp,
        _ => pb::Protocol::Tcp,
    };
    Some(pb::Service {
        key: Some(pb::ServiceKey { namespace, name }),
        load_balancer_ip: spec.load_balancer_ip.clone().unwrap_or_default(),
        load_balancer_ips: wanted.load_balancer_ips,
        pool: wanted.pool,
        sharing_key: wanted.sharing_key,
        ports: spec
            .ports
            .iter()
            .flatten()
            .map(|p| pb::ServicePort {
                port: p.port as u32,
                protocol: protocol(p.protocol.as_deref()) as i32,
            })
            .collect(),
        ip_families: spec.ip_families.iter().flatten().map(|f| family(f) as i32).collect(),
        ip_family_policy: match spec.ip_family_policy.as_deref() {
            Some("PreferDualStack") => pb::IpFamilyPolicy::PreferDualStack,
            Some("RequireDualStack") => pb::IpFamilyPolicy::RequireDualStack,
            _ => pb::IpFamilyPolicy::SingleStack,
        } as i32,
        external_traffic_policy: match spec.external_traffic_policy.as_deref() {
            Some("Local") => pb::TrafficPolicy::Local,
            _ => pb::TrafficPolicy::Cluster,
        } as i32,
        ready_endpoint_nodes: ready_nodes.into_iter().collect(),
        has_ready_endpoints: any_ready,
        labels: to_hash(service.metadata.labels.as_ref()),
        namespace_labels: namespace_labels.clone().into_iter().collect(),
        current_ips: ingress_ips(service),
        selector: to_hash(spec.selector.as_ref()),
        created_at: service.metadata.creation_timestamp.as_ref().map(|time| {
            prost_types::Timestamp {
                seconds: time.0.as_second(),
                nanos: time.0.subsec_nanosecond(),
            }
        }),
    })
}

/// IPs in status.loadBalancer.ingress.
pub fn ingress_ips(service: &Service) -> Vec<String> {
    service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|ingress| ingress.ip.clone())
        .collect()
}

fn to_hash(map: Option<&BTreeMap<String, String>>) -> HashMap<String, String> {
    map.cloned().unwrap_or_default().into_iter().collect()
}

/// A Node as the allocator sees it.
pub fn node(node: &Node) -> pb::Node {
    let status = node.status.as_ref();
    pb::Node {
        name: node.metadata.name.clone().unwrap_or_default(),
        labels: to_hash(node.metadata.labels.as_ref()),
        addresses: status
            .and_then(|s| s.addresses.as_ref())
            .into_iter()
            .flatten()
            .map(|a| pb::NodeAddress { r#type: a.type_.clone(), address: a.address.clone() })
            .collect(),
        conditions: status
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .map(|c| pb::NodeCondition {
                r#type: c.type_.clone(),
                status: c.status.clone(),
                reason: c.reason.clone().unwrap_or_default(),
            })
            .collect(),
    }
}

/// Where a configuration came from, for the allocator's messages.
pub fn config_source(namespace: &str, has_config_map: bool, resources: usize) -> String {
    match (has_config_map, resources) {
        (true, 0) => format!("ConfigMap {namespace}/{CONFIG_MAP_NAME}"),
        (false, _) => format!("metallb.io resources in {namespace}"),
        (true, _) => format!(
            "ConfigMap {namespace}/{CONFIG_MAP_NAME} and metallb.io resources in {namespace}"
        ),
    }
}

/// The allocator's configuration errors as people read them ("IPAddressPool/p addresses[0]:
/// ..."), one per line of the ConfigurationState and of an admission refusal.
pub fn config_error_lines(errors: &[pb::ConfigError]) -> Vec<String> {
    errors.iter().map(|e| format!("{} {}: {}", e.object, e.field, e.message)).collect()
}

/// The configuration the ConfigMap and the metallb.io resources describe together.
pub fn config(
    namespace: &str,
    config_map: Option<&ConfigMap>,
    resources: &[DynamicObject],
    secrets: &[&Secret],
) -> Result<pb::Config, Vec<FormatError>> {
    let mut config = pb::Config::default();
    if let Some(config_map) = config_map
        && let Some(text) = config_map.data.as_ref().and_then(|d| d.get(CONFIG_MAP_KEY))
    {
        let object = format!("ConfigMap {namespace}/{CONFIG_MAP_NAME}");
        config = configmap::parse(&object, text).map_err(|err| vec![err])?;
    }
    // In one order whatever the stores' (by kind, then name), so that one set of objects always
    // reads the same and draws the same errors: the admission webhook's and the
    // ConfigurationState's messages agree.
    let mut sorted: Vec<&DynamicObject> = resources.iter().collect();
    sorted.sort_by_key(|object| {
        let kind = object.types.as_ref().map(|types| types.kind.clone()).unwrap_or_default();
        (kind, object.metadata.name.clone())
    });
    let documents: Vec<String> =
        sorted.iter().filter_map(|object| serde_json::to_string(object).ok()).collect();
    let parsed = Resources::from_yaml(&documents.join("\n---\n"))?;
    let passwords: BTreeMap<SecretReference, String> = secrets
        .iter()
        .filter_map(|secret| {
            let password = secret.data.as_ref()?.get("password")?;
            let reference = SecretReference {
                name: secret.metadata.name.clone()?,
                namespace: secret
                    .metadata
                    .namespace
                    .clone()
                    .unwrap_or_else(|| namespace.to_string()),
            };
            Some((reference, String::from_utf8_lossy(&password.0).into_owned()))
        })
        .collect();
    let from_resources = parsed.to_config(&passwords)?;
    config.pools.extend(from_resources.pools);
    config.peers.extend(from_resources.peers);
    config.advertisements.extend(from_resources.advertisements);
    config.l2_advertisements.extend(from_resources.l2_advertisements);
    config.communities.extend(from_resources.communities);
    config.bfd_profiles.extend(from_resources.bfd_profiles);
    Ok(config)
}
