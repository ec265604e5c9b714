//! What changed since the last pass, as the reflectors' events say: which Services must be
//! translated again, and whether the nodes or the configuration must be read again. With it a
//! pass costs what changed, not the size of the stores (at 20,000 Services, walking the store on
//! every pass was most of the watcher's CPU). Every Service is translated again only after a
//! relist of the objects Services are made from (the first list, a watch that lost its place):
//! a relist does not say what was deleted meanwhile.

use std::{
    collections::{HashMap, HashSet},
    hash::{DefaultHasher, Hash, Hasher},
    sync::{Arc, Mutex, PoisonError},
};

use k8s_openapi::api::core::v1::{Namespace, Service};
use kube::{ResourceExt, runtime::watcher};

use crate::write_queue::Key;

/// The changes one pass works from.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changed {
    /// Every Service must be translated again.
    pub every_service: bool,
    /// Services to translate again (whether they still exist or not).
    pub services: HashSet<Key>,
    /// Namespaces whose labels changed: their Services are translated again.
    pub namespaces: HashSet<String>,
    /// The nodes must be read again.
    pub nodes: bool,
    /// The configuration must be read again.
    pub config: bool,
}

impl Changed {
    /// Everything, as before the first pass.
    pub fn everything() -> Self {
        Self { every_service: true, nodes: true, config: true, ..Self::default() }
    }
}

/// The changes recorded since the last `take`, shared by the reflectors that record them and
/// the reconciler that takes them. A reflector records after its store applied the event, so a
/// pass that takes a change reads the store as new as the change, or newer.
#[derive(Clone)]
pub struct ChangeLog {
    changed: Arc<Mutex<Changed>>,
}

impl Default for ChangeLog {
    fn default() -> Self {
        Self { changed: Arc::new(Mutex::new(Changed::everything())) }
    }
}

impl ChangeLog {
    fn with<T>(&self, f: impl FnOnce(&mut Changed) -> T) -> T {
        // A panic while recording leaves sets that are at worst too large: still usable.
        f(&mut self.changed.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// What changed since the last call; the log starts empty again.
    pub fn take(&self) -> Changed {
        self.with(std::mem::take)
    }

    /// Services to translate again.
    pub fn services(&self, keys: impl IntoIterator<Item = Key>) {
        self.with(|changed| changed.services.extend(keys));
    }

    /// Every Service is to be translated again.
    pub fn every_service(&self) {
        self.with(|changed| changed.every_service = true);
    }

    /// The Services of `namespace` are to be translated again.
    pub fn namespace(&self, namespace: String) {
        self.with(|changed| changed.namespaces.insert(namespace));
    }

    /// The nodes are to be read again.
    pub fn nodes(&self) {
        self.with(|changed| changed.nodes = true);
    }

    /// The configuration is to be read again.
    pub fn config(&self) {
        self.with(|changed| changed.config = true);
    }

    /// Records a Service event.
    pub fn service_event(&self, event: &watcher::Event<Service>) {
        match event {
            watcher::Event::Apply(service) | watcher::Event::Delete(service) => {
                self.services([key_of(service)])
            }
            // The store swaps in the new list only now.
            watcher::Event::InitDone => self.every_service(),
            watcher::Event::Init | watcher::Event::InitApply(_) => {}
        }
    }
}

/// A Service's key.
pub fn key_of(service: &Service) -> Key {
    (service.namespace().unwrap_or_default(), service.name_any())
}

/// Records the namespace events that matter to Services: a change of labels (which pools'
/// namespace selectors read), not of anything else, so that a namespace's annotations or
/// status changing does not translate all its Services again.
pub struct NamespaceLabels {
    log: ChangeLog,
    /// A hash of each namespace's labels.
    labels: HashMap<String, u64>,
    /// The same, for a relist in progress.
    relisted: HashMap<String, u64>,
}

impl NamespaceLabels {
    /// Records into `log`.
    pub fn new(log: ChangeLog) -> Self {
        Self { log, labels: HashMap::new(), relisted: HashMap::new() }
    }

    /// Records `event`.
    pub fn record(&mut self, event: &watcher::Event<Namespace>) {
        match event {
            watcher::Event::Apply(namespace) => {
                let hash = labels_hash(namespace);
                if self.labels.insert(namespace.name_any(), hash) != Some(hash) {
                    self.log.namespace(namespace.name_any());
                }
            }
            watcher::Event::Delete(namespace) => {
                self.labels.remove(&namespace.name_any());
                self.log.namespace(namespace.name_any());
            }
            watcher::Event::Init => self.relisted.clear(),
            watcher::Event::InitApply(namespace) => {
                self.relisted.insert(namespace.name_any(), labels_hash(namespace));
            }
            watcher::Event::InitDone => {
                self.labels = std::mem::take(&mut self.relisted);
                self.log.every_service();
            }
        }
    }
}

fn labels_hash(namespace: &Namespace) -> u64 {
    let mut hasher = DefaultHasher::new();
    namespace.labels().hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn namespace(labels: serde_json::Value, annotations: serde_json::Value) -> Namespace {
        serde_json::from_value(json!({
            "metadata": {"name": "team", "labels": labels, "annotations": annotations},
        }))
        .unwrap()
    }

    #[test]
    fn only_a_change_of_labels_marks_a_namespace() {
        let log = ChangeLog::default();
        log.take();
        let mut namespaces = NamespaceLabels::new(log.clone());
        namespaces.record(&watcher::Event::Init);
        namespaces.record(&watcher::Event::InitApply(namespace(json!({"a": "1"}), json!({}))));
        namespaces.record(&watcher::Event::InitDone);
        assert_eq!(log.take(), Changed { every_service: true, ..Changed::default() });

        namespaces.record(&watcher::Event::Apply(namespace(json!({"a": "1"}), json!({"x": "y"}))));
        assert_eq!(log.take(), Changed::default(), "an annotation is no change for Services");

        namespaces.record(&watcher::Event::Apply(namespace(json!({"a": "2"}), json!({"x": "y"}))));
        let expected = Changed { namespaces: HashSet::from(["team".into()]), ..Changed::default() };
        assert_eq!(log.take(), expected);
    }

    #[test]
    fn a_relisted_service_store_means_every_service() {
        let log = ChangeLog::default();
        assert_eq!(log.take(), Changed::everything(), "before the first pass");
        log.service_event(&watcher::Event::Init);
        assert_eq!(log.take(), Changed::default(), "the store has not changed yet");
        log.service_event(&watcher::Event::InitDone);
        assert!(log.take().every_service);
    }
}
