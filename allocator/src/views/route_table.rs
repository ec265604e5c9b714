//! Routes merged from the contributions of many Services, with a log of which routes changed
//! at which version, so that a stream can ask "what changed since the version I sent" and pay
//! for the answer, not for the whole table.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::Arc,
};

use metallb_proto::pb;
use prost::{Message, bytes::Bytes};

use crate::{
    routes::{RouteBuilder, RouteKey},
    service_spec::ServiceKey,
};

/// Removed routes remembered for streams that have not caught up: at least this many, or as
/// many as the table has routes. A stream further behind gets a snapshot.
const MIN_TOMBSTONES: usize = 64;

/// A route as streams send it: built and encoded once.
#[derive(Clone, Debug)]
pub struct SentRoute {
    /// In the contract's terms.
    pub route: Arc<pb::Route>,
    /// Encoded.
    pub encoded: Bytes,
}

/// A change in a table's log: which route, and what it is now (`None`: removed), so that a
/// stream reading the log need not look each route up.
#[derive(Debug)]
pub struct Logged {
    /// The route's key.
    pub key: RouteKey,
    /// The route now.
    pub now: Option<SentRoute>,
}

/// One route of a table.
#[derive(Debug)]
pub struct TableRoute {
    /// What each Service contributes to it.
    contributions: BTreeMap<ServiceKey, RouteBuilder>,
    /// Every contribution merged.
    pub merged: RouteBuilder,
    /// `merged` in the contract's terms, built once and shared by every stream sending it.
    pub built: Arc<pb::Route>,
    /// `built`, encoded once: the bytes every stream sending it sends.
    pub encoded: Bytes,
    /// The version that last changed it.
    pub version: u64,
}

/// A set of routes, each merged from Services' contributions.
#[derive(Debug, Default)]
pub struct RouteTable {
    routes: BTreeMap<RouteKey, TableRoute>,
    /// The keys each Service contributes to.
    by_service: HashMap<ServiceKey, Vec<RouteKey>>,
    /// Every change still remembered, at its latest version: live routes and tombstones.
    log: BTreeMap<u64, Logged>,
    /// Removed routes and the version that removed them.
    tombstones: HashMap<RouteKey, u64>,
    version: u64,
    /// Changes at or before this version may have been forgotten.
    horizon: u64,
}

impl RouteTable {
    /// The version of the latest change.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Number of routes.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// Whether the route at `key` changed (or was removed) after `version`, as far as the
    /// table remembers.
    pub fn changed_after(&self, key: &RouteKey, version: u64) -> bool {
        let last = self
            .routes
            .get(key)
            .map(|route| route.version)
            .or_else(|| self.tombstones.get(key).copied());
        last.is_some_and(|last| last > version)
    }

    /// The route at `key`.
    pub fn get(&self, key: &RouteKey) -> Option<&TableRoute> {
        self.routes.get(key)
    }

    /// Every route, in key order.
    pub fn routes(&self) -> impl Iterator<Item = (&RouteKey, &TableRoute)> {
        self.routes.iter()
    }

    /// The keys changed after `version` (present or removed), or `None` when some of those
    /// changes are no longer remembered.
    pub fn changed_since(&self, version: u64) -> Option<impl Iterator<Item = &Logged>> {
        (version >= self.horizon).then(|| self.log.range(version + 1..).map(|(_, logged)| logged))
    }

    /// Makes `service` contribute `routes` (nothing: it contributes no more); returns whether
    /// any route changed.
    pub fn set_service(
        &mut self,
        service: &ServiceKey,
        routes: BTreeMap<RouteKey, RouteBuilder>,
    ) -> bool {
        let old_keys = self.by_service.remove(service).unwrap_or_default();
        let mut touched: BTreeSet<RouteKey> = BTreeSet::new();
        for key in old_keys {
            let unchanged = self
                .routes
                .get(&key)
                .and_then(|route| route.contributions.get(service))
                .is_some_and(|old| routes.get(&key) == Some(old));
            if !unchanged {
                if let Some(route) = self.routes.get_mut(&key) {
                    route.contributions.remove(service);
                }
                touched.insert(key);
            }
        }
        if !routes.is_empty() {
            self.by_service.insert(service.clone(), routes.keys().cloned().collect());
        }
        for (key, contribution) in routes {
            if touched.contains(&key) || !self.contributes(&key, service) {
                self.routes
                    .entry(key.clone())
                    .or_insert_with(|| TableRoute {
                        contributions: BTreeMap::new(),
                        merged: RouteBuilder::default(),
                        built: Arc::new(pb::Route::default()),
                        encoded: Bytes::new(),
                        version: 0,
                    })
                    .contributions
                    .insert(service.clone(), contribution);
                touched.insert(key);
            }
        }
        let mut changed = false;
        for key in touched {
            changed |= self.rebuild(key);
        }
        self.forget_old_tombstones();
        changed
    }

    /// Makes the Services of `contributions` contribute what it says, and every other Service
    /// nothing; returns whether any route changed.
    pub fn replace_all(
        &mut self,
        mut contributions: HashMap<ServiceKey, BTreeMap<RouteKey, RouteBuilder>>,
    ) -> bool {
        let gone: Vec<ServiceKey> =
            self.by_service.keys().filter(|s| !contributions.contains_key(*s)).cloned().collect();
        let mut changed = false;
        for service in gone {
            changed |= self.set_service(&service, BTreeMap::new());
        }
        for (service, routes) in contributions.drain() {
            changed |= self.set_service(&service, routes);
        }
        changed
    }

    fn contributes(&self, key: &RouteKey, service: &ServiceKey) -> bool {
        self.routes.get(key).is_some_and(|route| route.contributions.contains_key(service))
    }

    /// Merges the contributions at `key` again; returns whether the route changed.
    fn rebuild(&mut self, key: RouteKey) -> bool {
        let Some(route) = self.routes.get_mut(&key) else { return false };
        if route.contributions.is_empty() {
            let removed = self.routes.remove(&key).expect("present");
            if removed.version != 0 {
                self.log.remove(&removed.version);
                self.record(key, false);
            }
            return removed.version != 0;
        }
        let mut merged = RouteBuilder::default();
        for contribution in route.contributions.values() {
            merged.absorb(contribution);
        }
        if route.version != 0 && merged == route.merged {
            return false;
        }
        let built = merged.build(&key);
        route.encoded = built.encode_to_vec().into();
        route.built = Arc::new(built);
        route.merged = merged;
        let previous = route.version;
        self.log.remove(&previous);
        if let Some(removed_at) = self.tombstones.remove(&key) {
            self.log.remove(&removed_at);
        }
        self.record(key, true);
        true
    }

    /// Logs a change of `key` at the next version.
    fn record(&mut self, key: RouteKey, live: bool) {
        self.version += 1;
        let version = self.version;
        let now = if live {
            let route = self.routes.get_mut(&key).expect("live");
            route.version = version;
            Some(SentRoute { route: route.built.clone(), encoded: route.encoded.clone() })
        } else {
            self.tombstones.insert(key.clone(), version);
            None
        };
        self.log.insert(version, Logged { key, now });
    }

    /// Keeps the tombstones bounded: the oldest go, and the horizon moves past them.
    fn forget_old_tombstones(&mut self) {
        let keep = MIN_TOMBSTONES.max(self.routes.len());
        if self.tombstones.len() <= keep {
            return;
        }
        let oldest: Vec<(u64, RouteKey)> = self
            .log
            .iter()
            .filter(|(version, logged)| self.tombstones.get(&logged.key) == Some(*version))
            .take(self.tombstones.len() - keep / 2)
            .map(|(version, logged)| (*version, logged.key.clone()))
            .collect();
        for (version, key) in oldest {
            self.log.remove(&version);
            self.tombstones.remove(&key);
            self.horizon = self.horizon.max(version);
        }
    }
}
