//! Carrying W3C trace context across process boundaries: in gRPC metadata (unary calls) and
//! inside `metallb.v1.TraceContext` fields (streamed messages, which outlive the call that
//! opened the stream).

use metallb_proto::pb;
use opentelemetry::{
    Context,
    propagation::{Extractor, Injector, TextMapPropagator},
};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

const TRACEPARENT: &str = "traceparent";
const TRACESTATE: &str = "tracestate";

/// Trace context of `span`, for a request or streamed message it causes. Empty when the
/// span is not recorded by OpenTelemetry (no exporter configured).
pub fn trace_context_of(span: &Span) -> pb::TraceContext {
    let mut carrier = TraceContextCarrier::default();
    TraceContextPropagator::new().inject_context(&span.context(), &mut carrier);
    carrier.0
}

/// The trace ID of `span` as 32 hex digits, for log lines; empty when the span is not
/// recorded (no exporter in this process).
pub fn trace_id_of(span: &Span) -> String {
    use opentelemetry::trace::TraceContextExt;
    let context = span.context();
    let span_context = context.span().span_context().clone();
    if span_context.is_valid() { span_context.trace_id().to_string() } else { String::new() }
}

/// Trace context of `span`, or `fallback` when the span is not recorded (no exporter in this
/// process): the caller's context then passes through unchanged, so the next hop still joins
/// the caller's trace.
pub fn trace_context_or(span: &Span, fallback: Option<&pb::TraceContext>) -> pb::TraceContext {
    let own = trace_context_of(span);
    if own.traceparent.is_empty() { fallback.cloned().unwrap_or_default() } else { own }
}

/// Makes `span` a child of the trace described by `trace`; an empty or malformed context
/// leaves the span a root, which is the right outcome for an untraced cause.
pub fn set_parent_from(span: &Span, trace: Option<&pb::TraceContext>) {
    let Some(trace) = trace.filter(|trace| !trace.traceparent.is_empty()) else {
        return;
    };
    let carrier = TraceContextCarrier(trace.clone());
    set_parent(span, TraceContextPropagator::new().extract(&carrier));
}

/// Makes `span` a child of the trace in HTTP/2 request headers (gRPC metadata).
pub fn set_parent_from_headers(span: &Span, headers: &tonic::codegen::http::HeaderMap) {
    set_parent(span, TraceContextPropagator::new().extract(&HeaderExtractor(headers)));
}

/// A tonic client interceptor that puts the current span's context into the request's
/// metadata, so the server's span joins the caller's trace.
pub fn inject_current_context(
    mut request: tonic::Request<()>,
) -> Result<tonic::Request<()>, tonic::Status> {
    let context = Span::current().context();
    TraceContextPropagator::new()
        .inject_context(&context, &mut MetadataInjector(request.metadata_mut()));
    Ok(request)
}

/// The span a gRPC server opens for each request (for `tonic::transport::Server::trace_fn`),
/// joined to the caller's trace when the request carries one. Reads (`Get*`, `List*`), health
/// checks and reflection get a debug-level span, which is not exported: they change nothing,
/// and their steady stream (probes, dashboards) would bury the traces of changes.
pub fn grpc_server_span(request: &tonic::codegen::http::Request<()>) -> Span {
    let path = request.uri().path();
    let method = path.rsplit('/').next().unwrap_or_default();
    let quiet = method.starts_with("Get")
        || method.starts_with("List")
        || path.starts_with("/grpc.health.")
        || path.starts_with("/grpc.reflection.");
    let span = if quiet {
        tracing::debug_span!("grpc.request", otel.name = %path, otel.kind = "server", rpc.system = "grpc")
    } else {
        tracing::info_span!("grpc.request", otel.name = %path, otel.kind = "server", rpc.system = "grpc")
    };
    set_parent_from_headers(&span, request.headers());
    span
}

fn set_parent(span: &Span, parent: Context) {
    // Failing here only means the span was already entered or is disabled; the trace then
    // starts at this span instead, which loses linkage but nothing else.
    if let Err(err) = span.set_parent(parent) {
        tracing::debug!(error = %err, "could not attach the remote trace context");
    }
}

#[derive(Default)]
struct TraceContextCarrier(pb::TraceContext);

impl Injector for TraceContextCarrier {
    fn set(&mut self, key: &str, value: String) {
        match key {
            TRACEPARENT => self.0.traceparent = value,
            TRACESTATE => self.0.tracestate = value,
            _ => {}
        }
    }
}

impl Extractor for TraceContextCarrier {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            TRACEPARENT => Some(self.0.traceparent.as_str()),
            TRACESTATE => Some(self.0.tracestate.as_str()),
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT, TRACESTATE]
    }
}

struct HeaderExtractor<'a>(&'a tonic::codegen::http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|key| key.as_str()).collect()
    }
}

struct MetadataInjector<'a>(&'a mut tonic::metadata::MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        let Ok(key) = tonic::metadata::MetadataKey::from_bytes(key.as_bytes()) else {
            return;
        };
        if let Ok(value) = value.parse() {
            self.0.insert(key, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use tracing_subscriber::layer::SubscriberExt;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn with_otel<R>(body: impl FnOnce() -> R) -> R {
        let provider = SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, body)
    }

    #[test]
    fn a_span_parented_from_a_message_continues_that_trace() {
        with_otel(|| {
            let span = tracing::info_span!("child");
            let parent = pb::TraceContext { traceparent: PARENT.into(), tracestate: String::new() };
            set_parent_from(&span, Some(&parent));
            let context = trace_context_of(&span);
            assert!(
                context.traceparent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
                "{context:?}"
            );
            // A child has its own span ID.
            assert!(!context.traceparent.contains("00f067aa0ba902b7"), "{context:?}");
        });
    }

    #[test]
    fn metadata_injected_by_the_client_is_what_the_server_extracts() {
        with_otel(|| {
            let span = tracing::info_span!("caller");
            let request =
                span.in_scope(|| inject_current_context(tonic::Request::new(())).unwrap());
            let headers = request.metadata().clone().into_headers();
            let server_span = tracing::info_span!("server");
            set_parent_from_headers(&server_span, &headers);
            let caller_trace = span.context().span().span_context().trace_id();
            let server_trace = server_span.context().span().span_context().trace_id();
            assert_eq!(caller_trace, server_trace);
        });
    }

    #[test]
    fn without_an_exporter_the_callers_context_passes_through() {
        let span = tracing::info_span!("untraced");
        let given = pb::TraceContext { traceparent: PARENT.into(), tracestate: String::new() };
        assert_eq!(trace_context_or(&span, Some(&given)), given);
        assert_eq!(trace_context_or(&span, None), pb::TraceContext::default());
    }

    #[test]
    fn an_empty_trace_context_leaves_the_span_a_root() {
        with_otel(|| {
            let span = tracing::info_span!("root");
            set_parent_from(&span, Some(&pb::TraceContext::default()));
            set_parent_from(&span, None);
            assert!(!trace_context_of(&span).traceparent.is_empty());
        });
    }
}
