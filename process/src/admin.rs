//! The admin HTTP endpoint each binary serves beside its main work: Prometheus metrics on
//! `/metrics` (with the standard `process_*` metrics added to every registry), liveness on
//! `/healthz`, readiness on `/readyz`.

use std::{
    net::SocketAddr,
    sync::{Arc, RwLock},
};

use axum::{
    Router,
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
    routing::get,
};
use prometheus_client::{encoding::text::encode, registry::Registry};
use tokio::net::TcpListener;

/// Whether the process can do its job, and if not, why. Cheap to clone; all clones share state.
#[derive(Clone, Debug)]
pub struct Readiness {
    not_ready_reason: Arc<RwLock<Option<String>>>,
}

impl Readiness {
    /// Starts not ready, for `reason`.
    pub fn new(reason: impl Into<String>) -> Self {
        Self { not_ready_reason: Arc::new(RwLock::new(Some(reason.into()))) }
    }

    /// Marks the process ready.
    pub fn set_ready(&self) {
        *self.not_ready_reason.write().expect("readiness lock poisoned") = None;
    }

    /// Marks the process not ready, for `reason` (shown by /readyz).
    pub fn set_not_ready(&self, reason: impl Into<String>) {
        *self.not_ready_reason.write().expect("readiness lock poisoned") = Some(reason.into());
    }

    /// `Ok` when ready, otherwise the reason.
    pub fn state(&self) -> Result<(), String> {
        match &*self.not_ready_reason.read().expect("readiness lock poisoned") {
            None => Ok(()),
            Some(reason) => Err(reason.clone()),
        }
    }
}

/// The admin endpoint of one process.
pub struct AdminServer {
    listener: TcpListener,
    state: AdminState,
}

#[derive(Clone)]
struct AdminState {
    registry: Arc<Registry>,
    readiness: Readiness,
}

impl AdminServer {
    /// Binds `addr` now, so that a port in use is reported at start-up rather than later.
    /// Adds the `process_*` metrics to `registry`.
    pub async fn bind(
        addr: SocketAddr,
        mut registry: Registry,
        readiness: Readiness,
    ) -> anyhow::Result<Self> {
        registry.register_collector(Box::new(crate::process_metrics::ProcessCollector));
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|err| anyhow::anyhow!("cannot listen on admin address {addr}: {err}"))?;
        Ok(Self { listener, state: AdminState { registry: Arc::new(registry), readiness } })
    }

    /// The metrics it serves, for a second endpoint serving them too.
    pub fn registry(&self) -> Arc<Registry> {
        self.state.registry.clone()
    }

    /// The address actually bound (useful when the port was 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let app = Router::new()
            .route("/metrics", get(metrics))
            .route("/healthz", get(healthz))
            .route("/readyz", get(readyz))
            .with_state(self.state);
        axum::serve(self.listener, app).with_graceful_shutdown(shutdown).await
    }
}

async fn metrics(State(state): State<AdminState>) -> impl IntoResponse {
    encode_metrics(&state.registry)
}

/// The registry in the OpenMetrics text format, as a response.
pub fn encode_metrics(registry: &Registry) -> impl IntoResponse + use<> {
    let mut body = String::new();
    match encode(&mut body, registry) {
        Ok(()) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
            body,
        ),
        Err(err) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("encoding metrics failed: {err}\n"),
        ),
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<AdminState>) -> impl IntoResponse {
    match state.readiness.state() {
        Ok(()) => (StatusCode::OK, "ready\n".to_string()),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {reason}\n")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        response
    }

    #[tokio::test]
    async fn serves_metrics_health_and_readiness_that_follows_state() {
        let mut registry = Registry::default();
        let counter = Counter::<u64>::default();
        registry.register("test_events", "Events seen by the test", counter.clone());
        counter.inc();
        let readiness = Readiness::new("waiting for the first sync");
        let server = AdminServer::bind("127.0.0.1:0".parse().unwrap(), registry, readiness.clone())
            .await
            .unwrap();
        let addr = server.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(async move { stopped.await.unwrap_or(()) }));

        let metrics = get(addr, "/metrics").await;
        assert!(metrics.contains("test_events_total 1"), "{metrics}");
        assert!(metrics.contains("process_cpu_seconds_total "), "{metrics}");
        assert!(metrics.contains("process_open_fds "), "{metrics}");
        assert!(get(addr, "/healthz").await.starts_with("HTTP/1.1 200"));
        let not_ready = get(addr, "/readyz").await;
        assert!(not_ready.starts_with("HTTP/1.1 503"), "{not_ready}");
        assert!(not_ready.contains("waiting for the first sync"), "{not_ready}");
        readiness.set_ready();
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 200"));

        stop.send(()).unwrap();
        task.await.unwrap().unwrap();
    }
}
