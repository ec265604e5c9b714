//! A real Jaeger (the v2, OpenTelemetry-collector-based `cmd/jaeger` binary) for the tracing
//! checks: OTLP/gRPC in, the query HTTP API (`/api/services`, `/api/traces`) out, spans kept in
//! memory. Every port it opens is on loopback and chosen here, so tests can run in parallel; the
//! process and its directory go away when the handle drops. `start_in` runs it inside a lab
//! namespace instead, where daemons of other namespaces reach it too.

use std::{
    collections::HashMap,
    fmt::Write as _,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::Path,
    process::Command,
    sync::Mutex,
    time::{Duration, Instant},
};

use serde::Deserialize;

use crate::{
    child::ChildProcess, lab::in_namespace, ports::free_loopback_addr, tools::cached_tool,
};

/// How long Jaeger may take to answer on both its ports (it usually needs well under a second).
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// What the collector logs once all components have started.
const READY_LOG_LINE: &str = "Everything is ready";

/// How often a port collision (another test took a port between our probe and Jaeger's bind)
/// is retried with fresh ports before giving up.
const START_ATTEMPTS: usize = 3;

/// Bound on every single query request, so a wedged Jaeger fails the test instead of hanging it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How often `wait_for_trace` asks again.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// Jaeger's usual ports, used inside a namespace of the test's own, where nothing else binds.
const OTLP_GRPC_PORT: u16 = 4317;
const QUERY_HTTP_PORT: u16 = 16686;
const QUERY_GRPC_PORT: u16 = 16685;

/// Where Jaeger runs.
enum Placement<'a> {
    /// In the test's namespace, on free loopback ports.
    Loopback,
    /// In network namespace `namespace` on every address, reached at `reachable_at`.
    Namespace { namespace: &'a str, reachable_at: IpAddr },
}

/// A running Jaeger with in-memory storage.
pub struct Jaeger {
    // Declared before `dir` so that the process is killed before its config and log go away.
    process: Mutex<ChildProcess>,
    dir: tempfile::TempDir,
    otlp_grpc_addr: SocketAddr,
    query: JaegerQuery,
}

/// Jaeger's query HTTP API at some address: the one a [`Jaeger`] handle runs, or any other
/// Jaeger the test reaches (e.g. the one `deploy/components/jaeger` installs, through
/// `kubectl port-forward`).
pub struct JaegerQuery {
    base_url: String,
    http: reqwest::Client,
}

impl Jaeger {
    /// Starts Jaeger and waits (at most 30 s) until the query API answers and the OTLP receiver
    /// accepts connections; fails with Jaeger's log otherwise.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_at(Placement::Loopback).await
    }

    /// Starts Jaeger inside network namespace `namespace`, listening on every address there on
    /// its usual ports (OTLP/gRPC 4317, query HTTP 16686), and waits as `start` does. The test
    /// process queries it at `reachable_at`, an address of the namespace it can route to; the
    /// endpoints this handle gives out use that address.
    pub async fn start_in(namespace: &str, reachable_at: IpAddr) -> anyhow::Result<Self> {
        Self::start_at(Placement::Namespace { namespace, reachable_at }).await
    }

    async fn start_at(placement: Placement<'_>) -> anyhow::Result<Self> {
        let mut attempt = 1;
        loop {
            match Self::start_once(&placement).await {
                Ok(jaeger) => return Ok(jaeger),
                // Ports are probed free and then released, so a parallel test can grab one
                // before Jaeger binds it; new ports make that race go away.
                Err(err)
                    if attempt < START_ATTEMPTS
                        && err.to_string().contains("address already in use") =>
                {
                    attempt += 1;
                }
                Err(err) => return Err(err),
            }
        }
    }

    async fn start_once(placement: &Placement<'_>) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("metallb-jaeger-").tempdir()?;
        // (OTLP/gRPC, query HTTP, query gRPC) as bound; then the first two as reached.
        let (binds, mut command, reached_at) = match placement {
            Placement::Loopback => (
                [free_loopback_addr(), free_loopback_addr(), free_loopback_addr()],
                Command::new(cached_tool("jaeger")),
                None,
            ),
            Placement::Namespace { namespace, reachable_at } => (
                [OTLP_GRPC_PORT, QUERY_HTTP_PORT, QUERY_GRPC_PORT]
                    .map(|port| SocketAddr::from((Ipv4Addr::UNSPECIFIED, port))),
                in_namespace(namespace, &cached_tool("jaeger")),
                Some(*reachable_at),
            ),
        };
        let [otlp_grpc_addr, query_http_addr, query_grpc_addr] = binds;
        let config_path = dir.path().join("jaeger.yaml");
        std::fs::write(
            &config_path,
            config_yaml(otlp_grpc_addr, query_http_addr, query_grpc_addr),
        )?;
        let reached = |addr: SocketAddr| match reached_at {
            Some(ip) => SocketAddr::new(ip, addr.port()),
            None => addr,
        };
        let (otlp_grpc_addr, query_http_addr) = (reached(otlp_grpc_addr), reached(query_http_addr));

        command.arg("--config").arg(format!("file:{}", config_path.display()));
        // A developer's OTEL_* settings must not make Jaeger export its own telemetry somewhere.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("OTEL_") {
                command.env_remove(key);
            }
        }
        let process = ChildProcess::spawn("jaeger", command, dir.path())?;
        let query = JaegerQuery::new(&format!("http://{query_http_addr}"))?;
        let jaeger = Self { process: Mutex::new(process), dir, otlp_grpc_addr, query };
        jaeger.wait_ready().await?;
        Ok(jaeger)
    }

    async fn wait_ready(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        let mut last = String::from("no answer yet");
        while Instant::now() < deadline {
            self.ensure_running()?;
            // The query extension starts before the receivers, so an answering query API alone
            // does not mean spans can be sent yet; and a successful connect to the OTLP port
            // could be another process that grabbed it. The collector logs this line once every
            // component has bound its port.
            if !self.log().contains(READY_LOG_LINE) {
                last = format!("no {READY_LOG_LINE:?} in the log yet");
            } else {
                match self.query.services().await {
                    Ok(_) => return Ok(()),
                    Err(err) => last = format!("query API: {err:#}"),
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::bail!("Jaeger not ready within {START_TIMEOUT:?} ({last}); log:\n{}", self.log())
    }

    /// The value for `OTEL_EXPORTER_OTLP_ENDPOINT`: Jaeger's OTLP/gRPC receiver, e.g.
    /// `http://127.0.0.1:PORT`.
    pub fn otlp_grpc_endpoint(&self) -> String {
        format!("http://{}", self.otlp_grpc_addr)
    }

    /// The port of the OTLP/gRPC receiver, for daemons that reach Jaeger at another address of
    /// its namespace than `otlp_grpc_endpoint` names.
    pub fn otlp_grpc_port(&self) -> u16 {
        self.otlp_grpc_addr.port()
    }

    /// Base URL of the query HTTP API (and UI), e.g. `http://127.0.0.1:PORT`.
    pub fn query_url(&self) -> String {
        self.query.base_url.clone()
    }

    /// Directory holding Jaeger's config and log; removed on drop.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Jaeger's output so far (for failure messages).
    pub fn log(&self) -> String {
        self.process.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).log()
    }

    /// Fails with Jaeger's log if it has exited.
    pub fn ensure_running(&self) -> anyhow::Result<()> {
        self.process.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).ensure_running()
    }

    /// The service names Jaeger has received spans from.
    pub async fn services(&self) -> anyhow::Result<Vec<String>> {
        self.query.services().await
    }

    /// See [`JaegerQuery::traces`].
    pub async fn traces(&self, service: &str) -> anyhow::Result<Vec<Trace>> {
        self.query.traces(service).await
    }

    /// See [`JaegerQuery::wait_for_trace`]; fails early with Jaeger's log if it died.
    pub async fn wait_for_trace(
        &self,
        service: &str,
        predicate: impl Fn(&Trace) -> bool,
        timeout: Duration,
    ) -> anyhow::Result<Trace> {
        self.query
            .wait_for_trace_with(service, None, predicate, timeout, || self.ensure_running())
            .await
    }

    /// See [`JaegerQuery::wait_for_operation_trace`]; fails early with Jaeger's log if it died.
    pub async fn wait_for_operation_trace(
        &self,
        service: &str,
        operation: &str,
        predicate: impl Fn(&Trace) -> bool,
        timeout: Duration,
    ) -> anyhow::Result<Trace> {
        self.query
            .wait_for_trace_with(service, Some(operation), predicate, timeout, || {
                self.ensure_running()
            })
            .await
    }
}

impl JaegerQuery {
    /// The query API at `base_url`, e.g. `http://127.0.0.1:16686`.
    pub fn new(base_url: &str) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            // Loopback must never go through a proxy from the environment.
            .no_proxy()
            .timeout(REQUEST_TIMEOUT)
            .build()?;
        Ok(Self { base_url: base_url.trim_end_matches('/').to_string(), http })
    }

    /// The service names Jaeger has received spans from.
    pub async fn services(&self) -> anyhow::Result<Vec<String>> {
        let response: ApiResponse<Vec<String>> = self.get("/api/services", &[]).await?;
        Ok(response.data.unwrap_or_default())
    }

    /// Every trace (up to 1000) that has a span from `service`, with all of its spans, also those
    /// from other services.
    pub async fn traces(&self, service: &str) -> anyhow::Result<Vec<Trace>> {
        self.traces_with(service, None).await
    }

    /// Every trace (up to 1000) that has a span from `service`, named `operation` when given.
    async fn traces_with(
        &self,
        service: &str,
        operation: Option<&str>,
    ) -> anyhow::Result<Vec<Trace>> {
        let mut query = vec![("service", service), ("limit", "1000")];
        query.extend(operation.map(|operation| ("operation", operation)));
        let response: ApiResponse<Vec<ApiTrace>> = self.get("/api/traces", &query).await?;
        Ok(response.data.unwrap_or_default().into_iter().map(Trace::from).collect())
    }

    /// Polls `traces(service)` until one trace satisfies `predicate` and returns it; after
    /// `timeout` fails listing what it did see.
    pub async fn wait_for_trace(
        &self,
        service: &str,
        predicate: impl Fn(&Trace) -> bool,
        timeout: Duration,
    ) -> anyhow::Result<Trace> {
        self.wait_for_trace_with(service, None, predicate, timeout, || Ok(())).await
    }

    /// Like `wait_for_trace`, among the traces with a span of `service` named `operation`: a
    /// chatty service's other traces cannot crowd the one looked for out of the query's limit.
    pub async fn wait_for_operation_trace(
        &self,
        service: &str,
        operation: &str,
        predicate: impl Fn(&Trace) -> bool,
        timeout: Duration,
    ) -> anyhow::Result<Trace> {
        self.wait_for_trace_with(service, Some(operation), predicate, timeout, || Ok(())).await
    }

    /// The polling behind both waits; `alive` fails it early (e.g. with the log of a Jaeger
    /// process that died).
    async fn wait_for_trace_with(
        &self,
        service: &str,
        operation: Option<&str>,
        predicate: impl Fn(&Trace) -> bool,
        timeout: Duration,
        alive: impl Fn() -> anyhow::Result<()>,
    ) -> anyhow::Result<Trace> {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        let mut last_error;
        loop {
            alive()?;
            match self.traces_with(service, operation).await {
                Ok(traces) => {
                    if let Some(found) = traces.iter().find(|trace| predicate(trace)) {
                        return Ok(found.clone());
                    }
                    seen = traces;
                    last_error = None;
                }
                Err(err) => last_error = Some(format!("{err:#}")),
            }
            if Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
        let of =
            operation.map(|operation| format!(" and operation {operation:?}")).unwrap_or_default();
        let mut message =
            format!("no matching trace for service {service:?}{of} within {timeout:?}; ");
        if let Some(err) = last_error {
            let _ = write!(message, "last query failed: {err}; ");
        }
        let _ = write!(message, "{} trace(s) seen:", seen.len());
        for trace in &seen {
            let _ = write!(message, "\n  {}", trace.summary());
        }
        anyhow::bail!(message)
    }

    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> anyhow::Result<ApiResponse<T>> {
        let url = format!("{}{path}", self.base_url);
        let response = self.http.get(&url).query(query).send().await?;
        let status = response.status();
        let body = response.text().await?;
        if !status.is_success() {
            anyhow::bail!("GET {path}: {status}: {body}");
        }
        serde_json::from_str(&body)
            .map_err(|err| anyhow::anyhow!("GET {path}: unexpected JSON ({err}): {body}"))
    }
}

/// The collector config: only the components we need, each listener on the loopback port chosen
/// for it. Everything Jaeger's default config adds (Jaeger/Zipkin receivers, sampling, health
/// check, zpages, expvar, the internal Prometheus metrics on :8888) is left out, so it opens
/// nothing else; the query service's own tracing is off because it would export to the default
/// OTLP port, which may be another test's Jaeger.
fn config_yaml(otlp_grpc: SocketAddr, query_http: SocketAddr, query_grpc: SocketAddr) -> String {
    format!(
        r#"service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: info

extensions:
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 100000
  jaeger_query:
    storage:
      traces: memstore
    enable_tracing: false
    http:
      endpoint: "{query_http}"
    grpc:
      endpoint: "{query_grpc}"

receivers:
  otlp:
    protocols:
      grpc:
        endpoint: "{otlp_grpc}"

exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
"#
    )
}

/// One trace as the query API returns it.
#[derive(Debug, Clone)]
pub struct Trace {
    /// Hex trace ID.
    pub trace_id: String,
    /// All spans of the trace, from every service.
    pub spans: Vec<Span>,
}

impl Trace {
    /// The first span named `operation`.
    pub fn span(&self, operation: &str) -> Option<&Span> {
        self.spans.iter().find(|span| span.operation_name == operation)
    }

    /// The span with ID `span_id`.
    pub fn span_by_id(&self, span_id: &str) -> Option<&Span> {
        self.spans.iter().find(|span| span.span_id == span_id)
    }

    /// The parent of `span`, if it is in this trace.
    pub fn parent_of(&self, span: &Span) -> Option<&Span> {
        span.parent_span_id.as_deref().and_then(|id| self.span_by_id(id))
    }

    /// The trace as a person reads it: each span on a line of its own under its parent,
    /// children in the order they started, with the service that emitted it and how long it
    /// took. Spans whose parent is not in the trace (it was not exported, or not yet) are
    /// roots.
    pub fn tree(&self) -> String {
        let mut spans: Vec<&Span> = self.spans.iter().collect();
        spans.sort_by_key(|span| span.start_time_us);
        let is_root = |span: &Span| self.parent_of(span).is_none();
        let mut out = String::new();
        let mut stack: Vec<(&Span, usize)> =
            spans.iter().rev().filter(|span| is_root(span)).map(|span| (*span, 0)).collect();
        // Bounded by the number of spans: each is pushed once, under its one parent.
        while let Some((span, depth)) = stack.pop() {
            let _ = writeln!(
                out,
                "{:indent$}{} {} ({:.1} ms)",
                "",
                span.service_name,
                span.operation_name,
                span.duration_us as f64 / 1000.0,
                indent = depth * 2
            );
            let children = spans
                .iter()
                .rev()
                .filter(|child| child.parent_span_id.as_deref() == Some(span.span_id.as_str()));
            stack.extend(children.map(|child| (*child, depth + 1)));
        }
        out
    }

    /// One line for failure messages: the trace ID and each span as service/operation.
    pub fn summary(&self) -> String {
        let spans: Vec<String> = self
            .spans
            .iter()
            .map(|span| format!("{}/{}", span.service_name, span.operation_name))
            .collect();
        format!("{}: [{}]", self.trace_id, spans.join(", "))
    }
}

/// One span.
#[derive(Debug, Clone)]
pub struct Span {
    /// Hex trace ID.
    pub trace_id: String,
    /// Hex span ID.
    pub span_id: String,
    /// The span's name.
    pub operation_name: String,
    /// `service.name` of the process (resource) that emitted it.
    pub service_name: String,
    /// The span this one is a child of (its CHILD_OF reference), if any.
    pub parent_span_id: Option<String>,
    /// All references (CHILD_OF for the parent, FOLLOWS_FROM for span links).
    pub references: Vec<Reference>,
    /// Attributes, plus what Jaeger derives from OTLP fields (`span.kind`, `otel.status_code`...).
    pub tags: Vec<Tag>,
    /// Start, microseconds since the Unix epoch.
    pub start_time_us: u64,
    /// Duration in microseconds.
    pub duration_us: u64,
}

impl Span {
    /// The value of tag `key`.
    pub fn tag(&self, key: &str) -> Option<&serde_json::Value> {
        self.tags.iter().find(|tag| tag.key == key).map(|tag| &tag.value)
    }

    /// The value of tag `key` if it is a string.
    pub fn tag_str(&self, key: &str) -> Option<&str> {
        self.tag(key).and_then(serde_json::Value::as_str)
    }
}

/// A reference from one span to another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// "CHILD_OF" or "FOLLOWS_FROM".
    pub ref_type: String,
    /// Hex trace ID of the referenced span.
    pub trace_id: String,
    /// Hex span ID of the referenced span.
    pub span_id: String,
}

/// A key/value tag; the value keeps its JSON type (string, bool, number).
#[derive(Debug, Clone, PartialEq)]
pub struct Tag {
    /// Attribute key.
    pub key: String,
    /// Attribute value.
    pub value: serde_json::Value,
}

// The query API's JSON (Jaeger's `uimodel`), only the fields used.

#[derive(Deserialize)]
struct ApiResponse<T> {
    data: Option<T>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApiTrace {
    #[serde(rename = "traceID")]
    trace_id: String,
    #[serde(default)]
    spans: Vec<ApiSpan>,
    #[serde(default)]
    processes: HashMap<String, ApiProcess>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApiSpan {
    #[serde(rename = "traceID")]
    trace_id: String,
    #[serde(rename = "spanID")]
    span_id: String,
    // Deprecated in favour of references, but still filled by some versions.
    #[serde(rename = "parentSpanID", default)]
    parent_span_id: Option<String>,
    operation_name: String,
    #[serde(default)]
    references: Option<Vec<ApiReference>>,
    #[serde(default)]
    start_time: u64,
    #[serde(default)]
    duration: u64,
    #[serde(default)]
    tags: Option<Vec<ApiTag>>,
    #[serde(rename = "processID", default)]
    process_id: Option<String>,
    // Inline instead of the trace's process map in some responses.
    #[serde(default)]
    process: Option<ApiProcess>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApiReference {
    ref_type: String,
    #[serde(rename = "traceID")]
    trace_id: String,
    #[serde(rename = "spanID")]
    span_id: String,
}

#[derive(Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
struct ApiProcess {
    service_name: String,
}

#[derive(Deserialize)]
struct ApiTag {
    key: String,
    value: serde_json::Value,
}

impl From<ApiTrace> for Trace {
    fn from(trace: ApiTrace) -> Self {
        let processes = trace.processes;
        let spans = trace
            .spans
            .into_iter()
            .map(|span| {
                let service_name = span
                    .process
                    .or_else(|| span.process_id.and_then(|id| processes.get(&id).cloned()))
                    .map(|process| process.service_name)
                    .unwrap_or_default();
                let references: Vec<Reference> = span
                    .references
                    .unwrap_or_default()
                    .into_iter()
                    .map(|reference| Reference {
                        ref_type: reference.ref_type,
                        trace_id: reference.trace_id,
                        span_id: reference.span_id,
                    })
                    .collect();
                let parent_span_id = references
                    .iter()
                    .find(|reference| reference.ref_type == "CHILD_OF")
                    .map(|reference| reference.span_id.clone())
                    .or(span.parent_span_id.filter(|id| !id.is_empty()));
                Span {
                    trace_id: span.trace_id,
                    span_id: span.span_id,
                    operation_name: span.operation_name,
                    service_name,
                    parent_span_id,
                    references,
                    tags: span
                        .tags
                        .unwrap_or_default()
                        .into_iter()
                        .map(|tag| Tag { key: tag.key, value: tag.value })
                        .collect(),
                    start_time_us: span.start_time,
                    duration_us: span.duration,
                }
            })
            .collect();
        Self { trace_id: trace.trace_id, spans }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape Jaeger's query API returns for OTLP spans (trimmed from a real answer).
    #[test]
    fn parses_query_api_traces() {
        let json = r#"{"data":[{"traceID":"aa","spans":[
            {"traceID":"aa","spanID":"01","operationName":"parent","references":[],
             "startTime":10,"duration":5,"tags":[{"key":"span.kind","type":"string","value":"internal"}],
             "logs":[],"processID":"p1","warnings":null},
            {"traceID":"aa","spanID":"02","operationName":"child",
             "references":[{"refType":"CHILD_OF","traceID":"aa","spanID":"01"}],
             "startTime":11,"duration":1,"tags":[{"key":"n","type":"int64","value":7}],
             "logs":[],"processID":"p1","warnings":null}],
            "processes":{"p1":{"serviceName":"svc","tags":[]}},"warnings":null}],
            "total":0,"limit":0,"offset":0,"errors":null}"#;
        let response: ApiResponse<Vec<ApiTrace>> = serde_json::from_str(json).unwrap();
        let traces: Vec<Trace> = response.data.unwrap().into_iter().map(Trace::from).collect();
        assert_eq!(traces.len(), 1);
        let child = traces[0].span("child").unwrap();
        assert_eq!(child.service_name, "svc");
        assert_eq!(child.tag("n"), Some(&serde_json::json!(7)));
        assert_eq!(traces[0].parent_of(child).unwrap().operation_name, "parent");
        assert_eq!(traces[0].span("parent").unwrap().tag_str("span.kind"), Some("internal"));
        assert_eq!(traces[0].span("parent").unwrap().parent_span_id, None);
    }

    #[test]
    fn the_tree_puts_children_under_their_parent_in_start_order() {
        let span = |id: &str, parent: Option<&str>, service: &str, operation: &str, start| Span {
            trace_id: "t".into(),
            span_id: id.into(),
            operation_name: operation.into(),
            service_name: service.into(),
            parent_span_id: parent.map(String::from),
            references: Vec::new(),
            tags: Vec::new(),
            start_time_us: start,
            duration_us: 1500,
        };
        // Listed out of order, as Jaeger may return them.
        let trace = Trace {
            trace_id: "t".into(),
            spans: vec![
                span("c", Some("b"), "metallb-announcer", "send_update", 30),
                span(
                    "b",
                    Some("a"),
                    "metallb-allocator",
                    "/metallb.v1.Allocator/UpsertService",
                    20,
                ),
                span("a", None, "metallb-watcher", "watcher.service", 10),
                span("d", Some("a"), "metallb-watcher", "write_status", 40),
            ],
        };
        assert_eq!(
            trace.tree(),
            "metallb-watcher watcher.service (1.5 ms)\n  metallb-allocator /metallb.v1.Allocator/UpsertService (1.5 ms)\n    metallb-announcer send_update (1.5 ms)\n  metallb-watcher write_status (1.5 ms)\n"
        );
    }

    #[test]
    fn empty_answer_has_null_data() {
        let json = r#"{"data":null,"total":0,"limit":0,"offset":0,"errors":null}"#;
        let response: ApiResponse<Vec<String>> = serde_json::from_str(json).unwrap();
        assert!(response.data.is_none());
    }
}
