//! The Services the allocator should know, as the allocator sees them, kept up to date pass by
//! pass. Translating every Service on every pass made each pass cost time in proportion to all
//! Services (at 2,000 Services, most of the watcher's CPU during a burst); a Service is
//! translated again only when what it is made from changed: the Service itself, its
//! EndpointSlices, or its namespace (their resourceVersions say so).

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    hash::{DefaultHasher, Hash, Hasher},
};

use k8s_openapi::api::{
    core::v1::{Namespace, Service},
    discovery::v1::EndpointSlice,
};
use kube::{ResourceExt, runtime::reflector::Store};
use metallb_proto::pb;

use crate::{translate, write_queue::Key};

/// The translated Services of ours, and what each translation was made from.
#[derive(Default)]
pub struct DesiredServices {
    services: BTreeMap<Key, pb::Service>,
    /// Per Service in the store (ours or not): a hash of the resourceVersions it was translated
    /// from.
    made_from: HashMap<Key, u64>,
}

impl DesiredServices {
    /// Brings the translations up to date with `sources`; returns the Services whose desired
    /// state changed (new, different, or no longer ours).
    pub fn refresh(
        &mut self,
        services: &Store<Service>,
        slices: &Store<EndpointSlice>,
        namespaces: &Store<Namespace>,
        class: Option<&str>,
    ) -> BTreeSet<Key> {
        let slices = slices.state();
        let slices_by_service = translate::slices_by_service(slices.iter().map(|s| s.as_ref()));
        let namespaces: HashMap<String, _> =
            namespaces.state().into_iter().map(|ns| (ns.name_any(), ns)).collect();
        let mut changed = BTreeSet::new();
        let mut present = HashSet::new();
        for service in services.state() {
            let key: Key = (service.namespace().unwrap_or_default(), service.name_any());
            let namespace = namespaces.get(&key.0);
            let own_slices = slices_by_service
                .get(&(key.0.as_str(), key.1.as_str()))
                .map(Vec::as_slice)
                .unwrap_or_default();
            let fingerprint = fingerprint(
                &service,
                own_slices,
                namespace.and_then(|ns| ns.metadata.resource_version.as_deref()),
            );
            present.insert(key.clone());
            if self.made_from.get(&key) == Some(&fingerprint) {
                continue;
            }
            let labels = namespace.map(|ns| ns.labels().clone()).unwrap_or_default();
            let translated = translate::service(&service, own_slices, &labels, class);
            self.made_from.insert(key.clone(), fingerprint);
            match translated {
                Some(translated) if self.services.get(&key) != Some(&translated) => {
                    self.services.insert(key.clone(), translated);
                    changed.insert(key);
                }
                Some(_) => {}
                None => {
                    if self.services.remove(&key).is_some() {
                        changed.insert(key);
                    }
                }
            }
        }
        self.made_from.retain(|key, _| present.contains(key));
        let gone: Vec<Key> =
            self.services.keys().filter(|key| !present.contains(*key)).cloned().collect();
        for key in gone {
            self.services.remove(&key);
            changed.insert(key);
        }
        changed
    }

    /// Every Service of ours.
    pub fn all(&self) -> &BTreeMap<Key, pb::Service> {
        &self.services
    }

    /// One Service of ours.
    pub fn get(&self, key: &Key) -> Option<&pb::Service> {
        self.services.get(key)
    }
}

/// What a translation depends on, hashed: the Service's, its slices' and its namespace's
/// resourceVersions (every change to an object changes its resourceVersion).
fn fingerprint(service: &Service, slices: &[&EndpointSlice], namespace: Option<&str>) -> u64 {
    let mut hasher = DefaultHasher::new();
    service.metadata.resource_version.hash(&mut hasher);
    namespace.hash(&mut hasher);
    // In any order: the store does not keep one.
    let slices_sum = slices.iter().fold(0u64, |sum, slice| {
        let mut slice_hasher = DefaultHasher::new();
        slice.metadata.name.hash(&mut slice_hasher);
        slice.metadata.resource_version.hash(&mut slice_hasher);
        sum.wrapping_add(slice_hasher.finish())
    });
    slices_sum.hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use kube::runtime::{reflector, watcher};
    use serde_json::json;

    use super::*;

    fn object<K: serde::de::DeserializeOwned>(value: serde_json::Value) -> K {
        serde_json::from_value(value).unwrap()
    }

    fn service(version: &str, kind: &str) -> Service {
        object(json!({
            "metadata": {"name": "web", "namespace": "default", "resourceVersion": version},
            "spec": {"type": kind, "ports": [{"port": 80}]},
        }))
    }

    fn slice(version: &str, ready: bool) -> EndpointSlice {
        object(json!({
            "metadata": {"name": "web-1", "namespace": "default", "resourceVersion": version,
                         "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.0.0.1"], "nodeName": "node-1",
                           "conditions": {"ready": ready}}],
        }))
    }

    fn store<K>(objects: Vec<K>) -> Store<K>
    where
        K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync,
        K::DynamicType: Default + Eq + std::hash::Hash + Clone,
    {
        let (reader, mut writer) = reflector::store();
        writer.apply_watcher_event(&watcher::Event::Init);
        for object in objects {
            writer.apply_watcher_event(&watcher::Event::InitApply(object));
        }
        writer.apply_watcher_event(&watcher::Event::InitDone);
        reader
    }

    fn key() -> Key {
        ("default".into(), "web".into())
    }

    #[test]
    fn a_service_is_translated_again_only_when_it_or_its_slices_change() {
        let mut desired = DesiredServices::default();
        let namespaces = store::<Namespace>(vec![]);
        let services = store(vec![service("1", "LoadBalancer")]);
        let slices = store(vec![slice("1", false)]);
        let refresh = |desired: &mut DesiredServices, services, slices| {
            desired.refresh(services, slices, &namespaces, None)
        };

        assert_eq!(refresh(&mut desired, &services, &slices), BTreeSet::from([key()]));
        assert!(!desired.get(&key()).unwrap().has_ready_endpoints);
        assert!(refresh(&mut desired, &services, &slices).is_empty(), "nothing changed");

        let slices = store(vec![slice("2", true)]);
        assert_eq!(refresh(&mut desired, &services, &slices), BTreeSet::from([key()]));
        assert!(desired.get(&key()).unwrap().has_ready_endpoints);

        // A new resourceVersion that translates the same is no change for the allocator.
        let services = store(vec![service("2", "LoadBalancer")]);
        assert!(refresh(&mut desired, &services, &slices).is_empty());

        let services = store(vec![service("3", "ClusterIP")]);
        assert_eq!(refresh(&mut desired, &services, &slices), BTreeSet::from([key()]));
        assert!(desired.get(&key()).is_none(), "no longer ours");

        let services = store(vec![service("4", "LoadBalancer")]);
        refresh(&mut desired, &services, &slices);
        let services = store::<Service>(vec![]);
        assert_eq!(refresh(&mut desired, &services, &slices), BTreeSet::from([key()]));
        assert!(desired.all().is_empty(), "deleted");
    }
}
