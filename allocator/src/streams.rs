//! Per-node assignment streams. Each subscribed node has a `watch` channel holding what it
//! must announce now (coalescing bursts for free); each stream has its own task turning that
//! into a snapshot and then minimal deltas over a bounded channel. A stream whose client reads
//! too slowly never blocks the allocator or other streams: when its buffer is full it skips
//! ahead and, once there is room, sends a fresh snapshot.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{Arc, Mutex},
    time::Instant,
};

use metallb_proto::pb::{self, assignment_update::Update};
use tokio::sync::{mpsc, watch};
use tonic::Status;

use crate::{
    l2::L2Fencing,
    metrics::{OpenStream, StreamMetrics},
    replica_role::RoleLease,
    routes::{delta, is_empty},
    service_spec::ServiceKey,
    state::{Affected, AllocatorState},
};

/// Messages buffered per stream before it counts as lagging.
pub const STREAM_BUFFER: usize = 16;

/// What a node must announce, and the trace of the change that made it so.
#[derive(Clone, Debug)]
pub struct NodeView {
    /// Peers and routes.
    pub assignments: Arc<pb::NodeAssignments>,
    /// Trace context of the change.
    pub trace: pb::TraceContext,
    /// When the change was made (the first of a burst published together); `None` for the
    /// view a stream starts with, which no change caused.
    pub changed_at: Option<Instant>,
}

type ViewSender = watch::Sender<Option<NodeView>>;

/// The watch channel of every node with at least one open stream, and which of them announce
/// each service.
#[derive(Debug, Default)]
struct Subscriptions {
    senders: HashMap<String, ViewSender>,
    /// For each service, the subscribed nodes whose current view routes it: the nodes a change
    /// of that service must look at again, besides those that will route it.
    routing: HashMap<ServiceKey, BTreeSet<String>>,
}

impl Subscriptions {
    /// Sets `node`'s view, keeping `routing` in step; `false` when it was unchanged.
    fn set_view(&mut self, node: &str, view: Option<NodeView>) -> bool {
        let Some(sender) = self.senders.get(node) else { return false };
        let mut before = BTreeSet::new();
        let changed = sender.send_if_modified(|current| {
            let unchanged = match (current.as_ref(), view.as_ref()) {
                (Some(current), Some(view)) => current.assignments == view.assignments,
                (None, None) => true,
                _ => false,
            };
            if !unchanged {
                before = routed_services(current.as_ref());
                *current = view.clone();
            }
            !unchanged
        });
        if changed {
            let after = routed_services(view.as_ref());
            for gone in before.difference(&after) {
                if let Some(nodes) = self.routing.get_mut(gone) {
                    nodes.remove(node);
                    if nodes.is_empty() {
                        self.routing.remove(gone);
                    }
                }
            }
            for new in after.difference(&before) {
                self.routing.entry(new.clone()).or_default().insert(node.to_string());
            }
        }
        changed
    }

    /// Drops the channels nobody listens to any more, and their nodes from `routing`.
    fn drop_unheard(&mut self) {
        let unheard: Vec<String> = self
            .senders
            .iter()
            .filter(|(_, sender)| sender.receiver_count() == 0)
            .map(|(node, _)| node.clone())
            .collect();
        for node in unheard {
            if let Some(sender) = self.senders.remove(&node) {
                for service in routed_services(sender.borrow().as_ref()) {
                    if let Some(nodes) = self.routing.get_mut(&service) {
                        nodes.remove(&node);
                        if nodes.is_empty() {
                            self.routing.remove(&service);
                        }
                    }
                }
            }
        }
    }

    /// The subscribed nodes whose view `affected` may have changed, given `state` after the
    /// changes: every node for a global change or a service routed from every node; else the
    /// nodes changed themselves, and for each changed service those that routed it and those
    /// that may route it now.
    fn nodes_to_refresh(&self, state: &AllocatorState, affected: &Affected) -> Vec<String> {
        if affected.everything {
            return self.senders.keys().cloned().collect();
        }
        let subscribed = |node: &String| self.senders.contains_key(node);
        let mut nodes: BTreeSet<String> =
            affected.nodes.iter().filter(|n| subscribed(n)).cloned().collect();
        for service in &affected.services {
            let Some(reach) = state.service_reach(service) else {
                return self.senders.keys().cloned().collect();
            };
            nodes.extend(reach.into_iter().filter(|node| subscribed(node)));
            if let Some(routing) = self.routing.get(service) {
                nodes.extend(routing.iter().cloned());
            }
        }
        nodes.into_iter().collect()
    }
}

/// The services the routes of `view` carry.
fn routed_services(view: Option<&NodeView>) -> BTreeSet<ServiceKey> {
    view.into_iter()
        .flat_map(|view| view.assignments.routes.iter())
        .flat_map(|route| route.services.iter())
        .filter_map(|key| ServiceKey::from_pb(Some(key)).ok())
        .collect()
}

/// The watch channel of every node with at least one open stream.
#[derive(Debug, Default)]
pub struct NodeStreams {
    subscriptions: Mutex<Subscriptions>,
    fencing: Mutex<L2Fencing>,
    /// Whether this replica decides layer 2 owners: heartbeats only while it does.
    role: Arc<RoleLease>,
    metrics: StreamMetrics,
}

impl NodeStreams {
    /// No streams yet; their count and lag go to `metrics`.
    pub fn new(metrics: StreamMetrics) -> Self {
        Self { metrics, ..Self::default() }
    }

    /// This replica's role, which gates heartbeats.
    pub fn role(&self) -> &Arc<RoleLease> {
        &self.role
    }

    /// Sets the heartbeat pace and fencing interval of streams opened from now on.
    pub fn set_fencing(&self, fencing: L2Fencing) {
        *self.fencing.lock().expect("node streams lock poisoned") = fencing;
    }

    /// `publish_since` for a change made now, of unknown extent.
    #[cfg(test)]
    pub fn publish(&self, state: &AllocatorState, trace: &pb::TraceContext) {
        self.publish_since(state, trace, Instant::now(), &Affected::everything());
    }

    /// Recomputes the view of every subscribed node that the changes `affected` describes
    /// (caused by `trace`, the first made at `changed_at`) can have altered; nodes whose view
    /// did not change are not woken. The cost follows the change: a Service announced from a
    /// few nodes costs those nodes, not the cluster.
    pub fn publish_since(
        &self,
        state: &AllocatorState,
        trace: &pb::TraceContext,
        changed_at: Instant,
        affected: &Affected,
    ) {
        let mut subscriptions = self.lock();
        subscriptions.drop_unheard();
        for node in subscriptions.nodes_to_refresh(state, affected) {
            let view = state.node_view(&node).map(|view| NodeView {
                assignments: Arc::new(view),
                trace: trace.clone(),
                changed_at: Some(changed_at),
            });
            subscriptions.set_view(&node, view);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Subscriptions> {
        self.subscriptions.lock().expect("node streams lock poisoned")
    }

    /// Opens a stream for `node`: spawns its task and returns the receiving end for tonic.
    pub fn open(
        &self,
        node: &str,
        state: &AllocatorState,
    ) -> mpsc::Receiver<Result<pb::AssignmentUpdate, Status>> {
        let receiver = {
            let mut subscriptions = self.lock();
            if !subscriptions.senders.contains_key(node) {
                subscriptions.senders.insert(node.to_string(), watch::channel(None).0);
                let view = state.node_view(node).map(|view| NodeView {
                    assignments: Arc::new(view),
                    trace: pb::TraceContext::default(),
                    changed_at: None,
                });
                subscriptions.set_view(node, view);
            }
            subscriptions.senders[node].subscribe()
        };
        let (sender, stream) = mpsc::channel(STREAM_BUFFER);
        let fencing = *self.fencing.lock().expect("node streams lock poisoned");
        let heartbeat = Heartbeats { fencing, role: self.role.clone() };
        // Counted from now, not from when the task first runs.
        let counted = (self.metrics.opened(), self.metrics.clone());
        tokio::spawn(feed(receiver, sender, node.to_string(), heartbeat, counted));
        stream
    }

    /// Ends every open stream (the allocator is stopping): each client sees its stream end and
    /// reconnects elsewhere or later. Open streams would otherwise hold the server's graceful
    /// shutdown until its grace period ran out.
    pub fn close(&self) {
        *self.lock() = Subscriptions::default();
    }

    /// Number of nodes with open streams.
    pub fn subscribed_nodes(&self) -> usize {
        self.lock().senders.len()
    }
}

/// The pace of a stream's heartbeats, and what may withhold them.
struct Heartbeats {
    fencing: L2Fencing,
    role: Arc<RoleLease>,
}

/// Turns a node's views into snapshot-then-deltas until the client leaves, with a heartbeat
/// at the fencing pace once the snapshot is out (right after it, then regularly), while this
/// replica decides layer 2 owners.
async fn feed(
    mut views: watch::Receiver<Option<NodeView>>,
    out: mpsc::Sender<Result<pb::AssignmentUpdate, Status>>,
    node: String,
    Heartbeats { fencing, role }: Heartbeats,
    (_open, metrics): (OpenStream, StreamMetrics),
) {
    let sent_since = |changed_at: Option<Instant>| {
        if let Some(changed_at) = changed_at {
            metrics.sent(changed_at.elapsed());
        }
    };
    let opened = Instant::now();
    let mut heartbeats = tokio::time::interval(fencing.heartbeat_every());
    heartbeats.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sent: Option<Arc<pb::NodeAssignments>> = None;
    let mut sequence = 0u64;
    loop {
        let view = views.borrow_and_update().clone();
        if let Some(view) = view {
            let update = match &sent {
                Some(previous) => {
                    let change = delta(previous, &view.assignments);
                    (!is_empty(&change)).then_some(Update::Delta(change))
                }
                None => Some(Update::Snapshot((*view.assignments).clone())),
            };
            if let Some(update) = update {
                let message = pb::AssignmentUpdate {
                    sequence: sequence + 1,
                    trace: Some(view.trace.clone()),
                    update: Some(update),
                };
                match out.try_send(Ok(message)) {
                    Ok(()) => {
                        sequence += 1;
                        sent_since(view.changed_at);
                        sent = Some(view.assignments.clone());
                    }
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        tracing::warn!(
                            node,
                            "assignment stream is lagging; a fresh snapshot follows once it drains"
                        );
                        let Ok(permit) = out.reserve().await else { return };
                        let latest = views.borrow_and_update().clone().unwrap_or(view);
                        sequence += 1;
                        permit.send(Ok(pb::AssignmentUpdate {
                            sequence,
                            trace: Some(latest.trace.clone()),
                            update: Some(Update::Snapshot((*latest.assignments).clone())),
                        }));
                        sent_since(latest.changed_at);
                        sent = Some(latest.assignments);
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => return,
                }
            }
        }
        loop {
            tokio::select! {
                changed = views.changed() => if changed.is_err() { return } else { break },
                () = out.closed() => return,
                _ = heartbeats.tick(), if sent.is_some() => {
                    // A replica that no longer decides says nothing: its nodes fence themselves.
                    if !role.decides(Instant::now()) {
                        continue;
                    }
                    let heartbeat = pb::Heartbeat {
                        stream_age_ms: opened.elapsed().as_millis() as u64,
                        fence_after_ms: fencing.fence_after().as_millis() as u32,
                    };
                    let message = pb::AssignmentUpdate {
                        sequence: sequence + 1,
                        trace: None,
                        update: Some(Update::Heartbeat(heartbeat)),
                    };
                    // A full buffer means the client is not reading: no heartbeat reaches it
                    // and it fences itself, which is what must happen.
                    if out.try_send(Ok(message)).is_ok() {
                        sequence += 1;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::{nodes::NodeInfo, service_spec::ServiceSpec};

    pub(crate) fn state_with_node() -> AllocatorState {
        let mut state = AllocatorState::default();
        let config = pb::Config {
            pools: vec![pb::AddressPool {
                name: "p".into(),
                addresses: vec!["192.0.2.0/24".into()],
                auto_assign: true,
                ..Default::default()
            }],
            peers: vec![pb::BgpPeer {
                name: "r".into(),
                my_asn: 64512,
                peer_asn: 64512,
                peer_address: "198.51.100.1".into(),
                ..Default::default()
            }],
            advertisements: vec![pb::BgpAdvertisement { name: "all".into(), ..Default::default() }],
            ..Default::default()
        };
        assert!(state.apply_config(&config, "test", SystemTime::now()).accepted);
        state.update_node(NodeInfo {
            name: "n1".into(),
            labels: Default::default(),
            excluded: false,
            ready: true,
        });
        state.sync(vec![], SystemTime::now());
        state
    }

    pub(crate) fn add_service(state: &mut AllocatorState, n: usize) {
        let service = pb::Service {
            key: Some(pb::ServiceKey { namespace: "default".into(), name: format!("s{n}") }),
            has_ready_endpoints: true,
            ..Default::default()
        };
        state.upsert(ServiceSpec::from_pb(&service).unwrap(), SystemTime::now()).result.unwrap();
    }

    pub(crate) fn trace(n: usize) -> pb::TraceContext {
        pb::TraceContext {
            traceparent: format!("00-{n:032x}-{:016x}-01", 1),
            tracestate: String::new(),
        }
    }

    /// Folds a stream's messages into what the announcer would hold.
    pub(crate) fn fold(messages: &[pb::AssignmentUpdate]) -> pb::NodeAssignments {
        let mut routes: std::collections::BTreeMap<String, pb::Route> = Default::default();
        for message in messages {
            match message.update.clone().unwrap() {
                Update::Snapshot(snapshot) => {
                    routes = snapshot
                        .routes
                        .into_iter()
                        .map(|r| (r.key.clone().unwrap().prefix, r))
                        .collect();
                }
                Update::Delta(delta) => {
                    for withdrawn in delta.routes_withdrawn {
                        routes.remove(&withdrawn.prefix);
                    }
                    for route in delta.routes_upserted {
                        routes.insert(route.key.clone().unwrap().prefix, route);
                    }
                }
                Update::Heartbeat(_) => {}
            }
        }
        pb::NodeAssignments {
            peers: Vec::new(),
            routes: routes.into_values().collect(),
            ..Default::default()
        }
    }

    type Stream = mpsc::Receiver<Result<pb::AssignmentUpdate, Status>>;

    /// The next message that is not a heartbeat, within 5 s.
    async fn next_change(stream: &mut Stream) -> pb::AssignmentUpdate {
        loop {
            let message = tokio::time::timeout(Duration::from_secs(5), stream.recv())
                .await
                .expect("a message within 5 s")
                .expect("the stream is open")
                .unwrap();
            if !matches!(message.update, Some(Update::Heartbeat(_))) {
                return message;
            }
        }
    }

    /// Whether anything but heartbeats comes within `quiet`.
    async fn changes_within(stream: &mut Stream, quiet: Duration) -> bool {
        tokio::time::timeout(quiet, next_change(stream)).await.is_ok()
    }

    #[tokio::test]
    async fn a_snapshot_then_deltas_each_with_the_trace_of_its_cause() {
        let mut state = state_with_node();
        let streams = NodeStreams::default();
        let mut stream = streams.open("n1", &state);
        let first = next_change(&mut stream).await;
        assert!(matches!(first.update, Some(Update::Snapshot(_))));
        assert_eq!(first.sequence, 1);

        add_service(&mut state, 0);
        streams.publish(&state, &trace(7));
        let second = next_change(&mut stream).await;
        assert!(second.sequence > first.sequence);
        assert_eq!(second.trace.unwrap(), trace(7));
        let Some(Update::Delta(delta)) = second.update else { panic!("expected a delta") };
        assert_eq!(delta.routes_upserted.len(), 1);
        assert!(delta.peers_upserted.is_empty(), "an unchanged peer is not resent");

        // A change that does not affect the node sends nothing.
        streams.publish(&state, &trace(8));
        assert!(!changes_within(&mut stream, Duration::from_millis(200)).await);
    }

    #[tokio::test]
    async fn heartbeats_follow_the_snapshot_at_the_fencing_pace() {
        let state = state_with_node();
        let streams = NodeStreams::default();
        let fencing = L2Fencing::new(Duration::from_millis(400));
        streams.set_fencing(fencing);
        let mut stream = streams.open("n1", &state);
        let first = stream.recv().await.unwrap().unwrap();
        assert!(matches!(first.update, Some(Update::Snapshot(_))), "the snapshot comes first");
        let mut ages = Vec::new();
        while ages.len() < 4 {
            let message = tokio::time::timeout(Duration::from_secs(5), stream.recv())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            let Some(Update::Heartbeat(heartbeat)) = message.update else { continue };
            assert_eq!(heartbeat.fence_after_ms, 400);
            ages.push(heartbeat.stream_age_ms);
        }
        assert!(ages[0] < 50, "the first right after the snapshot: {ages:?}");
        for pair in ages.windows(2) {
            let gap = pair[1] - pair[0];
            assert!((80..=200).contains(&gap), "every 100 ms: {ages:?}");
        }
    }

    #[tokio::test]
    async fn closing_ends_every_open_stream() {
        let state = state_with_node();
        let streams = NodeStreams::default();
        let mut stream = streams.open("n1", &state);
        assert!(matches!(stream.recv().await, Some(Ok(_))), "the snapshot comes first");
        streams.close();
        let end = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match stream.recv().await {
                    Some(Ok(pb::AssignmentUpdate {
                        update: Some(Update::Heartbeat(_)), ..
                    })) => {}
                    other => return other,
                }
            }
        })
        .await;
        assert!(matches!(end, Ok(None)), "the stream ended: {end:?}");
    }

    #[tokio::test]
    async fn a_slow_stream_never_holds_up_another_and_catches_up_with_a_snapshot() {
        let mut state = state_with_node();
        let streams = NodeStreams::default();
        let mut slow = streams.open("n1", &state);
        let mut fast = streams.open("n1", &state);
        let mut fast_messages = vec![next_change(&mut fast).await];
        for n in 0..(STREAM_BUFFER * 4) {
            add_service(&mut state, n);
            streams.publish(&state, &trace(n));
            // The fast reader keeps up, message by message, while the slow one reads nothing.
            fast_messages.push(next_change(&mut fast).await);
        }
        assert_eq!(fold(&fast_messages).routes.len(), STREAM_BUFFER * 4);

        // Everything the slow reader finds, until 300 ms bring nothing but heartbeats.
        let mut slow_messages = Vec::new();
        let mut quiet_since = tokio::time::Instant::now();
        while quiet_since.elapsed() < Duration::from_millis(300) && slow_messages.len() < 1000 {
            let Ok(Some(message)) =
                tokio::time::timeout(Duration::from_millis(300), slow.recv()).await
            else {
                break;
            };
            let message = message.unwrap();
            if !matches!(message.update, Some(Update::Heartbeat(_))) {
                quiet_since = tokio::time::Instant::now();
            }
            slow_messages.push(message);
        }
        let sequences: Vec<u64> = slow_messages.iter().map(|m| m.sequence).collect();
        assert_eq!(sequences, (1..=sequences.len() as u64).collect::<Vec<_>>(), "no gaps");
        let changes = slow_messages
            .iter()
            .filter(|m| !matches!(m.update, Some(Update::Heartbeat(_))))
            .count();
        assert!(changes <= STREAM_BUFFER + 2, "the slow stream was not bounded: {changes}");
        assert!(
            slow_messages.iter().skip(1).any(|m| matches!(m.update, Some(Update::Snapshot(_)))),
            "the lagging stream got a fresh snapshot"
        );
        assert_eq!(fold(&slow_messages), fold(&fast_messages), "both end with the same routes");
    }
}

#[cfg(test)]
mod scoped_publication_tests;
