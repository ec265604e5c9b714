//! The Services the allocator should know, as the allocator sees them, kept up to date pass by
//! pass from the change log: a pass translates again only the Services whose makings changed
//! (the Service, its EndpointSlices, its namespace's labels), looked up by key, so it costs what
//! changed, not the number of Services. Only after a relist is every Service translated again.
//!
//! Each translation is kept once, behind an `Arc` that the replicas' records of what they were
//! told share; nothing else of a Service is kept here (the reflector's store holds the object).

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    sync::Arc,
};

use k8s_openapi::api::{
    core::v1::{Namespace, Service},
    discovery::v1::EndpointSlice,
};
use kube::{
    ResourceExt,
    runtime::reflector::{ObjectRef, Store},
};
use metallb_proto::pb;

use crate::{changes::Changed, slice_index::SliceIndex, translate, write_queue::Key};

/// What Services are made from: the stores, and which slices are whose.
pub struct Makings<'a> {
    pub services: &'a Store<Service>,
    pub slices: &'a Store<EndpointSlice>,
    pub slice_index: &'a SliceIndex,
    pub namespaces: &'a Store<Namespace>,
}

impl Makings<'_> {
    fn service(&self, key: &Key) -> Option<Arc<Service>> {
        self.services.get(&ObjectRef::new(&key.1).within(&key.0))
    }

    fn slices_of(&self, key: &Key) -> Vec<Arc<EndpointSlice>> {
        let slices = self.slice_index.slices_of(key);
        let refs = slices.iter().map(|name| ObjectRef::new(name).within(&key.0));
        refs.filter_map(|slice| self.slices.get(&slice)).collect()
    }

    fn namespace_labels(&self, namespace: &str) -> BTreeMap<String, String> {
        let namespace = self.namespaces.get(&ObjectRef::new(namespace));
        namespace.map(|ns| ns.labels().clone()).unwrap_or_default()
    }
}

/// The translated Services of ours.
#[derive(Default)]
pub struct DesiredServices {
    services: BTreeMap<Key, Arc<pb::Service>>,
    /// Services translated since this was made: what a pass cost.
    translations: u64,
}

impl DesiredServices {
    /// Brings the translations up to date with what `changed` says changed in `makings`;
    /// returns the Services whose desired state changed (new, different, or no longer ours).
    pub fn refresh(
        &mut self,
        changed: &Changed,
        makings: &Makings<'_>,
        class: Option<&str>,
    ) -> BTreeSet<Key> {
        if changed.every_service {
            return self.refresh_all(makings, class);
        }
        let mut keys: BTreeSet<&Key> = changed.services.iter().collect();
        // Only Services of ours read their namespace's labels; whether a Service is ours does
        // not depend on them.
        let in_namespaces: Vec<Key> = changed
            .namespaces
            .iter()
            .flat_map(|namespace| self.of_namespace(namespace).cloned().collect::<Vec<_>>())
            .collect();
        keys.extend(&in_namespaces);
        let mut differ = BTreeSet::new();
        let mut labels = HashMap::new();
        for key in keys {
            let service = makings.service(key);
            let labels =
                labels.entry(key.0.clone()).or_insert_with(|| makings.namespace_labels(&key.0));
            if self.translate(key, service.as_deref(), makings, labels, class) {
                differ.insert(key.clone());
            }
        }
        differ
    }

    /// Every Service translated again: after a relist, which says nothing of what was deleted
    /// meanwhile, so the Services not in the store any more are found here.
    fn refresh_all(&mut self, makings: &Makings<'_>, class: Option<&str>) -> BTreeSet<Key> {
        let mut differ = BTreeSet::new();
        let mut present = HashSet::new();
        let mut labels = HashMap::new();
        for service in makings.services.state() {
            let key = crate::changes::key_of(&service);
            let labels =
                labels.entry(key.0.clone()).or_insert_with(|| makings.namespace_labels(&key.0));
            if self.translate(&key, Some(&service), makings, labels, class) {
                differ.insert(key.clone());
            }
            present.insert(key);
        }
        let gone: Vec<Key> =
            self.services.keys().filter(|key| !present.contains(*key)).cloned().collect();
        for key in gone {
            self.services.remove(&key);
            differ.insert(key);
        }
        differ
    }

    /// Translates `service` (`None`: not in the store) again; whether its desired state changed.
    fn translate(
        &mut self,
        key: &Key,
        service: Option<&Service>,
        makings: &Makings<'_>,
        namespace_labels: &BTreeMap<String, String>,
        class: Option<&str>,
    ) -> bool {
        self.translations += 1;
        let translated = service.and_then(|service| {
            // A Service not of ours is not worth looking its slices up for.
            if !translate::is_ours(service, class) {
                return None;
            }
            let slices = makings.slices_of(key);
            let slices: Vec<&EndpointSlice> = slices.iter().map(Arc::as_ref).collect();
            translate::service(service, &slices, namespace_labels, class)
        });
        match translated {
            Some(translated) if self.services.get(key).map(Arc::as_ref) != Some(&translated) => {
                self.services.insert(key.clone(), Arc::new(translated));
                true
            }
            Some(_) => false,
            None => self.services.remove(key).is_some(),
        }
    }

    /// The Services of ours in `namespace`.
    fn of_namespace<'a>(&'a self, namespace: &'a str) -> impl Iterator<Item = &'a Key> + 'a {
        let from: Key = (namespace.to_string(), String::new());
        self.services.range(from..).map(|(key, _)| key).take_while(move |key| key.0 == namespace)
    }

    /// Every Service of ours.
    pub fn all(&self) -> &BTreeMap<Key, Arc<pb::Service>> {
        &self.services
    }

    /// One Service of ours.
    pub fn get(&self, key: &Key) -> Option<&Arc<pb::Service>> {
        self.services.get(key)
    }

    /// How many Services were translated since this was made.
    pub fn translations(&self) -> u64 {
        self.translations
    }
}

#[cfg(test)]
mod tests {
    use kube::runtime::{reflector, watcher};
    use serde_json::json;

    use super::*;
    use crate::changes::ChangeLog;

    fn object<K: serde::de::DeserializeOwned>(value: serde_json::Value) -> K {
        serde_json::from_value(value).unwrap()
    }

    fn service(name: &str, namespace: &str, kind: &str) -> Service {
        object(json!({
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"type": kind, "ports": [{"port": 80}]},
        }))
    }

    fn slice(service: &str, ready: bool) -> EndpointSlice {
        object(json!({
            "metadata": {"name": format!("{service}-1"), "namespace": "default",
                         "labels": {"kubernetes.io/service-name": service}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.0.0.1"], "nodeName": "node-1",
                           "conditions": {"ready": ready}}],
        }))
    }

    fn namespace(name: &str, team: &str) -> Namespace {
        object(json!({"metadata": {"name": name, "labels": {"team": team}}}))
    }

    /// Stores fed as the reflectors feed them, recording into a change log as `sources` does.
    struct World {
        services: (Store<Service>, reflector::store::Writer<Service>),
        slices: (Store<EndpointSlice>, reflector::store::Writer<EndpointSlice>),
        namespaces: (Store<Namespace>, reflector::store::Writer<Namespace>),
        slice_index: SliceIndex,
        namespace_labels: crate::changes::NamespaceLabels,
        log: ChangeLog,
        desired: DesiredServices,
    }

    impl World {
        fn new() -> Self {
            let log = ChangeLog::default();
            let mut world = Self {
                services: reflector::store(),
                slices: reflector::store(),
                namespaces: reflector::store(),
                slice_index: SliceIndex::default(),
                namespace_labels: crate::changes::NamespaceLabels::new(log.clone()),
                log,
                desired: DesiredServices::default(),
            };
            world.relist_services(vec![]);
            world.relist_slices(vec![]);
            world.relist_namespaces(vec![]);
            world
        }

        fn service(&mut self, event: watcher::Event<Service>) {
            self.services.1.apply_watcher_event(&event);
            self.log.service_event(&event);
        }

        fn relist_services(&mut self, services: Vec<Service>) {
            self.service(watcher::Event::Init);
            for service in services {
                self.service(watcher::Event::InitApply(service));
            }
            self.service(watcher::Event::InitDone);
        }

        fn slice(&mut self, event: watcher::Event<EndpointSlice>) {
            self.slices.1.apply_watcher_event(&event);
            match self.slice_index.record(&event) {
                crate::slice_index::Concerns::Services(keys) => self.log.services(keys),
                crate::slice_index::Concerns::EveryService => self.log.every_service(),
            }
        }

        fn relist_slices(&mut self, slices: Vec<EndpointSlice>) {
            self.slice(watcher::Event::Init);
            for slice in slices {
                self.slice(watcher::Event::InitApply(slice));
            }
            self.slice(watcher::Event::InitDone);
        }

        fn namespace(&mut self, event: watcher::Event<Namespace>) {
            self.namespaces.1.apply_watcher_event(&event);
            self.namespace_labels.record(&event);
        }

        fn relist_namespaces(&mut self, namespaces: Vec<Namespace>) {
            self.namespace(watcher::Event::Init);
            for namespace in namespaces {
                self.namespace(watcher::Event::InitApply(namespace));
            }
            self.namespace(watcher::Event::InitDone);
        }

        /// A pass: (the Services whose desired state changed, how many were translated).
        fn pass(&mut self) -> (BTreeSet<Key>, u64) {
            let before = self.desired.translations();
            let makings = Makings {
                services: &self.services.0,
                slices: &self.slices.0,
                slice_index: &self.slice_index,
                namespaces: &self.namespaces.0,
            };
            let changed = self.desired.refresh(&self.log.take(), &makings, None);
            (changed, self.desired.translations() - before)
        }
    }

    fn key(namespace: &str, name: &str) -> Key {
        (namespace.into(), name.into())
    }

    fn keys(names: &[&str]) -> BTreeSet<Key> {
        names.iter().map(|name| key("default", name)).collect()
    }

    /// 100 LoadBalancer Services in `default`, and one in `other`.
    fn populated() -> World {
        let mut world = World::new();
        world.relist_namespaces(vec![namespace("default", "a"), namespace("other", "a")]);
        let mut services: Vec<Service> =
            (0..100).map(|n| service(&format!("svc-{n}"), "default", "LoadBalancer")).collect();
        services.push(service("elsewhere", "other", "LoadBalancer"));
        world.relist_services(services);
        let (changed, translated) = world.pass();
        assert_eq!(changed.len(), 101);
        assert_eq!(translated, 101, "the first pass translates everything");
        world
    }

    #[test]
    fn a_pass_after_one_service_changed_translates_only_that_service() {
        let mut world = populated();
        assert_eq!(world.pass(), (BTreeSet::new(), 0), "nothing changed, nothing translated");

        let mut changed = service("svc-7", "default", "LoadBalancer");
        changed.spec.as_mut().unwrap().load_balancer_ip = Some("192.0.2.7".into());
        world.service(watcher::Event::Apply(changed));
        assert_eq!(world.pass(), (keys(&["svc-7"]), 1));
        assert_eq!(
            world.desired.get(&key("default", "svc-7")).unwrap().load_balancer_ip,
            "192.0.2.7"
        );

        // Its EndpointSlice: that Service alone again.
        world.slice(watcher::Event::Apply(slice("svc-8", true)));
        assert_eq!(world.pass(), (keys(&["svc-8"]), 1));
        assert!(world.desired.get(&key("default", "svc-8")).unwrap().has_ready_endpoints);
        world.slice(watcher::Event::Apply(slice("svc-8", false)));
        assert_eq!(world.pass(), (keys(&["svc-8"]), 1));
        assert!(!world.desired.get(&key("default", "svc-8")).unwrap().has_ready_endpoints);

        // A change that translates the same is no change for the allocator.
        world.service(watcher::Event::Apply(service("svc-9", "default", "LoadBalancer")));
        assert_eq!(world.pass(), (BTreeSet::new(), 1));

        world.service(watcher::Event::Apply(service("svc-9", "default", "ClusterIP")));
        assert_eq!(world.pass(), (keys(&["svc-9"]), 1));
        assert!(world.desired.get(&key("default", "svc-9")).is_none(), "no longer ours");

        world.service(watcher::Event::Delete(service("svc-10", "default", "LoadBalancer")));
        assert_eq!(world.pass(), (keys(&["svc-10"]), 1));
        assert!(world.desired.get(&key("default", "svc-10")).is_none(), "deleted");
        assert_eq!(world.desired.all().len(), 99);
    }

    #[test]
    fn a_namespace_label_change_reaches_every_service_of_that_namespace_only() {
        let mut world = populated();
        world.namespace(watcher::Event::Apply(namespace("default", "b")));
        let (changed, translated) = world.pass();
        assert_eq!(changed.len(), 100);
        assert!(changed.iter().all(|key| key.0 == "default"));
        assert_eq!(translated, 100, "not the Service of the other namespace");
        for service in world.desired.all().values() {
            let team = service.namespace_labels.get("team").map(String::as_str);
            let namespace = &service.key.as_ref().unwrap().namespace;
            assert_eq!(team, Some(if namespace == "default" { "b" } else { "a" }));
        }
    }

    #[test]
    fn a_relist_reaches_every_service_and_finds_the_deleted_ones() {
        let mut world = populated();
        // The watch lost its place; meanwhile svc-0 was deleted and svc-1 changed.
        let mut services: Vec<Service> =
            (1..100).map(|n| service(&format!("svc-{n}"), "default", "LoadBalancer")).collect();
        services[0].spec.as_mut().unwrap().load_balancer_ip = Some("192.0.2.1".into());
        services.push(service("elsewhere", "other", "LoadBalancer"));
        world.relist_services(services);
        let (changed, translated) = world.pass();
        assert_eq!(changed, keys(&["svc-0", "svc-1"]));
        assert_eq!(translated, 100);
        assert!(world.desired.get(&key("default", "svc-0")).is_none());

        // The same for a relist of the slices: every Service is read again with its slices.
        world.relist_slices(vec![slice("svc-2", true), slice("svc-3", true)]);
        let (changed, translated) = world.pass();
        assert_eq!(changed, keys(&["svc-2", "svc-3"]));
        assert_eq!(translated, 100);
    }
}
