//! The allocator's state and every change to it. One owner: the API holds it behind a single
//! lock taken for short, synchronous sections; nothing here awaits.

mod affected;
mod config_change;
mod views;

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    time::{Instant, SystemTime},
};

use metallb_proto::pb;

pub use self::{
    affected::Affected,
    views::{family_size_and_use, lease_to_pb, outcome_to_pb},
};
use crate::{
    address::Address,
    allocate::{Failure, assign_while_waiting},
    config::Config,
    l2::{L2Fencing, L2Owners, Owner, eligible},
    leases::{Lease, Leases},
    nodes::NodeInfo,
    routes::node_assignments,
    service_spec::{InvalidService, ServiceKey, ServiceSpec},
};

/// What became of a service: its lease or why it has none.
pub type Outcome = Result<Lease, Failure>;

/// The result of a change to one service, and what it caused elsewhere.
#[derive(Debug)]
pub struct ChangeResult<T> {
    /// The change's own result.
    pub result: T,
    /// A waiting configuration the change let through.
    pub deferred: Option<pb::DeferredConfig>,
    /// Other services whose outcome changed (they got an IP the change freed).
    pub others_changed: Vec<pb::ServiceOutcome>,
}

/// What a full sync did.
#[derive(Debug)]
pub struct SyncResult {
    /// One entry per service given, in order; `None` for an entry without a readable key.
    pub outcomes: Vec<Option<(ServiceKey, Outcome)>>,
    /// Leases of services that were absent.
    pub released: Vec<Lease>,
    /// A waiting configuration the sync let through.
    pub deferred: Option<pb::DeferredConfig>,
}

/// A configuration waiting because it would take IPs from services.
#[derive(Clone, Debug)]
struct PendingConfig {
    config: Config,
    source: String,
}

/// What the nodes' views are computed from.
#[derive(Clone, Copy)]
pub struct RouteInputs<'a> {
    /// The configuration in force.
    pub config: &'a Config,
    /// Every lease.
    pub leases: &'a Leases,
    /// Every Service's specification.
    pub services: &'a BTreeMap<ServiceKey, ServiceSpec>,
    /// Every node the watcher reported.
    pub nodes: &'a BTreeMap<String, NodeInfo>,
    /// Layer 2 owners.
    l2: &'a L2Owners,
}

impl RouteInputs<'_> {
    /// The lease and specification of `key`, when it holds a lease.
    pub fn leased(&self, key: &ServiceKey) -> Option<(&Lease, &ServiceSpec)> {
        self.leases.get(key).zip(self.services.get(key))
    }

    /// The layer 2 IPs `node` answers for.
    pub fn l2_announcements(&self, node: &str) -> Vec<pb::L2Announcement> {
        if self.nodes.contains_key(node) { self.l2.announcements_of(node) } else { Vec::new() }
    }
}

/// Configuration, leases, services, nodes and sessions.
#[derive(Debug, Default)]
pub struct AllocatorState {
    config: Option<Config>,
    pending: Option<PendingConfig>,
    last_config_rejected: bool,
    leases: Leases,
    services: BTreeMap<ServiceKey, ServiceSpec>,
    failures: BTreeMap<ServiceKey, Failure>,
    nodes: BTreeMap<String, NodeInfo>,
    /// Nodes an announcer opened an assignment stream for since this allocator started.
    streamed_nodes: BTreeSet<String>,
    sessions: BTreeMap<(String, String), pb::SessionState>,
    synced: bool,
    l2: L2Owners,
    /// What changed since the last publication (lease changes are kept by `leases`).
    affected: Affected,
}

impl AllocatorState {
    /// Whether the first full sync is done (before it, nothing new is allocated from a
    /// partial picture and no snapshot is streamed).
    pub fn is_synced(&self) -> bool {
        self.synced
    }

    /// The configuration in force.
    pub fn config(&self) -> Option<&Config> {
        self.config.as_ref()
    }

    /// The leases.
    pub fn leases(&self) -> &Leases {
        &self.leases
    }

    /// Whether the configuration in force is not the last one offered (it was rejected or is
    /// waiting): MetalLB's "config stale".
    pub fn config_is_stale(&self) -> bool {
        self.last_config_rejected || self.pending.is_some()
    }

    /// Gives `spec` its lease (or records why not), then lets a waiting configuration
    /// through if this change unblocked it, and retries services waiting for an IP.
    pub fn upsert(&mut self, spec: ServiceSpec, now: SystemTime) -> ChangeResult<Outcome> {
        let key = spec.key.clone();
        let released = self.leases.get(&key).map(|lease| lease.ips.clone()).unwrap_or_default();
        let outcome = self.evaluate(spec, now);
        let still_held = outcome.as_ref().map(|lease| lease.ips.clone()).unwrap_or_default();
        let freed_any = released.iter().any(|ip| !still_held.contains(ip));
        self.after_change(outcome, freed_any, Some(&key), now)
    }

    /// Records that a service's request is inconsistent: it loses any lease.
    pub fn reject(&mut self, invalid: &InvalidService) -> Option<Outcome> {
        let key = invalid.key.clone()?;
        self.leases.remove(&key);
        self.services.remove(&key);
        self.affected.services.insert(key.clone());
        let failure =
            Failure { reason: pb::FailureReason::InvalidRequest, message: invalid.message.clone() };
        self.failures.insert(key, failure.clone());
        Some(Err(failure))
    }

    /// Forgets a service; returns the IPs it released.
    pub fn delete(&mut self, key: &ServiceKey, now: SystemTime) -> ChangeResult<Vec<IpAddr>> {
        self.services.remove(key);
        self.affected.services.insert(key.clone());
        self.failures.remove(key);
        let released = self.leases.remove(key).map(|lease| lease.ips).unwrap_or_default();
        let freed_any = !released.is_empty();
        self.after_change(released, freed_any, Some(key), now)
    }

    /// What follows any change to a service: a waiting configuration may now apply, and when
    /// IPs were freed, services that failed for lack of one are tried again.
    fn after_change<T>(
        &mut self,
        result: T,
        freed_any: bool,
        changed: Option<&ServiceKey>,
        now: SystemTime,
    ) -> ChangeResult<T> {
        let deferred = self.retry_pending(now);
        let others_changed = if freed_any && deferred.is_none() {
            self.retry_failed(changed, now)
        } else {
            Vec::new()
        };
        ChangeResult { result, deferred, others_changed }
    }

    /// Re-evaluates services that hold no IP (except `skip`); returns those that now have one.
    fn retry_failed(
        &mut self,
        skip: Option<&ServiceKey>,
        now: SystemTime,
    ) -> Vec<pb::ServiceOutcome> {
        let waiting: Vec<ServiceSpec> = self
            .failures
            .keys()
            .filter(|key| Some(*key) != skip)
            .filter_map(|key| self.services.get(key).cloned())
            .collect();
        let mut changed = Vec::new();
        for spec in waiting {
            let key = spec.key.clone();
            let outcome = self.evaluate(spec, now);
            if outcome.is_ok() {
                changed.push(outcome_to_pb(&key, &outcome));
            }
        }
        changed
    }

    /// Level-based sync: `specs` are all the services there are. Leases of absent services are
    /// released first, then services whose status or lease names IPs are handled (adoption),
    /// then the rest. Marks the state synced.
    pub fn sync(
        &mut self,
        specs: Vec<Result<ServiceSpec, InvalidService>>,
        now: SystemTime,
    ) -> SyncResult {
        let present: BTreeSet<ServiceKey> = specs
            .iter()
            .filter_map(|spec| match spec {
                Ok(spec) => Some(spec.key.clone()),
                Err(invalid) => invalid.key.clone(),
            })
            .collect();
        let absent: Vec<ServiceKey> = self
            .leases
            .iter()
            .map(|lease| lease.service.clone())
            .chain(self.services.keys().cloned())
            .chain(self.failures.keys().cloned())
            .filter(|key| !present.contains(key))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut released: Vec<Lease> = Vec::new();
        for key in absent {
            self.services.remove(&key);
            self.affected.services.insert(key.clone());
            self.failures.remove(&key);
            released.extend(self.leases.remove(&key));
        }

        let mut outcomes: Vec<Option<(ServiceKey, Outcome)>> = vec![None; specs.len()];
        let (mut holding, others): (Vec<_>, Vec<_>) =
            specs.into_iter().enumerate().partition(|(_, spec)| {
                spec.as_ref().is_ok_and(|spec| {
                    !spec.current_ips.is_empty() || self.leases.get(&spec.key).is_some()
                })
            });
        // Oldest first, so that of two Services showing one IP the older keeps it: the rule
        // does not depend on the order of the request, and the Service that had the IP first
        // (the one users and DNS have known longest) is the one that stays.
        holding.sort_by(|(_, a), (_, b)| seniority(a).cmp(&seniority(b)));
        // Adoption first: a Service keeps the IPs in its status when nobody has them yet and
        // they are still valid. A Service that would get other IPs (its own are taken by a
        // Service before it, or no longer valid) waits, with the new Services, until every
        // adoption is done: so a new IP is never one that a Service not yet evaluated shows in
        // its status, and a conflict moves the one Service that lost, not a chain of them.
        let mut moving = Vec::new();
        for (index, spec) in holding {
            let Ok(service) = &spec else {
                outcomes[index] = self.evaluate_listed(spec, now);
                continue;
            };
            let key = service.key.clone();
            let status: BTreeSet<IpAddr> = service.current_ips.iter().copied().collect();
            let taken = status.iter().any(|ip| {
                self.leases.holders(Address::from_ip(*ip)).any(|lease| lease.service != key)
            });
            if taken {
                moving.push((index, spec));
                continue;
            }
            let retry = service.clone();
            let outcome = self.evaluate_listed(spec, now);
            let moved = matches!(&outcome, Some((_, Ok(lease)))
                if !status.is_empty() && lease.ips.iter().copied().collect::<BTreeSet<_>>() != status);
            if moved {
                self.leases.remove(&key);
                moving.push((index, Ok(retry)));
            } else {
                outcomes[index] = outcome;
            }
        }
        for (index, spec) in moving.into_iter().chain(others) {
            outcomes[index] = self.evaluate_listed(spec, now);
        }
        self.synced = true;
        // The first sync turns every view from "keep what you have" into a real one.
        self.affected.everything = true;
        let deferred = self.retry_pending(now);
        // A service listed before the one whose IP it may share or take was evaluated too
        // early; one more pass settles it, and its outcome in the answer follows.
        if deferred.is_none() && !self.retry_failed(None, now).is_empty() {
            for (key, outcome) in outcomes.iter_mut().flatten() {
                if let Some(lease) = self.leases.get(key) {
                    *outcome = Ok(lease.clone());
                }
            }
        }
        SyncResult { outcomes, released, deferred }
    }

    /// Records a node.
    pub fn update_node(&mut self, node: NodeInfo) {
        self.affected.nodes.insert(node.name.clone());
        self.nodes.insert(node.name.clone(), node);
    }

    /// Forgets a node.
    pub fn delete_node(&mut self, name: &str) {
        self.affected.nodes.insert(name.to_string());
        self.nodes.remove(name);
    }

    /// Replaces a node's session report.
    pub fn report_sessions(&mut self, node: &str, sessions: Vec<pb::SessionState>) {
        self.sessions.retain(|(reporter, _), _| reporter != node);
        for mut session in sessions {
            session.node_name = node.to_string();
            self.sessions.insert((node.to_string(), session.peer.clone()), session);
        }
    }

    /// What `node` must announce, or `None` before the first sync or any configuration (an
    /// announcer then keeps what it has rather than withdrawing everything).
    pub fn node_view(&self, node: &str) -> Option<pb::NodeAssignments> {
        if !self.synced {
            return None;
        }
        let config = self.config.as_ref()?;
        let Some(node) = self.nodes.get(node) else {
            // A node the watcher has not reported yet announces nothing.
            return Some(pb::NodeAssignments::default());
        };
        let mut view = node_assignments(config, &self.leases, &self.services, node);
        view.l2_announcements = self.l2.announcements_of(&node.name);
        Some(view)
    }

    /// What changed since the last call, and forgets it. With layer 2 in the configuration
    /// any change may move an owner, so it counts as everything (owners move rarely, and
    /// layer 2 clusters are small next to BGP ones).
    pub fn take_affected(&mut self) -> Affected {
        let affected = self.affected_since_taken();
        self.affected = Affected::default();
        self.leases.take_changed();
        affected
    }

    /// What changed since the last `take_affected`, left in place.
    pub fn affected_since_taken(&self) -> Affected {
        let mut affected = self.affected.clone();
        affected.merge(Affected { services: self.leases.changed().clone(), ..Affected::default() });
        let layer2 =
            self.config.as_ref().is_some_and(|config| !config.l2_advertisements.is_empty());
        if layer2 && !affected.is_empty() {
            affected = Affected::everything();
        }
        affected
    }

    /// What the nodes' views are computed from, or `None` before the first sync or any
    /// configuration (announcers then keep what they have).
    pub fn route_inputs(&self) -> Option<RouteInputs<'_>> {
        let config = self.config.as_ref().filter(|_| self.synced)?;
        Some(RouteInputs {
            config,
            leases: &self.leases,
            services: &self.services,
            nodes: &self.nodes,
            l2: &self.l2,
        })
    }

    /// Starts layer 2 ownership afresh with `fencing`, as of `now`.
    pub fn configure_l2(&mut self, fencing: L2Fencing, now: Instant) {
        self.affected.everything = true;
        self.l2 = L2Owners::new(fencing, now);
    }

    /// Starts layer 2 ownership afresh as of `now`, with the same fencing: nobody owns anything
    /// until announcers told by another replica have certainly fallen silent.
    pub fn restart_l2(&mut self, now: Instant) {
        self.affected.everything = true;
        self.l2 = self.l2.restarted(now);
    }

    /// An assignment stream of `node` opened: the node is alive.
    pub fn stream_opened(&mut self, node: &str) {
        if !self.streamed_nodes.contains(node) {
            self.streamed_nodes.insert(node.to_string());
        }
        self.l2.stream_opened(node);
    }

    /// Whether the allocator has heard of `node`: the watcher reported it (and has not deleted
    /// it since), or an announcer opened an assignment stream for it since this allocator
    /// started. `GetNodeAssignments` answers NOT_FOUND for any other, so that a misspelt name
    /// does not read as "this node announces nothing".
    pub fn knows_node(&self, node: &str) -> bool {
        self.nodes.contains_key(node) || self.streamed_nodes.contains(node)
    }

    /// An assignment stream of `node` closed at `now`.
    pub fn stream_closed(&mut self, node: &str, now: Instant) {
        self.l2.stream_closed(node, now);
    }

    /// Decides the layer 2 owners as of `now`; returns whether any changed.
    pub fn refresh_l2(&mut self, now: Instant) -> bool {
        let candidates = match (&self.config, self.synced) {
            (Some(config), true) => eligible(config, &self.leases, &self.services, &self.nodes),
            _ => BTreeMap::new(),
        };
        self.l2.refresh(&candidates, now)
    }

    /// When layer 2 ownership must be looked at again with nothing else changing.
    pub fn l2_deadline(&self, now: Instant) -> Option<Instant> {
        self.l2.next_deadline(now)
    }

    /// The owner of every layer 2 IP.
    pub fn l2_owners(&self) -> &BTreeMap<IpAddr, Owner> {
        self.l2.owners()
    }

    /// Evaluates one Service of a full sync, valid or not.
    fn evaluate_listed(
        &mut self,
        spec: Result<ServiceSpec, InvalidService>,
        now: SystemTime,
    ) -> Option<(ServiceKey, Outcome)> {
        match spec {
            Ok(spec) => {
                let key = spec.key.clone();
                Some((key, self.evaluate(spec, now)))
            }
            Err(invalid) => {
                let outcome = self.reject(&invalid);
                invalid.key.zip(outcome)
            }
        }
    }

    fn evaluate(&mut self, spec: ServiceSpec, now: SystemTime) -> Outcome {
        let key = spec.key.clone();
        let waiting = self.pending.as_ref().map(|pending| &pending.config);
        let outcome = assign_while_waiting(self.config.as_ref(), waiting, &self.leases, &spec, now);
        match &outcome {
            Ok(lease) => {
                self.leases.insert(lease.clone());
                self.failures.remove(&key);
            }
            Err(failure) => {
                // A service whose request cannot be met holds nothing, as in MetalLB: keeping
                // an IP it no longer asks for would be worse.
                self.leases.remove(&key);
                self.failures.insert(key.clone(), failure.clone());
            }
        }
        self.affected.services.insert(key.clone());
        self.services.insert(key, spec);
        outcome
    }
}

#[cfg(test)]
mod l2_tests;
#[cfg(test)]
mod tests;

/// The order of adoption in a full sync: older Services first, unknown ages last, then by key.
fn seniority(
    spec: &Result<ServiceSpec, InvalidService>,
) -> (bool, Option<SystemTime>, Option<&ServiceKey>) {
    match spec {
        Ok(spec) => (spec.created_at.is_none(), spec.created_at, Some(&spec.key)),
        Err(invalid) => (true, None, invalid.key.as_ref()),
    }
}
