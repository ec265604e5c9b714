//! What the watcher reads from Kubernetes: reflector stores of Services, EndpointSlices, Nodes,
//! Namespaces, the configuration ConfigMap and metallb.io resources, and Secrets for peer
//! passwords. Every change to any of them wakes the reconciler, which works level-based from
//! the stores, so bursts coalesce into one pass.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::{
    core::v1::{ConfigMap, Namespace, Node, Secret, Service},
    discovery::v1::EndpointSlice,
};
use kube::{
    Api, Client, Resource,
    api::{ApiResource, DynamicObject, GroupVersionKind},
    runtime::{
        WatchStreamExt,
        reflector::{self, Store},
        watcher,
    },
};
use serde::de::DeserializeOwned;
use tokio::sync::Notify;

use crate::metrics::WatcherMetrics;

/// The metallb.io kinds read as configuration, with the version MetalLB serves them in.
pub const CONFIG_KINDS: [(&str, &str); 6] = [
    ("IPAddressPool", "v1beta1"),
    ("BGPPeer", "v1beta2"),
    ("BGPAdvertisement", "v1beta1"),
    ("L2Advertisement", "v1beta1"),
    ("Community", "v1beta1"),
    ("BFDProfile", "v1beta1"),
];

/// The stores.
#[derive(Clone)]
pub struct Sources {
    /// Services of every namespace.
    pub services: Store<Service>,
    /// EndpointSlices of every namespace.
    pub endpoint_slices: Store<EndpointSlice>,
    /// Nodes.
    pub nodes: Store<Node>,
    /// Namespaces, for pools' namespace selectors.
    pub namespaces: Store<Namespace>,
    /// ConfigMaps of the configuration namespace.
    pub config_maps: Store<ConfigMap>,
    /// Secrets of the configuration namespace (peer passwords).
    pub secrets: Store<Secret>,
    /// metallb.io resources that the cluster serves, by kind.
    pub resources: Vec<(String, Store<DynamicObject>)>,
}

impl Sources {
    /// Starts a watcher per source; `changed` is notified on every event, which `metrics`
    /// counts.
    pub async fn start(
        client: &Client,
        config_namespace: &str,
        changed: Arc<Notify>,
        metrics: &WatcherMetrics,
    ) -> Self {
        let changed = Wake { changed, metrics: metrics.clone() };
        let mut resources = Vec::new();
        for (kind, version) in CONFIG_KINDS {
            let resource =
                ApiResource::from_gvk(&GroupVersionKind::gvk("metallb.io", version, kind));
            let api: Api<DynamicObject> =
                Api::namespaced_with(client.clone(), config_namespace, &resource);
            // A cluster without MetalLB's CRDs (a ConfigMap-only setup) serves none of these:
            // only "not found" means that. Any other error (our RBAC not bound yet, a transient
            // failure) is retried by the watch, and the first pass waits for its list, so a kind
            // is never silently left out.
            match api.list(&kube::api::ListParams::default().limit(1)).await {
                Err(kube::Error::Api(status)) if status.code == 404 => {
                    tracing::info!(kind, "metallb.io resource not served; not watching it")
                }
                Err(err) => {
                    tracing::warn!(kind, error = %err, "cannot list metallb.io resource yet; watching it, retrying");
                    resources.push((kind.to_string(), watch(api, resource, changed.clone())));
                }
                Ok(_) => resources.push((kind.to_string(), watch(api, resource, changed.clone()))),
            }
        }
        Self {
            services: watch(Api::all(client.clone()), (), changed.clone()),
            endpoint_slices: watch(Api::all(client.clone()), (), changed.clone()),
            nodes: watch(Api::all(client.clone()), (), changed.clone()),
            namespaces: watch(Api::all(client.clone()), (), changed.clone()),
            config_maps: watch(
                Api::namespaced(client.clone(), config_namespace),
                (),
                changed.clone(),
            ),
            secrets: watch(Api::namespaced(client.clone(), config_namespace), (), changed),
            resources,
        }
    }

    /// Waits until every store holds its initial list.
    pub async fn wait_until_ready(&self) -> anyhow::Result<()> {
        self.services.wait_until_ready().await?;
        self.endpoint_slices.wait_until_ready().await?;
        self.nodes.wait_until_ready().await?;
        self.namespaces.wait_until_ready().await?;
        self.config_maps.wait_until_ready().await?;
        self.secrets.wait_until_ready().await?;
        for (_, store) in &self.resources {
            store.wait_until_ready().await?;
        }
        Ok(())
    }
}

/// What the configuration is read from, as the stores hold it now.
pub struct ConfigObjects {
    /// The ConfigMap `config` of the configuration namespace, if any.
    pub config_map: Option<Arc<ConfigMap>>,
    /// Every metallb.io resource of the namespace.
    pub resources: Vec<DynamicObject>,
    /// The namespace's Secrets (peer passwords).
    pub secrets: Vec<Arc<Secret>>,
}

impl ConfigObjects {
    /// The configuration these objects make.
    pub fn read(
        &self,
        namespace: &str,
    ) -> Result<metallb_proto::pb::Config, Vec<metallb_config_formats::FormatError>> {
        let secrets: Vec<&Secret> = self.secrets.iter().map(|secret| secret.as_ref()).collect();
        crate::translate::config(namespace, self.config_map.as_deref(), &self.resources, &secrets)
    }
}

impl Sources {
    /// The configuration objects of `namespace`.
    pub fn config_objects(&self, namespace: &str) -> ConfigObjects {
        let name = kube::runtime::reflector::ObjectRef::new(crate::translate::CONFIG_MAP_NAME);
        ConfigObjects {
            config_map: self.config_maps.get(&name.within(namespace)),
            resources: self
                .resources
                .iter()
                .flat_map(|(_, store)| store.state())
                .map(|object| (*object).clone())
                .collect(),
            secrets: self.secrets.state(),
        }
    }
}

/// Whom a watch event concerns: the reconciler, woken, and the metrics.
#[derive(Clone)]
struct Wake {
    changed: Arc<Notify>,
    metrics: WatcherMetrics,
}

/// A reflector over `api`, with kube-runtime's default backoff on errors.
fn watch<K>(api: Api<K>, dynamic_type: K::DynamicType, changed: Wake) -> Store<K>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Send + Sync + 'static,
{
    let writer = reflector::store::Writer::new(dynamic_type);
    let reader = writer.as_reader();
    let stream =
        reflector::reflector(writer, watcher(api, watcher::Config::default()).default_backoff());
    tokio::spawn(async move {
        stream
            .for_each(|event| {
                match event {
                    Ok(event) => {
                        // An object listed, added, changed or deleted; not the markers around
                        // a (re)list.
                        if matches!(
                            event,
                            watcher::Event::Apply(_)
                                | watcher::Event::Delete(_)
                                | watcher::Event::InitApply(_)
                        ) {
                            changed.metrics.update();
                        }
                        changed.changed.notify_one()
                    }
                    Err(err) => {
                        changed.metrics.update_error();
                        tracing::warn!(error = %err, "watch error; retrying with backoff")
                    }
                }
                futures::future::ready(())
            })
            .await;
    });
    reader
}
