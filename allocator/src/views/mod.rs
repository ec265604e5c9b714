//! The views the assignment streams send, kept up to date by what changed rather than
//! recomputed from every lease. A node's view is its profile's peers and routes (Services
//! announced from every node, computed once per profile, shared by its nodes) merged with its
//! own routes (Services announced from the nodes with a ready endpoint), plus its layer 2 IPs.
//! Both route layers log which routes changed at which version, so a stream's next message is
//! built from the routes changed since what it sent: a change costs the routes it touched on
//! the nodes it touched, not nodes × leases.

mod endpoint_index;
mod route_table;

use std::{
    cmp::Ordering,
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::Arc,
};

use metallb_proto::pb::{self, assignment_update::Update};
use prost::{
    Message,
    bytes::Bytes,
    encoding::{self, WireType},
};

use self::{
    endpoint_index::{EndpointIndex, endpoint_nodes},
    route_table::{Logged, RouteTable, TableRoute},
};
use crate::{
    routes::{Profile, Reach, RouteBuilder, RouteKey, delta, is_empty, profile_peers},
    service_spec::ServiceKey,
    state::{Affected, RouteInputs},
};

/// The shared part of the views of the nodes of one profile.
#[derive(Debug, Default)]
struct ProfileView {
    peers: Arc<Vec<pb::BgpPeer>>,
    /// Routes of Services announced from every node.
    table: RouteTable,
    /// Subscribed nodes of this profile.
    members: BTreeSet<String>,
}

/// A subscribed node's own part of its view.
#[derive(Debug, Default)]
struct NodeEntry {
    profile: Profile,
    /// Changes whenever `local` is replaced or the node moves to another profile: streams
    /// then start again from a snapshot.
    generation: u64,
    /// Routes of Services announced from the nodes with a ready endpoint, this one among them.
    local: RouteTable,
    l2: Arc<Vec<pb::L2Announcement>>,
    /// The node's last move to another profile by a change of its own, so that a stream that
    /// was up to date then gets the difference rather than a snapshot.
    moved: Option<Moved>,
}

/// A node's view just before it moved to another profile, and where streams were then.
#[derive(Debug)]
struct Moved {
    generation: u64,
    profile_version: u64,
    local_version: u64,
    view: pb::NodeAssignments,
}

/// Where a stream is: what it sent last, by version.
#[derive(Clone, Debug)]
pub struct Cursor {
    generation: u64,
    profile_version: u64,
    local_version: u64,
    peers: Arc<Vec<pb::BgpPeer>>,
    l2: Arc<Vec<pb::L2Announcement>>,
}

/// The views of every subscribed node.
#[derive(Debug, Default)]
pub struct NodeViews {
    /// Whether the views were computed from real inputs (a configuration and the first sync).
    ready: bool,
    profiles: HashMap<Profile, ProfileView>,
    nodes: HashMap<String, NodeEntry>,
    /// Which nodes announce each Service with externalTrafficPolicy Local, for every node, so
    /// that a node subscribing finds its Services without a walk of every Service.
    endpoints: EndpointIndex,
    generations: u64,
}

impl NodeViews {
    /// Starts keeping `node`'s view.
    pub fn subscribe(&mut self, node: &str, inputs: Option<RouteInputs<'_>>) {
        if self.nodes.contains_key(node) {
            return;
        }
        let generation = self.next_generation();
        self.nodes.insert(node.to_string(), NodeEntry { generation, ..NodeEntry::default() });
        let Some(inputs) = inputs else { return };
        if !self.ready {
            // The first view of all: computed whole, as if everything had changed.
            self.refresh_all(inputs);
            return;
        }
        let profile = Profile::of(inputs.config, inputs.nodes.get(node));
        self.place(inputs, node, profile);
        let l2 = inputs.l2_announcements(node);
        self.nodes.get_mut(node).expect("inserted").l2 = Arc::new(l2);
    }

    /// Stops keeping `node`'s view.
    pub fn unsubscribe(&mut self, node: &str) {
        if let Some(entry) = self.nodes.remove(node) {
            self.leave(node, &entry.profile);
        }
    }

    /// Brings the views up to date with `inputs` after the changes `affected`; returns the
    /// subscribed nodes whose view changed.
    pub fn apply(
        &mut self,
        inputs: Option<RouteInputs<'_>>,
        affected: &Affected,
    ) -> BTreeSet<String> {
        let Some(inputs) = inputs else { return BTreeSet::new() };
        if affected.everything || !self.ready {
            return self.refresh_all(inputs);
        }
        let mut changed = BTreeSet::new();
        for node in &affected.nodes {
            let Some(entry) = self.nodes.get(node) else { continue };
            let profile = Profile::of(inputs.config, inputs.nodes.get(node));
            if profile != entry.profile {
                let old = entry.profile.clone();
                let moved = self.profiles.get(&old).map(|shared| Moved {
                    generation: entry.generation,
                    profile_version: shared.table.version(),
                    local_version: entry.local.version(),
                    view: snapshot(shared, entry),
                });
                self.leave(node, &old);
                self.place(inputs, node, profile);
                self.nodes.get_mut(node).expect("subscribed").moved = moved;
                changed.insert(node.clone());
            }
            let l2 = inputs.l2_announcements(node);
            let entry = self.nodes.get_mut(node).expect("subscribed");
            if *entry.l2 != l2 {
                entry.l2 = Arc::new(l2);
                changed.insert(node.clone());
            }
        }
        for service in &affected.services {
            for (profile, view) in &mut self.profiles {
                if view.table.set_service(service, everywhere_routes(inputs, profile, service)) {
                    changed.extend(view.members.iter().cloned());
                }
            }
            let now = endpoint_nodes(inputs, service);
            let before = self.endpoints.set(service, &now);
            for node in before.iter().chain(&now) {
                let Some(entry) = self.nodes.get_mut(node) else { continue };
                let routes = if now.contains(node) {
                    local_routes(inputs, &entry.profile, service)
                } else {
                    BTreeMap::new()
                };
                if entry.local.set_service(service, routes) {
                    changed.insert(node.clone());
                }
            }
        }
        changed
    }

    /// The next message for a stream of `node` that sent up to `cursor`: a snapshot when it
    /// sent nothing yet or cannot be brought up to date by a delta, else the delta of what
    /// changed since, or `None` when nothing did (or there is no view yet).
    pub fn next_pending(&self, node: &str, cursor: &mut Option<Cursor>) -> Option<Pending> {
        if !self.ready {
            return None;
        }
        let entry = self.nodes.get(node)?;
        let profile = self.profiles.get(&entry.profile)?;
        let changed = cursor.as_ref().filter(|c| c.generation == entry.generation).and_then(|c| {
            let shared = profile.table.changed_since(c.profile_version)?;
            // A key changed in both layers is sent once, with the profile's changes.
            let own = entry
                .local
                .changed_since(c.local_version)?
                .filter(|logged| !profile.table.changed_after(&logged.key, c.profile_version));
            let changes: Vec<(&Logged, Layer)> = shared
                .map(|logged| (logged, Layer::Profile))
                .chain(own.map(|logged| (logged, Layer::Own)))
                .collect();
            Some((c, changes))
        });
        let resumes_move = |moved: &&Moved| {
            cursor.as_ref().is_some_and(|c| {
                (c.generation, c.profile_version, c.local_version)
                    == (moved.generation, moved.profile_version, moved.local_version)
            })
        };
        let update = match (changed, entry.moved.as_ref().filter(resumes_move)) {
            (None, Some(moved)) => {
                let change = delta(&moved.view, &snapshot(profile, entry));
                (!is_empty(&change)).then_some(Pending::Ready(Update::Delta(change)))
            }
            (None, None) => Some(Pending::Snapshot(shared_snapshot(profile, entry))),
            (Some((sent, changes)), _) => {
                let mut change = pb::AssignmentDelta::default();
                if !Arc::ptr_eq(&sent.peers, &profile.peers) || !Arc::ptr_eq(&sent.l2, &entry.l2) {
                    change = delta(
                        &peers_and_l2(&sent.peers, &sent.l2),
                        &peers_and_l2(&profile.peers, &entry.l2),
                    );
                }
                let mut upserted = Vec::with_capacity(changes.len());
                for (logged, layer) in changes {
                    match route_after(profile, entry, logged, layer) {
                        Some(route) => upserted.push(route),
                        // A removed peer takes its routes with it; withdrawing them too would
                        // be noise.
                        None if profile.peers.iter().any(|peer| peer.name == logged.key.0) => {
                            let (peer, prefix) = logged.key.clone();
                            change.routes_withdrawn.push(pb::RouteKey { peer, prefix })
                        }
                        None => {}
                    }
                }
                (!is_empty(&change) || !upserted.is_empty())
                    .then_some(Pending::Delta { change, upserted })
            }
        };
        *cursor = Some(Cursor {
            generation: entry.generation,
            profile_version: profile.table.version(),
            local_version: entry.local.version(),
            peers: profile.peers.clone(),
            l2: entry.l2.clone(),
        });
        update
    }

    /// `next_pending`, as the stream's client decodes the message it becomes.
    #[cfg(test)]
    pub fn next_update(&self, node: &str, cursor: &mut Option<Cursor>) -> Option<Update> {
        let message = self.next_pending(node, cursor)?.into_message(1, pb::TraceContext::default());
        pb::AssignmentUpdate::decode(message.encode_to_vec().as_slice()).expect("decodes").update
    }

    /// Recomputes every view from `inputs` (a new configuration, the first sync, layer 2
    /// owners), keeping what did not change so that streams get deltas of what did.
    fn refresh_all(&mut self, inputs: RouteInputs<'_>) -> BTreeSet<String> {
        self.endpoints = EndpointIndex::build(inputs);
        let placed: Vec<(String, Profile)> = self
            .nodes
            .keys()
            .map(|node| (node.clone(), Profile::of(inputs.config, inputs.nodes.get(node))))
            .collect();
        let mut changed = BTreeSet::new();
        let mut previous = std::mem::take(&mut self.profiles);
        let mut changed_profiles = BTreeSet::new();
        for profile in placed.iter().map(|(_, profile)| profile).collect::<BTreeSet<_>>() {
            let mut view = previous.remove(profile).unwrap_or_default();
            view.members.clear();
            let peers = profile_peers(inputs.config, profile);
            let mut profile_changed = *view.peers != peers;
            if profile_changed {
                view.peers = Arc::new(peers);
            }
            profile_changed |= view.table.replace_all(every_everywhere_route(inputs, profile));
            if profile_changed {
                changed_profiles.insert(profile.clone());
            }
            self.profiles.insert(profile.clone(), view);
        }
        let was_ready = std::mem::replace(&mut self.ready, true);
        for (node, profile) in placed {
            let generation = self.next_generation();
            let entry = self.nodes.get_mut(&node).expect("subscribed");
            if !was_ready || entry.profile != profile {
                entry.profile = profile.clone();
                entry.generation = generation;
                entry.local = RouteTable::default();
                entry.moved = None;
                changed.insert(node.clone());
            }
            let own = self
                .endpoints
                .services_of(&node)
                .map(|service| (service.clone(), local_routes(inputs, &profile, service)))
                .collect();
            if entry.local.replace_all(own) || changed_profiles.contains(&profile) {
                changed.insert(node.clone());
            }
            let l2 = inputs.l2_announcements(&node);
            if *entry.l2 != l2 {
                entry.l2 = Arc::new(l2);
                changed.insert(node.clone());
            }
            self.profiles.get_mut(&profile).expect("built above").members.insert(node);
        }
        changed
    }

    /// Puts `node` into `profile` (built if it is new), its own routes computed afresh.
    fn place(&mut self, inputs: RouteInputs<'_>, node: &str, profile: Profile) {
        let view = self.profiles.entry(profile.clone()).or_insert_with(|| {
            let mut table = RouteTable::default();
            table.replace_all(every_everywhere_route(inputs, &profile));
            ProfileView {
                peers: Arc::new(profile_peers(inputs.config, &profile)),
                table,
                members: BTreeSet::new(),
            }
        });
        view.members.insert(node.to_string());
        let own = self
            .endpoints
            .services_of(node)
            .map(|service| (service.clone(), local_routes(inputs, &profile, service)))
            .collect();
        let generation = self.next_generation();
        let entry = self.nodes.get_mut(node).expect("subscribed");
        entry.profile = profile;
        entry.generation = generation;
        entry.local = RouteTable::default();
        entry.local.replace_all(own);
        entry.moved = None;
    }

    /// Takes `node` out of `profile`, which goes when nobody is left in it.
    fn leave(&mut self, node: &str, profile: &Profile) {
        if let Some(view) = self.profiles.get_mut(profile) {
            view.members.remove(node);
            if view.members.is_empty() {
                self.profiles.remove(profile);
            }
        }
    }

    fn next_generation(&mut self) -> u64 {
        self.generations += 1;
        self.generations
    }
}

/// The routes a node of `profile` announces for `service` when the Service is announced with
/// `reach` (and the node is among those that announce it); nothing otherwise.
fn routes_with_reach(
    inputs: RouteInputs<'_>,
    profile: &Profile,
    service: &ServiceKey,
    reach: Reach,
) -> BTreeMap<RouteKey, RouteBuilder> {
    match inputs.leased(service) {
        Some((lease, spec)) if Reach::of(spec) == reach => {
            profile.service_routes(inputs.config, lease, spec)
        }
        _ => BTreeMap::new(),
    }
}

/// The routes a node of `profile` announces for `service` when every node announces it.
fn everywhere_routes(
    inputs: RouteInputs<'_>,
    profile: &Profile,
    service: &ServiceKey,
) -> BTreeMap<RouteKey, RouteBuilder> {
    routes_with_reach(inputs, profile, service, Reach::EveryNode)
}

/// The routes a node of `profile` with a ready endpoint of `service` announces for it when
/// only such nodes do.
fn local_routes(
    inputs: RouteInputs<'_>,
    profile: &Profile,
    service: &ServiceKey,
) -> BTreeMap<RouteKey, RouteBuilder> {
    routes_with_reach(inputs, profile, service, Reach::EndpointNodes)
}

/// `everywhere_routes` of every Service announced from every node.
fn every_everywhere_route(
    inputs: RouteInputs<'_>,
    profile: &Profile,
) -> HashMap<ServiceKey, BTreeMap<RouteKey, RouteBuilder>> {
    inputs
        .leases
        .iter()
        .filter(|lease| {
            inputs.services.get(&lease.service).is_some_and(|s| Reach::of(s) == Reach::EveryNode)
        })
        .map(|lease| (lease.service.clone(), everywhere_routes(inputs, profile, &lease.service)))
        .collect()
}

/// The layer of a node's view a change was logged in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layer {
    Profile,
    Own,
}

/// The route of a node at the key of a change `logged` in its `layer`: as the log holds it when
/// the other layer has nothing at that key (one lookup, in the other layer), else both merged.
fn route_after(
    profile: &ProfileView,
    entry: &NodeEntry,
    logged: &Logged,
    layer: Layer,
) -> Option<RouteRef> {
    let other = match layer {
        Layer::Profile => entry.local.get(&logged.key),
        Layer::Own => profile.table.get(&logged.key),
    };
    match (&logged.now, other) {
        (Some(now), None) => {
            Some(RouteRef::Shared { route: now.route.clone(), encoded: now.encoded.clone() })
        }
        (None, None) => None,
        _ => route_at(profile, entry, &logged.key),
    }
}

/// The route at `key` of a node: its profile's and its own, merged.
fn route_at(profile: &ProfileView, entry: &NodeEntry, key: &RouteKey) -> Option<RouteRef> {
    match (profile.table.get(key), entry.local.get(key)) {
        (Some(shared), None) => Some(RouteRef::shared(shared)),
        (None, Some(own)) => Some(RouteRef::shared(own)),
        (Some(shared), Some(own)) => Some(merged(key, shared, own)),
        (None, None) => None,
    }
}

fn merged(key: &RouteKey, shared: &TableRoute, own: &TableRoute) -> RouteRef {
    let mut merged = shared.merged.clone();
    merged.absorb(&own.merged);
    RouteRef::Merged(merged.build(key))
}

/// A node's whole view, its routes still shared with the views.
fn shared_snapshot(profile: &ProfileView, entry: &NodeEntry) -> SharedView {
    let mut routes = Vec::with_capacity(profile.table.len() + entry.local.len());
    let mut shared = profile.table.routes().peekable();
    let mut own = entry.local.routes().peekable();
    loop {
        let next = match (shared.peek(), own.peek()) {
            (Some((a, _)), Some((b, _))) => a.cmp(b),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => break,
        };
        routes.push(match next {
            Ordering::Less => RouteRef::shared(shared.next().expect("peeked").1),
            Ordering::Greater => RouteRef::shared(own.next().expect("peeked").1),
            Ordering::Equal => {
                let (key, a) = shared.next().expect("peeked");
                let (_, b) = own.next().expect("peeked");
                merged(key, a, b)
            }
        });
    }
    SharedView { peers: profile.peers.clone(), routes, l2: entry.l2.clone() }
}

/// A node's whole view, in key order.
fn snapshot(profile: &ProfileView, entry: &NodeEntry) -> pb::NodeAssignments {
    shared_snapshot(profile, entry).into_assignments()
}

/// A route as a message will carry it: shared with the views (with its encoding) until the
/// message is built.
#[derive(Debug)]
pub enum RouteRef {
    /// As one layer holds it.
    Shared { route: Arc<pb::Route>, encoded: Bytes },
    /// Both layers' merged.
    Merged(pb::Route),
}

impl RouteRef {
    fn shared(route: &TableRoute) -> Self {
        Self::Shared { route: route.built.clone(), encoded: route.encoded.clone() }
    }

    fn into_route(self) -> pb::Route {
        match self {
            Self::Shared { route, .. } => Arc::unwrap_or_clone(route),
            Self::Merged(route) => route,
        }
    }

    /// Appends the route as an entry of the repeated field `tag` of the message in `body`.
    fn append_to(&self, tag: u32, body: &mut Vec<u8>) {
        match self {
            Self::Shared { encoded, .. } => {
                encoding::encode_key(tag, WireType::LengthDelimited, body);
                encoding::encode_varint(encoded.len() as u64, body);
                body.extend_from_slice(encoded);
            }
            Self::Merged(route) => encoding::message::encode(tag, route, body),
        }
    }

    fn encoded_len(&self) -> usize {
        match self {
            Self::Shared { encoded, .. } => encoded.len() + 8,
            Self::Merged(route) => route.encoded_len() + 8,
        }
    }
}

/// `head` encoded, then `routes` as entries of its repeated field `tag`: the message `head`
/// would be with those routes, built from each route's encoding made once.
fn encode_with_routes(head: &impl Message, tag: u32, routes: &[RouteRef]) -> Bytes {
    let mut body = Vec::with_capacity(
        head.encoded_len() + routes.iter().map(RouteRef::encoded_len).sum::<usize>(),
    );
    head.encode(&mut body).expect("a Vec grows as needed");
    for route in routes {
        route.append_to(tag, &mut body);
    }
    body.into()
}

/// Tag of `NodeAssignments.routes` and of `AssignmentDelta.routes_upserted` (announce.proto).
const SNAPSHOT_ROUTES: u32 = 2;
const DELTA_ROUTES: u32 = 3;

/// A whole view whose routes are still shared with the views.
#[derive(Debug)]
pub struct SharedView {
    peers: Arc<Vec<pb::BgpPeer>>,
    routes: Vec<RouteRef>,
    l2: Arc<Vec<pb::L2Announcement>>,
}

impl SharedView {
    fn into_assignments(self) -> pb::NodeAssignments {
        pb::NodeAssignments {
            peers: Arc::unwrap_or_clone(self.peers),
            routes: self.routes.into_iter().map(RouteRef::into_route).collect(),
            l2_announcements: Arc::unwrap_or_clone(self.l2),
        }
    }
}

/// A stream's next message, taken under the views' lock with its routes still shared, and
/// made into the message after the lock is released: a route is encoded once, when it
/// changes, and each stream that sends it copies those bytes.
#[derive(Debug)]
pub enum Pending {
    /// Built already.
    Ready(Update),
    /// A snapshot.
    Snapshot(SharedView),
    /// A delta: `change` without its upserted routes, which are `upserted`.
    Delta { change: pb::AssignmentDelta, upserted: Vec<RouteRef> },
}

impl Pending {
    /// Whether it is a snapshot.
    pub fn is_snapshot(&self) -> bool {
        matches!(self, Self::Snapshot(_) | Self::Ready(Update::Snapshot(_)))
    }

    /// The message with `sequence` and `trace`, its content encoded here.
    pub fn into_message(self, sequence: u64, trace: pb::TraceContext) -> pb::AssignmentUpdate {
        let (update, encoded) = match self {
            Self::Ready(update) => (Some(update), None),
            Self::Snapshot(view) => {
                let head = pb::NodeAssignments {
                    peers: (*view.peers).clone(),
                    routes: Vec::new(),
                    l2_announcements: (*view.l2).clone(),
                };
                let body = encode_with_routes(&head, SNAPSHOT_ROUTES, &view.routes);
                (None, Some(pb::EncodedUpdate::snapshot(body)))
            }
            Self::Delta { change, upserted } => {
                let body = encode_with_routes(&change, DELTA_ROUTES, &upserted);
                (None, Some(pb::EncodedUpdate::delta(body)))
            }
        };
        pb::AssignmentUpdate { sequence, trace: Some(trace), update, encoded }
    }
}

/// A view of only peers and layer 2 IPs, to diff those with `delta`.
fn peers_and_l2(peers: &[pb::BgpPeer], l2: &[pb::L2Announcement]) -> pb::NodeAssignments {
    pb::NodeAssignments { peers: peers.to_vec(), routes: Vec::new(), l2_announcements: l2.to_vec() }
}

#[cfg(test)]
mod tests;
