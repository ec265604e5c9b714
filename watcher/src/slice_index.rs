//! Which EndpointSlices belong to which Service, kept from the slices' events, so that
//! translating one Service reads its own slices instead of grouping every slice in the store.
//! The index also says which Services a slice event concerns: the one the slice names now, and
//! the one it named before when that label changed.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::{ResourceExt, runtime::watcher};

use crate::write_queue::Key;

/// The label EndpointSlices carry naming their Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// A slice, as (namespace, name).
type SliceKey = (String, String);

#[derive(Default)]
struct Index {
    /// The Service each slice names.
    owner: HashMap<SliceKey, Key>,
    /// The slices of each Service, by name (they share its namespace).
    slices: HashMap<Key, BTreeSet<String>>,
}

impl Index {
    /// Files `slice`; returns the Service it belonged to before, if another.
    fn insert(&mut self, slice: &EndpointSlice) -> Option<Key> {
        let slice_key = (slice.namespace().unwrap_or_default(), slice.name_any());
        let owner = owner_of(slice);
        let before = match &owner {
            Some(owner) => self.owner.insert(slice_key.clone(), owner.clone()),
            None => self.owner.remove(&slice_key),
        };
        if before == owner {
            return None;
        }
        if let Some(before) = &before {
            self.forget(before, &slice_key.1);
        }
        if let Some(owner) = owner {
            self.slices.entry(owner).or_default().insert(slice_key.1);
        }
        before
    }

    /// Removes `slice`; returns the Service it belonged to.
    fn remove(&mut self, slice: &EndpointSlice) -> Option<Key> {
        let slice_key = (slice.namespace().unwrap_or_default(), slice.name_any());
        let before = self.owner.remove(&slice_key)?;
        self.forget(&before, &slice_key.1);
        Some(before)
    }

    fn forget(&mut self, service: &Key, slice: &str) {
        if let Some(slices) = self.slices.get_mut(service) {
            slices.remove(slice);
            if slices.is_empty() {
                self.slices.remove(service);
            }
        }
    }
}

/// Filing is a few map operations: a panic in one leaves an index stale for at most one
/// slice, which that slice's next event repairs, so a poisoned lock is still used.
fn locked(index: &Mutex<Index>) -> MutexGuard<'_, Index> {
    index.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The Service a slice names, if any.
fn owner_of(slice: &EndpointSlice) -> Option<Key> {
    let service = slice.labels().get(SERVICE_NAME_LABEL)?;
    Some((slice.namespace()?, service.clone()))
}

/// What a slice event concerns.
#[derive(Debug, PartialEq, Eq)]
pub enum Concerns {
    /// These Services.
    Services(Vec<Key>),
    /// Every Service: the store was relisted.
    EveryService,
}

/// The index, shared by the slices' reflector that keeps it and the passes that read it.
#[derive(Clone, Default)]
pub struct SliceIndex {
    index: Arc<Mutex<Index>>,
    /// The index being rebuilt during a relist, swapped in when the store swaps its list.
    relisted: Arc<Mutex<Index>>,
}

impl SliceIndex {
    /// Files `event` (after the store applied it); returns what it concerns.
    pub fn record(&self, event: &watcher::Event<EndpointSlice>) -> Concerns {
        match event {
            watcher::Event::Apply(slice) => {
                let before = locked(&self.index).insert(slice);
                Concerns::Services(owner_of(slice).into_iter().chain(before).collect())
            }
            watcher::Event::Delete(slice) => {
                Concerns::Services(locked(&self.index).remove(slice).into_iter().collect())
            }
            watcher::Event::Init => {
                *locked(&self.relisted) = Index::default();
                Concerns::Services(Vec::new())
            }
            watcher::Event::InitApply(slice) => {
                locked(&self.relisted).insert(slice);
                Concerns::Services(Vec::new())
            }
            watcher::Event::InitDone => {
                let relisted = std::mem::take(&mut *locked(&self.relisted));
                *locked(&self.index) = relisted;
                Concerns::EveryService
            }
        }
    }

    /// The names of `service`'s slices.
    pub fn slices_of(&self, service: &Key) -> Vec<String> {
        locked(&self.index)
            .slices
            .get(service)
            .map(|slices| slices.iter().cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn slice(name: &str, service: &str) -> EndpointSlice {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default",
                         "labels": {SERVICE_NAME_LABEL: service}},
            "addressType": "IPv4",
            "endpoints": [],
        }))
        .unwrap()
    }

    fn key(name: &str) -> Key {
        ("default".into(), name.into())
    }

    #[test]
    fn a_slice_that_changes_service_concerns_both() {
        let index = SliceIndex::default();
        let concerns = index.record(&watcher::Event::Apply(slice("s-1", "web")));
        assert_eq!(concerns, Concerns::Services(vec![key("web")]));
        index.record(&watcher::Event::Apply(slice("s-2", "web")));
        assert_eq!(index.slices_of(&key("web")), ["s-1", "s-2"]);

        let concerns = index.record(&watcher::Event::Apply(slice("s-2", "api")));
        assert_eq!(concerns, Concerns::Services(vec![key("api"), key("web")]));
        assert_eq!(index.slices_of(&key("web")), ["s-1"]);
        assert_eq!(index.slices_of(&key("api")), ["s-2"]);

        let concerns = index.record(&watcher::Event::Delete(slice("s-1", "web")));
        assert_eq!(concerns, Concerns::Services(vec![key("web")]));
        assert!(index.slices_of(&key("web")).is_empty());
    }

    #[test]
    fn a_relist_replaces_the_index_when_it_is_done() {
        let index = SliceIndex::default();
        index.record(&watcher::Event::Apply(slice("s-1", "web")));
        index.record(&watcher::Event::Init);
        index.record(&watcher::Event::InitApply(slice("s-9", "api")));
        assert_eq!(index.slices_of(&key("web")), ["s-1"], "the store still holds the old list");
        assert_eq!(index.record(&watcher::Event::InitDone), Concerns::EveryService);
        assert!(index.slices_of(&key("web")).is_empty(), "deleted while the watch was away");
        assert_eq!(index.slices_of(&key("api")), ["s-9"]);
    }
}
