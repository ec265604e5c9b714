//! Per-node assignment streams. The views (`crate::views`) keep what every subscribed node
//! must announce and which routes changed at which version; a publication updates them and
//! wakes the streams of the nodes whose view changed. Each stream has its own task, which
//! sends a snapshot and then the delta of what changed since its last message over a bounded
//! channel. A stream whose client reads too slowly never blocks the allocator or other
//! streams: its task waits for room, and the changes made meanwhile go out as one delta.

use std::{
    collections::HashMap,
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
    state::{Affected, AllocatorState},
    views::{Cursor, NodeViews, Pending},
};

/// Messages buffered per stream before it counts as lagging.
pub const STREAM_BUFFER: usize = 16;

/// A views update taking this long is logged.
const SLOW_PUBLICATION: std::time::Duration = std::time::Duration::from_millis(50);

/// What a node's streams are woken with: the trace of the latest change to its view, and
/// when the first change of its publication was made.
#[derive(Clone, Debug, Default)]
struct Wake {
    trace: pb::TraceContext,
    /// `None` until a change was published (the first snapshot answers no change).
    changed_at: Option<Instant>,
}

/// The wake-up channel of every node with at least one open stream, and their views.
#[derive(Debug, Default)]
struct Subscriptions {
    senders: HashMap<String, watch::Sender<Wake>>,
    views: NodeViews,
}

impl Subscriptions {
    /// Drops the nodes nobody listens to any more.
    fn drop_unheard(&mut self) {
        let unheard: Vec<String> = self
            .senders
            .iter()
            .filter(|(_, sender)| sender.receiver_count() == 0)
            .map(|(node, _)| node.clone())
            .collect();
        for node in unheard {
            self.senders.remove(&node);
            self.views.unsubscribe(&node);
        }
    }
}

/// The streams of every node, and their views.
#[derive(Debug, Default)]
pub struct NodeStreams {
    subscriptions: Arc<Mutex<Subscriptions>>,
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

    /// Brings the views up to date after the changes `affected` describes (caused by `trace`,
    /// the first made at `changed_at`) and wakes the streams of the nodes whose view changed;
    /// the others are not woken. The cost follows the change: a Service announced from a few
    /// nodes costs those nodes, one announced from every node costs its routes once per
    /// profile and a small delta per node.
    pub fn publish_since(
        &self,
        state: &AllocatorState,
        trace: &pb::TraceContext,
        changed_at: Instant,
        affected: &Affected,
    ) {
        let mut subscriptions = self.lock();
        subscriptions.drop_unheard();
        let started = Instant::now();
        let changed = subscriptions.views.apply(state.route_inputs(), affected);
        let took = started.elapsed();
        // Readers wait on the state lock meanwhile: worth knowing when it is long.
        if took >= SLOW_PUBLICATION {
            tracing::info!(
                took_ms = took.as_millis() as u64,
                everything = affected.everything,
                nodes = changed.len(),
                "views updated"
            );
        }
        for node in changed {
            if let Some(sender) = subscriptions.senders.get(&node) {
                sender.send_modify(|wake| {
                    wake.trace = trace.clone();
                    wake.changed_at = Some(changed_at);
                });
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Subscriptions> {
        lock(&self.subscriptions)
    }

    /// Opens a stream for `node`: spawns its task and returns the receiving end for tonic.
    pub fn open(
        &self,
        node: &str,
        state: &AllocatorState,
    ) -> mpsc::Receiver<Result<pb::AssignmentUpdate, Status>> {
        let wakes = {
            let mut subscriptions = self.lock();
            if !subscriptions.senders.contains_key(node) {
                subscriptions.senders.insert(node.to_string(), watch::channel(Wake::default()).0);
                subscriptions.views.subscribe(node, state.route_inputs());
            }
            subscriptions.senders[node].subscribe()
        };
        let (sender, stream) = mpsc::channel(STREAM_BUFFER);
        let fencing = *self.fencing.lock().expect("node streams lock poisoned");
        let heartbeat = Heartbeats { fencing, role: self.role.clone() };
        // Counted from now, not from when the task first runs.
        let counted = (self.metrics.opened(), self.metrics.clone());
        let source =
            ViewSource { subscriptions: self.subscriptions.clone(), node: node.to_string() };
        tokio::spawn(feed(source, wakes, sender, heartbeat, counted));
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

fn lock(subscriptions: &Mutex<Subscriptions>) -> std::sync::MutexGuard<'_, Subscriptions> {
    subscriptions.lock().expect("node streams lock poisoned")
}

/// The pace of a stream's heartbeats, and what may withhold them.
struct Heartbeats {
    fencing: L2Fencing,
    role: Arc<RoleLease>,
}

/// Where a stream's task reads its node's view.
struct ViewSource {
    subscriptions: Arc<Mutex<Subscriptions>>,
    node: String,
}

impl ViewSource {
    /// The next message after `cursor`, and what woke the stream for it, taken together under
    /// the lock that publications hold while they change views and wake streams: a change is
    /// either in this message or wakes the stream again.
    fn next(
        &self,
        cursor: &mut Option<Cursor>,
        wakes: &mut watch::Receiver<Wake>,
    ) -> Option<(Pending, Wake)> {
        let subscriptions = lock(&self.subscriptions);
        let pending = subscriptions.views.next_pending(&self.node, cursor)?;
        Some((pending, wakes.borrow_and_update().clone()))
    }
}

/// Turns a node's views into snapshot-then-deltas until the client leaves, with a heartbeat
/// at the fencing pace once the snapshot is out (right after it, then regularly), while this
/// replica decides layer 2 owners.
async fn feed(
    source: ViewSource,
    mut wakes: watch::Receiver<Wake>,
    out: mpsc::Sender<Result<pb::AssignmentUpdate, Status>>,
    Heartbeats { fencing, role }: Heartbeats,
    (_open, metrics): (OpenStream, StreamMetrics),
) {
    let opened = Instant::now();
    let mut heartbeats = tokio::time::interval(fencing.heartbeat_every());
    heartbeats.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut cursor: Option<Cursor> = None;
    let mut snapshot_sent = false;
    let mut sequence = 0u64;
    loop {
        if out.capacity() == 0 {
            tracing::warn!(
                node = source.node,
                "assignment stream is lagging; what changes meanwhile follows as one delta"
            );
        }
        // Waiting for room lets the changes made meanwhile gather into one message.
        let Ok(permit) = out.reserve().await else { return };
        if let Some((pending, wake)) = source.next(&mut cursor, &mut wakes) {
            snapshot_sent |= pending.is_snapshot();
            sequence += 1;
            permit.send(Ok(pending.into_message(sequence, wake.trace.clone())));
            if let Some(changed_at) = wake.changed_at {
                metrics.sent(changed_at.elapsed());
            }
        }
        loop {
            tokio::select! {
                changed = wakes.changed() => if changed.is_err() { return } else { break },
                () = out.closed() => return,
                _ = heartbeats.tick(), if snapshot_sent => {
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
                        encoded: None,
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
    use std::{
        collections::BTreeSet,
        time::{Duration, SystemTime},
    };

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

    /// `message` as the announcer receives it: content the allocator encoded itself decoded.
    pub(crate) fn decoded(message: pb::AssignmentUpdate) -> pb::AssignmentUpdate {
        use prost::Message;
        pb::AssignmentUpdate::decode(message.encode_to_vec().as_slice()).expect("decodes")
    }

    /// Folds a stream's messages into the routes the announcer would hold.
    pub(crate) fn fold(messages: &[pb::AssignmentUpdate]) -> pb::NodeAssignments {
        let mut held = pb::NodeAssignments::default();
        for message in messages {
            fold_update(&mut held, decoded(message.clone()).update.unwrap());
        }
        pb::NodeAssignments { peers: Vec::new(), l2_announcements: Vec::new(), ..normalized(held) }
    }

    /// Applies one message to what an announcer holds, as the announcer does.
    pub(crate) fn fold_update(held: &mut pb::NodeAssignments, update: Update) {
        match update {
            Update::Snapshot(snapshot) => *held = snapshot,
            Update::Delta(delta) => {
                let removed: BTreeSet<String> = delta.peers_removed.into_iter().collect();
                let upserted: BTreeSet<String> =
                    delta.peers_upserted.iter().map(|peer| peer.name.clone()).collect();
                held.peers
                    .retain(|peer| !removed.contains(&peer.name) && !upserted.contains(&peer.name));
                held.peers.extend(delta.peers_upserted);
                let pair = |key: pb::RouteKey| (key.peer, key.prefix);
                let withdrawn: BTreeSet<(String, String)> =
                    delta.routes_withdrawn.into_iter().map(pair).collect();
                let replaced: BTreeSet<(String, String)> = delta
                    .routes_upserted
                    .iter()
                    .filter_map(|route| route.key.clone().map(pair))
                    .collect();
                held.routes.retain(|route| {
                    let key = pair(route.key.clone().unwrap_or_default());
                    // A removed peer takes its routes with it.
                    !withdrawn.contains(&key)
                        && !replaced.contains(&key)
                        && !removed.contains(&key.0)
                });
                held.routes.extend(delta.routes_upserted);
                let l2_gone: BTreeSet<String> = delta.l2_withdrawn.into_iter().collect();
                let l2_new: BTreeSet<String> =
                    delta.l2_upserted.iter().map(|a| a.ip.clone()).collect();
                held.l2_announcements
                    .retain(|a| !l2_gone.contains(&a.ip) && !l2_new.contains(&a.ip));
                held.l2_announcements.extend(delta.l2_upserted);
            }
            Update::Heartbeat(_) => {}
        }
    }

    /// `view` with its peers, routes and layer 2 IPs each in one order, to compare views.
    pub(crate) fn normalized(mut view: pb::NodeAssignments) -> pb::NodeAssignments {
        view.peers.sort_by(|a, b| a.name.cmp(&b.name));
        view.routes.sort_by_key(|route| {
            let key = route.key.clone().unwrap_or_default();
            (key.peer, key.prefix)
        });
        view.l2_announcements.sort_by(|a, b| a.ip.cmp(&b.ip));
        view
    }

    type Stream = mpsc::Receiver<Result<pb::AssignmentUpdate, Status>>;

    /// The next message that is not a heartbeat, within 5 s.
    async fn next_change(stream: &mut Stream) -> pb::AssignmentUpdate {
        loop {
            let message = decoded(
                tokio::time::timeout(Duration::from_secs(5), stream.recv())
                    .await
                    .expect("a message within 5 s")
                    .expect("the stream is open")
                    .unwrap(),
            );
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
        let first = decoded(stream.recv().await.unwrap().unwrap());
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
    async fn a_slow_stream_never_holds_up_another_and_catches_up_with_one_delta() {
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
            let message = decoded(message.unwrap());
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
            slow_messages.iter().skip(1).all(|m| !matches!(m.update, Some(Update::Snapshot(_)))),
            "the lagging stream caught up with deltas, not snapshots"
        );
        assert_eq!(fold(&slow_messages), fold(&fast_messages), "both end with the same routes");
    }
}

#[cfg(test)]
mod scoped_publication_tests;
