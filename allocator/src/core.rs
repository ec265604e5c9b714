//! The allocator's single owner of state: every change goes through `change`, which refreshes
//! the metrics and has the new per-node views published to the streams, so nothing can change
//! without announcers and dashboards hearing of it.
//!
//! Publishing recomputes every subscribed node's view, which costs time in proportion to the
//! leases. It runs in its own task at most once per `PUBLISH_INTERVAL`: the first change after
//! a quiet spell is published at once, and a burst of changes (a thousand Services created at
//! once) is published in a few batches instead of once per change. A view carries the trace of
//! the last change it includes.

use std::{
    sync::{Arc, RwLock, Weak},
    time::{Duration, Instant},
};

use metallb_process::Readiness;
use metallb_proto::{ALLOCATOR_SERVICE_NAME, pb};
use tokio::sync::Notify;
use tonic_health::{ServingStatus, server::HealthReporter};

use crate::{
    l2::L2Fencing,
    metrics::Metrics,
    replica_role::{ReplicaRole, Transition},
    state::{Affected, AllocatorState},
    streams::NodeStreams,
};

/// Shortest time between two publications of the nodes' views.
const PUBLISH_INTERVAL: Duration = Duration::from_millis(20);

/// State, streams, metrics and readiness.
pub struct Core {
    guarded: RwLock<Guarded>,
    streams: NodeStreams,
    /// Wakes the publishing task.
    publish: Arc<Notify>,
    metrics: Metrics,
    readiness: Readiness,
    health: HealthReporter,
}

/// What the lock guards: the state, the trace of the latest change not yet published and
/// when the first of those changes was made, and how many changes were made.
struct Guarded {
    state: AllocatorState,
    unpublished: Option<(pb::TraceContext, Instant)>,
    changes: u64,
}

impl Core {
    /// A core with empty state, not ready until the first full sync. Starts the task that
    /// publishes views; it ends when the core is dropped.
    pub async fn new(metrics: Metrics, readiness: Readiness, health: HealthReporter) -> Arc<Self> {
        readiness.set_not_ready("waiting for the watcher's first full sync of services");
        health.set_service_status(ALLOCATOR_SERVICE_NAME, ServingStatus::NotServing).await;
        let state = AllocatorState::default();
        metrics.update(&state);
        let core = Arc::new(Self {
            guarded: RwLock::new(Guarded { state, unpublished: None, changes: 0 }),
            streams: NodeStreams::new(metrics.streams()),
            publish: Arc::new(Notify::new()),
            metrics,
            readiness,
            health,
        });
        tokio::spawn(publish_views(Arc::downgrade(&core), core.publish.clone()));
        core
    }

    /// Runs `change` on the state, refreshes metrics, and has the views published with the
    /// cause `trace`.
    pub fn change<R>(
        &self,
        trace: &pb::TraceContext,
        change: impl FnOnce(&mut AllocatorState) -> R,
    ) -> R {
        let result = {
            let mut guarded = self.guarded.write().expect("allocator state lock poisoned");
            let result = change(&mut guarded.state);
            guarded.changes += 1;
            let since = guarded.unpublished.take().map_or_else(Instant::now, |(_, since)| since);
            guarded.unpublished = Some((trace.clone(), since));
            self.metrics.update(&guarded.state);
            result
        };
        self.publish.notify_one();
        result
    }

    /// Sets the layer 2 fencing interval; ownership starts afresh from now (nobody owns
    /// anything until a previous instance's word has run out).
    pub fn configure_l2(&self, fencing: L2Fencing) {
        self.streams.set_fencing(fencing);
        self.change(&pb::TraceContext::default(), |state| {
            state.configure_l2(fencing, Instant::now())
        });
    }

    /// The watcher stated this replica's `role`: a standby ends every announcer stream (each
    /// announcer falls silent on layer 2 at once and looks for the primary); a standby made
    /// primary decides layer 2 owners afresh, after the start-up wait.
    pub fn note_role(&self, role: ReplicaRole) {
        match self.streams.role().state(role, Instant::now()) {
            Transition::None => {}
            Transition::Demoted => {
                tracing::warn!(role = role.as_str(), "told to stand by: ending announcer streams");
                self.streams.close();
            }
            Transition::Promoted => {
                tracing::info!(
                    role = role.as_str(),
                    "told to decide: layer 2 ownership starts afresh"
                );
                self.change(&pb::TraceContext::default(), |state| state.restart_l2(Instant::now()));
            }
        }
    }

    /// Reads the state.
    pub fn read<R>(&self, read: impl FnOnce(&AllocatorState) -> R) -> R {
        read(&self.guarded.read().expect("allocator state lock poisoned").state)
    }

    /// The metrics, refreshed by every change.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The streams.
    pub fn streams(&self) -> &NodeStreams {
        &self.streams
    }

    /// Decides layer 2 owners, and publishes the views if that or a change is not published
    /// yet. Returns when layer 2 ownership must be looked at again (a node's grace running
    /// out) if nothing else happens before.
    fn publish_pending(&self) -> Option<Instant> {
        let now = Instant::now();
        let (publication, deadline) = {
            let mut guarded = self.guarded.write().expect("allocator state lock poisoned");
            let owners_changed = guarded.state.refresh_l2(now);
            let mut affected = guarded.state.take_affected();
            if owners_changed {
                affected.merge(Affected::everything());
            }
            let unpublished = guarded.unpublished.take();
            let owners_changed = owners_changed.then(|| (pb::TraceContext::default(), now));
            let publication = unpublished
                .or(owners_changed)
                .map(|(trace, since)| (trace, since, affected, guarded.changes));
            (publication, guarded.state.l2_deadline(now))
        };
        if let Some((trace, since, mut affected, changes)) = publication {
            // Under the read lock: reads go on while the views are brought up to date (a new
            // configuration takes every view). The views are computed from the state as it is
            // now: what changed since the changes were taken is covered too (and is published
            // again next time, which changes nothing), so no view mixes two states.
            let guarded = self.guarded.read().expect("allocator state lock poisoned");
            if guarded.changes != changes {
                affected.merge(guarded.state.affected_since_taken());
            }
            self.streams.publish_since(&guarded.state, &trace, since, &affected);
        }
        deadline
    }

    /// Marks the allocator ready (after the first full sync) for /readyz and grpc.health.
    pub async fn mark_synced(&self) {
        if self.readiness.state().is_err() {
            self.readiness.set_ready();
            self.health.set_service_status(ALLOCATOR_SERVICE_NAME, ServingStatus::Serving).await;
            tracing::info!("first full sync done; the allocator is ready");
        }
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        // Lets the publishing task see that the core is gone.
        self.publish.notify_one();
    }
}

/// Publishes views when woken, then rests for `PUBLISH_INTERVAL` so that the changes of a
/// burst gather into the next publication.
async fn publish_views(core: Weak<Core>, wake: Arc<Notify>) {
    let mut deadline: Option<Instant> = None;
    loop {
        match deadline {
            Some(at) => tokio::select! {
                () = wake.notified() => {}
                () = tokio::time::sleep_until(at.into()) => {}
            },
            None => wake.notified().await,
        }
        let Some(core) = core.upgrade() else { return };
        deadline = core.publish_pending();
        drop(core);
        tokio::time::sleep(PUBLISH_INTERVAL).await;
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::registry::Registry;
    use tokio::time::timeout;

    use super::*;
    use crate::streams::tests::{add_service, fold, state_with_node, trace};

    #[tokio::test]
    async fn a_burst_of_changes_reaches_the_streams_whole_with_the_last_cause() {
        let (health, _) = tonic_health::server::health_reporter();
        let registry = &mut Registry::default();
        let core = Core::new(Metrics::register(registry), Readiness::new("test"), health).await;
        core.change(&trace(0), |state| *state = state_with_node());
        let mut stream = core.read(|state| core.streams().open("n1", state));
        let mut messages = vec![stream.recv().await.unwrap().unwrap()];

        const BURST: usize = 200;
        for n in 0..BURST {
            core.change(&trace(n), |state| add_service(state, n));
            if n % 50 == 0 {
                // Let the publishing task run mid-burst too.
                tokio::task::yield_now().await;
            }
        }
        while fold(&messages).routes.len() < BURST {
            let message = timeout(Duration::from_secs(5), stream.recv()).await;
            messages.push(message.expect("the burst is published").unwrap().unwrap());
        }
        assert_eq!(messages.last().unwrap().trace, Some(trace(BURST - 1)));
        assert!(messages.len() < BURST / 10, "{} messages for {BURST} changes", messages.len());
    }
}
