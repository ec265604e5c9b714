//! Per-node assignment streams. Each subscribed node has a `watch` channel holding what it
//! must announce now (coalescing bursts for free); each stream has its own task turning that
//! into a snapshot and then minimal deltas over a bounded channel. A stream whose client reads
//! too slowly never blocks the allocator or other streams: when its buffer is full it skips
//! ahead and, once there is room, sends a fresh snapshot.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use metallb_proto::pb::{self, assignment_update::Update};
use tokio::sync::{mpsc, watch};
use tonic::Status;

use crate::{
    routes::{delta, is_empty},
    state::AllocatorState,
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
}

type ViewSender = watch::Sender<Option<NodeView>>;

/// The watch channel of every node with at least one open stream.
#[derive(Debug, Default)]
pub struct NodeStreams {
    senders: Mutex<HashMap<String, ViewSender>>,
}

impl NodeStreams {
    /// Recomputes every subscribed node's view after a change caused by `trace`; nodes whose
    /// view did not change are not woken.
    pub fn publish(&self, state: &AllocatorState, trace: &pb::TraceContext) {
        let mut senders = self.senders.lock().expect("node streams lock poisoned");
        senders.retain(|_, sender| sender.receiver_count() > 0);
        for (node, sender) in senders.iter() {
            let view = state.node_view(node);
            sender.send_if_modified(|current| {
                let unchanged = match (current.as_ref(), view.as_ref()) {
                    (Some(current), Some(view)) => *current.assignments == *view,
                    (None, None) => true,
                    _ => false,
                };
                if !unchanged {
                    *current = view
                        .map(|view| NodeView { assignments: Arc::new(view), trace: trace.clone() });
                }
                !unchanged
            });
        }
    }

    /// Opens a stream for `node`: spawns its task and returns the receiving end for tonic.
    pub fn open(
        &self,
        node: &str,
        state: &AllocatorState,
    ) -> mpsc::Receiver<Result<pb::AssignmentUpdate, Status>> {
        let receiver = {
            let mut senders = self.senders.lock().expect("node streams lock poisoned");
            let sender = senders.entry(node.to_string()).or_insert_with(|| {
                let view = state.node_view(node).map(|view| NodeView {
                    assignments: Arc::new(view),
                    trace: pb::TraceContext::default(),
                });
                watch::channel(view).0
            });
            sender.subscribe()
        };
        let (sender, stream) = mpsc::channel(STREAM_BUFFER);
        tokio::spawn(feed(receiver, sender, node.to_string()));
        stream
    }

    /// Number of nodes with open streams.
    pub fn subscribed_nodes(&self) -> usize {
        self.senders.lock().expect("node streams lock poisoned").len()
    }
}

/// Turns a node's views into snapshot-then-deltas until the client leaves.
async fn feed(
    mut views: watch::Receiver<Option<NodeView>>,
    out: mpsc::Sender<Result<pb::AssignmentUpdate, Status>>,
    node: String,
) {
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
                        sent = Some(latest.assignments);
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => return,
                }
            }
        }
        tokio::select! {
            changed = views.changed() => if changed.is_err() { return },
            () = out.closed() => return,
        }
    }
}
