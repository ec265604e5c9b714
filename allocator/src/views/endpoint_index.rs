//! Which nodes announce each Service with externalTrafficPolicy Local (those with a ready
//! endpoint), and the reverse: a node's own routes come from few Services among thousands,
//! and a subscribing node or a moving Service must find them without a walk of every Service.

use std::collections::{BTreeSet, HashMap};

use crate::{routes::Reach, service_spec::ServiceKey, state::RouteInputs};

/// Local Services by node and nodes by local Service.
#[derive(Debug, Default)]
pub struct EndpointIndex {
    by_node: HashMap<String, BTreeSet<ServiceKey>>,
    by_service: HashMap<ServiceKey, BTreeSet<String>>,
}

impl EndpointIndex {
    /// The index of every leased Service of `inputs`.
    pub fn build(inputs: RouteInputs<'_>) -> Self {
        let mut index = Self::default();
        for lease in inputs.leases.iter() {
            let nodes = endpoint_nodes(inputs, &lease.service);
            if !nodes.is_empty() {
                index.set(&lease.service, &nodes);
            }
        }
        index
    }

    /// Records that `nodes` announce `service`; returns the nodes that did before.
    pub fn set(&mut self, service: &ServiceKey, nodes: &BTreeSet<String>) -> BTreeSet<String> {
        let before = self.by_service.remove(service).unwrap_or_default();
        for node in before.difference(nodes) {
            if let Some(services) = self.by_node.get_mut(node) {
                services.remove(service);
                if services.is_empty() {
                    self.by_node.remove(node);
                }
            }
        }
        for node in nodes.difference(&before) {
            self.by_node.entry(node.clone()).or_default().insert(service.clone());
        }
        if !nodes.is_empty() {
            self.by_service.insert(service.clone(), nodes.clone());
        }
        before
    }

    /// The Services `node` announces for having a ready endpoint.
    pub fn services_of(&self, node: &str) -> impl Iterator<Item = &ServiceKey> {
        self.by_node.get(node).into_iter().flatten()
    }
}

/// The nodes that announce `service` because they have a ready endpoint of it (only with
/// externalTrafficPolicy Local and a lease).
pub fn endpoint_nodes(inputs: RouteInputs<'_>, service: &ServiceKey) -> BTreeSet<String> {
    match inputs.leased(service) {
        Some((_, spec)) if Reach::of(spec) == Reach::EndpointNodes => {
            spec.ready_endpoint_nodes.clone()
        }
        _ => BTreeSet::new(),
    }
}
