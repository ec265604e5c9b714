//! The announcer's subscription to the allocator: a `WatchAssignments` stream turned into a
//! `watch::Receiver` of the node's assignments, reconnected with jittered backoff whenever it
//! breaks, from the next allocator replica when there are several. What was last received stays
//! in force while disconnected: the node keeps announcing it, and the next snapshot reconciles.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use metallb_process::{AllocatorConnector, Backoff, Readiness, ShutdownSignal, propagation};
use metallb_proto::{
    STANDBY_REFUSAL,
    pb::{self, assignment_update::Update},
};
use prometheus_client::metrics::gauge::Gauge;
use tokio::{sync::watch, task::JoinHandle};
use tracing::{Instrument, Span};

use crate::{assignments::Assignments, fence::Fence};

/// Latest assignments; `None` until the first snapshot arrives.
pub type AssignmentsReceiver = watch::Receiver<Option<Arc<Assignments>>>;

/// Until when the allocator's word lets this node answer ARP/NDP; `None`: not at all (no
/// stream, or no heartbeat on it yet).
pub type AnswerUntilReceiver = watch::Receiver<Option<Instant>>;

/// Both ends of what the subscription tells the rest of the announcer.
struct Outputs {
    assignments: watch::Sender<Option<Arc<Assignments>>>,
    answer_until: watch::Sender<Option<Instant>>,
    /// `metallb_announcer_allocator_stream_connected`: 1 while a stream is open.
    connected: Gauge,
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Starts following the allocator's assignments for `node_name`. Marks `readiness` ready once
/// the first snapshot is applied; `connected` is 1 while a stream is open. The task ends when
/// `shutdown` fires.
pub fn subscribe(
    connector: AllocatorConnector,
    node_name: String,
    readiness: Readiness,
    shutdown: ShutdownSignal,
    connected: Gauge,
) -> (AssignmentsReceiver, AnswerUntilReceiver, JoinHandle<()>) {
    let (assignments, assignments_receiver) = watch::channel(None);
    let (answer_until, answer_until_receiver) = watch::channel(None);
    let outputs = Outputs { assignments, answer_until, connected };
    let task = tokio::spawn(async move {
        tokio::select! {
            () = follow(&connector, &node_name, &outputs, &readiness) => {}
            () = shutdown => {}
        }
    });
    (assignments_receiver, answer_until_receiver, task)
}

/// How soon the next replica is tried after a standby refused the stream.
const STANDBY_RETRY: Duration = Duration::from_millis(100);

fn refused_by_a_standby(err: &anyhow::Error) -> bool {
    err.downcast_ref::<tonic::Status>().is_some_and(|status| {
        status.code() == tonic::Code::Unavailable && status.message() == STANDBY_REFUSAL
    })
}

async fn follow(
    connector: &AllocatorConnector,
    node_name: &str,
    outputs: &Outputs,
    readiness: &Readiness,
) {
    let mut backoff = Backoff::default();
    loop {
        let outcome = stream_once(connector, node_name, outputs, readiness, &mut backoff).await;
        outputs.connected.set(0);
        // Without a stream there is no word from the allocator: layer 2 answers stop now,
        // while routes stay as they were.
        outputs.answer_until.send_replace(None);
        // With several allocator replicas, the next try starts with another one: this one
        // went away, or is not ready (a replica that has not had its first sync).
        connector.move_on();
        // A standby's refusal says where not to look, not that the allocator is in trouble:
        // the next replica is tried soon, without growing the backoff.
        let delay = match &outcome {
            Err(err) if refused_by_a_standby(err) => STANDBY_RETRY,
            _ => backoff.next_delay(),
        };
        match outcome {
            Ok(()) => tracing::info!(
                retry_in_ms = delay.as_millis() as u64,
                "allocator closed the assignment stream"
            ),
            Err(err) => tracing::warn!(
                error = format!("{err:#}"),
                retry_in_ms = delay.as_millis() as u64,
                "assignment stream unavailable; keeping the last assignments"
            ),
        }
        tokio::time::sleep(delay).await;
    }
}

/// Reads one stream to its end. Resets `backoff` once a snapshot shows the stream works.
async fn stream_once(
    connector: &AllocatorConnector,
    node_name: &str,
    outputs: &Outputs,
    readiness: &Readiness,
    backoff: &mut Backoff,
) -> anyhow::Result<()> {
    let mut client = connector.connect(CONNECT_TIMEOUT).await?;
    let request = pb::WatchAssignmentsRequest { node_name: node_name.to_string() };
    let mut stream = client.watch_assignments(request).await?.into_inner();
    outputs.connected.set(1);
    let mut fence = Fence::new(Instant::now());

    let mut current: Option<Assignments> = None;
    let mut last_sequence: Option<u64> = None;
    while let Some(message) = stream.message().await? {
        if let Some(last) = last_sequence
            && message.sequence != last + 1
        {
            anyhow::bail!(
                "sequence jumped from {last} to {}; resubscribing for a fresh snapshot",
                message.sequence
            );
        }
        last_sequence = Some(message.sequence);
        if let Some(Update::Heartbeat(heartbeat)) = &message.update {
            // Only after a snapshot: the word is about what the allocator said on this stream.
            if current.is_some() {
                let until = fence.heartbeat(
                    heartbeat.stream_age_ms,
                    heartbeat.fence_after_ms,
                    Instant::now(),
                );
                outputs.answer_until.send_replace(Some(until));
            }
            continue;
        }

        let span =
            tracing::info_span!("assignment.update", node = node_name, sequence = message.sequence);
        propagation::set_parent_from(&span, message.trace.as_ref());
        let applied = async {
            match message.update {
                Some(Update::Snapshot(snapshot)) => {
                    let mut assignments = Assignments::from_snapshot(snapshot);
                    assignments.set_cause(propagation::trace_context_of(&Span::current()));
                    tracing::info!(
                        peers = assignments.peers().len(),
                        routes = assignments.routes().len(),
                        "snapshot applied"
                    );
                    current = Some(assignments);
                    backoff.reset();
                    readiness.set_ready();
                    Ok(())
                }
                Some(Update::Delta(delta)) => match current.as_mut() {
                    Some(assignments) => {
                        assignments.apply(delta);
                        assignments.set_cause(propagation::trace_context_of(&Span::current()));
                        tracing::info!(
                            peers = assignments.peers().len(),
                            routes = assignments.routes().len(),
                            "delta applied"
                        );
                        Ok(())
                    }
                    None => Err(anyhow::anyhow!("the allocator sent a delta before any snapshot")),
                },
                Some(Update::Heartbeat(_)) => Ok(()),
                None => Err(anyhow::anyhow!("the allocator sent an empty update")),
            }
        }
        .instrument(span)
        .await;
        applied?;
        outputs.assignments.send_replace(current.clone().map(Arc::new));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_standbys_refusal_skips_the_backoff() {
        let standby = anyhow::Error::from(tonic::Status::unavailable(STANDBY_REFUSAL));
        assert!(refused_by_a_standby(&standby));
        let down = anyhow::Error::from(tonic::Status::unavailable("connection refused"));
        assert!(!refused_by_a_standby(&down));
        let other = anyhow::anyhow!("sequence jumped");
        assert!(!refused_by_a_standby(&other));
    }
}
