//! Logs and traces: one `tracing` subscriber writing log lines to stderr (text or JSON) and,
//! when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, exporting spans over OTLP/gRPC.

use std::io::IsTerminal;

use opentelemetry::{global, trace::TracerProvider as _};
use opentelemetry_sdk::{Resource, propagation::TraceContextPropagator, trace::SdkTracerProvider};
use tracing_subscriber::{
    EnvFilter, Layer, filter::LevelFilter, layer::SubscriberExt, util::SubscriberInitExt,
};

use crate::{CommonArgs, LogFormat};

/// The environment variable that turns trace export on (the OpenTelemetry standard one).
pub const OTLP_ENDPOINT_VAR: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

/// Flushes pending spans when dropped; keep it alive for the whole of `main`.
#[must_use = "dropping the guard stops trace export"]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(err) = provider.shutdown()
        {
            eprintln!("flushing traces failed: {err}");
        }
    }
}

/// Installs the global subscriber for `service_name` ("metallb-allocator", ...). Must run
/// inside the Tokio runtime: the OTLP exporter is a tonic client.
pub fn init(service_name: &'static str, args: &CommonArgs) -> anyhow::Result<TelemetryGuard> {
    let filter = EnvFilter::try_new(&args.log_filter)
        .map_err(|err| anyhow::anyhow!("invalid --log-filter {:?}: {err}", args.log_filter))?;
    let logs = match args.log_format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(std::io::stderr)
            .boxed(),
    };

    // Trace context is propagated even without an exporter, so a traced caller's context
    // flows through an untraced hop unchanged.
    global::set_text_map_propagator(TraceContextPropagator::new());

    let provider = match std::env::var(OTLP_ENDPOINT_VAR) {
        Ok(endpoint) if !endpoint.is_empty() => Some(otlp_provider(service_name)?),
        _ => None,
    };
    // Spans at info and above: ours. The libraries underneath (h2, hyper, tonic) open spans at
    // debug and trace level for every frame; exporting those would bury each Service's trace
    // (and the exporter's own gRPC calls would feed back into it).
    let traces = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer(service_name))
            .with_filter(LevelFilter::INFO)
    });

    tracing_subscriber::registry()
        .with(traces)
        .with(logs.with_filter(filter))
        .try_init()
        .map_err(|err| anyhow::anyhow!("installing the tracing subscriber: {err}"))?;
    Ok(TelemetryGuard { provider })
}

fn otlp_provider(service_name: &'static str) -> anyhow::Result<SdkTracerProvider> {
    // The exporter reads OTEL_EXPORTER_OTLP_ENDPOINT (and the other standard variables) itself.
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .build()
        .map_err(|err| anyhow::anyhow!("configuring the OTLP exporter: {err}"))?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_service_name(service_name).build())
        .build();
    global::set_tracer_provider(provider.clone());
    Ok(provider)
}
