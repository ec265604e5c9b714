//! The allocator's single owner of state: every change goes through `change`, which also
//! publishes the new per-node views to the streams and refreshes the metrics, so nothing can
//! change without announcers and dashboards hearing of it.

use std::sync::Mutex;

use metallb_process::Readiness;
use metallb_proto::{ALLOCATOR_SERVICE_NAME, pb};
use tonic_health::{ServingStatus, server::HealthReporter};

use crate::{metrics::Metrics, state::AllocatorState, streams::NodeStreams};

/// State, streams, metrics and readiness.
pub struct Core {
    state: Mutex<AllocatorState>,
    streams: NodeStreams,
    metrics: Metrics,
    readiness: Readiness,
    health: HealthReporter,
}

impl Core {
    /// A core with empty state, not ready until the first full sync.
    pub async fn new(metrics: Metrics, readiness: Readiness, health: HealthReporter) -> Self {
        readiness.set_not_ready("waiting for the watcher's first full sync of services");
        health.set_service_status(ALLOCATOR_SERVICE_NAME, ServingStatus::NotServing).await;
        let state = AllocatorState::default();
        metrics.update(&state);
        Self {
            state: Mutex::new(state),
            streams: NodeStreams::default(),
            metrics,
            readiness,
            health,
        }
    }

    /// Runs `change` on the state, then publishes views caused by `trace` and refreshes metrics.
    pub fn change<R>(
        &self,
        trace: &pb::TraceContext,
        change: impl FnOnce(&mut AllocatorState) -> R,
    ) -> R {
        let mut state = self.state.lock().expect("allocator state lock poisoned");
        let result = change(&mut state);
        self.streams.publish(&state, trace);
        self.metrics.update(&state);
        result
    }

    /// Reads the state.
    pub fn read<R>(&self, read: impl FnOnce(&AllocatorState) -> R) -> R {
        read(&self.state.lock().expect("allocator state lock poisoned"))
    }

    /// The streams.
    pub fn streams(&self) -> &NodeStreams {
        &self.streams
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
