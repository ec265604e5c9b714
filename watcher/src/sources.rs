//! What the watcher reads from Kubernetes: reflector stores of Services, EndpointSlices, Nodes,
//! Namespaces, the configuration ConfigMap and metallb.io resources, and Secrets for peer
//! passwords. Every change to any of them wakes the reconciler, which works level-based from
//! the stores, so bursts coalesce into one pass; each change is also recorded in the change log
//! (see `changes`), so that the pass reads again only what changed.
//!
//! The stores keep what the watcher reads and nothing it does not: the objects that grow with
//! the cluster (Services, EndpointSlices, Nodes, Namespaces) are kept without their
//! managedFields, which were most of each Service's memory, nor kubectl's copy of the object
//! in an annotation; Nodes without their image lists.

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

use crate::{
    changes::{ChangeLog, NamespaceLabels},
    metrics::WatcherMetrics,
    slice_index::{Concerns, SliceIndex},
};

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
    /// What changed since the last pass.
    pub changes: ChangeLog,
    /// Which EndpointSlices belong to which Service.
    pub slice_index: SliceIndex,
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
        let changes = ChangeLog::default();
        let slice_index = SliceIndex::default();
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
                    let store =
                        watch(api, resource, changed.clone(), keep_all, config_changed(&changes));
                    resources.push((kind.to_string(), store));
                }
                Ok(_) => {
                    let store =
                        watch(api, resource, changed.clone(), keep_all, config_changed(&changes));
                    resources.push((kind.to_string(), store));
                }
            }
        }
        let services = {
            let changes = changes.clone();
            watch(Api::all(client.clone()), (), changed.clone(), slim::<Service>, move |event| {
                changes.service_event(event)
            })
        };
        let endpoint_slices = {
            let (changes, index) = (changes.clone(), slice_index.clone());
            let record = move |event: &watcher::Event<EndpointSlice>| match index.record(event) {
                Concerns::Services(keys) => changes.services(keys),
                Concerns::EveryService => changes.every_service(),
            };
            watch(Api::all(client.clone()), (), changed.clone(), slim::<EndpointSlice>, record)
        };
        let nodes = {
            let changes = changes.clone();
            watch(Api::all(client.clone()), (), changed.clone(), slim_node, move |_| {
                changes.nodes()
            })
        };
        let namespaces = {
            let mut labels = NamespaceLabels::new(changes.clone());
            watch(Api::all(client.clone()), (), changed.clone(), slim::<Namespace>, move |event| {
                labels.record(event)
            })
        };
        Self {
            services,
            endpoint_slices,
            nodes,
            namespaces,
            config_maps: watch(
                Api::namespaced(client.clone(), config_namespace),
                (),
                changed.clone(),
                keep_all,
                config_changed(&changes),
            ),
            secrets: watch(
                Api::namespaced(client.clone(), config_namespace),
                (),
                changed,
                keep_all,
                config_changed(&changes),
            ),
            resources,
            changes,
            slice_index,
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

/// The annotation `kubectl apply` keeps a copy of the whole object in.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Drops what the watcher never reads of an object that is kept by the thousand.
fn slim<K: Resource>(object: &mut K) {
    let metadata = object.meta_mut();
    metadata.managed_fields = None;
    if let Some(annotations) = &mut metadata.annotations {
        annotations.remove(LAST_APPLIED);
    }
}

/// A Node as the watcher reads it: its images (often hundreds of names) are never read.
fn slim_node(node: &mut Node) {
    slim(node);
    if let Some(status) = &mut node.status {
        status.images = None;
    }
}

/// Records any event as a change of the configuration.
fn config_changed<K>(changes: &ChangeLog) -> impl FnMut(&watcher::Event<K>) + Send + 'static {
    let changes = changes.clone();
    move |_| changes.config()
}

/// Keeps an object as it is (the configuration's few objects are read whole).
fn keep_all<K>(_: &mut K) {}

/// A reflector over `api`, with kube-runtime's default backoff on errors, keeping objects as
/// `slim` leaves them; `record` sees each event after the store applied it.
fn watch<K>(
    api: Api<K>,
    dynamic_type: K::DynamicType,
    changed: Wake,
    slim: fn(&mut K),
    mut record: impl FnMut(&watcher::Event<K>) + Send + 'static,
) -> Store<K>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Send + Sync + 'static,
{
    let writer = reflector::store::Writer::new(dynamic_type);
    let reader = writer.as_reader();
    let stream = reflector::reflector(
        writer,
        watcher(api, watcher::Config::default()).default_backoff().modify(slim),
    );
    tokio::spawn(async move {
        stream
            .for_each(|event| {
                match event {
                    Ok(event) => {
                        record(&event);
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
