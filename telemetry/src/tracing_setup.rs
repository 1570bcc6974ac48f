//! Logging and tracing set-up: `RUST_LOG`-filtered logs to stderr, plus an OpenTelemetry layer that
//! exports spans over OTLP/gRPC when `OTEL_EXPORTER_OTLP_ENDPOINT` (or `..._TRACES_ENDPOINT`) is set.
//! The W3C trace-context propagator is installed either way, so a process that does not export still
//! forwards its callers' trace context.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("OTLP span exporter for {endpoint}: {message}")]
    Exporter { endpoint: String, message: String },
}

/// Keeps the tracer provider alive; dropping it flushes the spans still queued and stops the exporter.
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl TelemetryGuard {
    /// Whether spans are exported over OTLP.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Sends the spans queued so far (blocks; call from a blocking thread inside async code).
    pub fn flush(&self) {
        if let Some(provider) = &self.provider {
            if let Err(error) = provider.force_flush() {
                tracing::warn!(%error, "flushing spans failed");
            }
        }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            if let Err(error) = provider.shutdown() {
                tracing::warn!(%error, "stopping the span exporter failed");
            }
        }
    }
}

/// The OTLP endpoint spans go to, from the standard environment variables; None when unset, empty, or
/// `OTEL_SDK_DISABLED=true`.
pub fn otlp_endpoint() -> Option<String> {
    if std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.trim().eq_ignore_ascii_case("true")) {
        return None;
    }
    [
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ]
    .iter()
    .filter_map(|name| std::env::var(name).ok())
    .map(|value| value.trim().to_string())
    .find(|value| !value.is_empty())
}

/// Installs the global subscriber (logs + optional OTLP export) and the W3C propagator. Must run inside
/// a Tokio runtime (the gRPC exporter's channel lives on it). A second call in one process keeps the
/// first subscriber. `service_name` names the process in traces unless `OTEL_SERVICE_NAME` is set.
pub fn init(service_name: &str) -> Result<TelemetryGuard, TelemetryError> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let provider = match otlp_endpoint() {
        Some(endpoint) => Some(tracer_provider(service_name, &endpoint)?),
        None => None,
    };
    let otel = provider
        .as_ref()
        .map(|provider| tracing_opentelemetry::layer().with_tracer(provider.tracer("scot")));
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(logs)
        .with(otel)
        .try_init()
        .is_ok();
    match &provider {
        Some(provider) if installed => {
            opentelemetry::global::set_tracer_provider(provider.clone());
            tracing::info!(endpoint = ?otlp_endpoint(), "exporting traces over OTLP/gRPC");
        }
        _ => {}
    }
    Ok(TelemetryGuard {
        provider: provider.filter(|_| installed),
    })
}

fn tracer_provider(
    service_name: &str,
    endpoint: &str,
) -> Result<SdkTracerProvider, TelemetryError> {
    // The exporter reads the endpoint, headers and timeout from the OTEL_EXPORTER_OTLP_* variables.
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .build()
        .map_err(|e| TelemetryError::Exporter {
            endpoint: endpoint.to_string(),
            message: e.to_string(),
        })?;
    let mut resource = Resource::builder();
    if std::env::var("OTEL_SERVICE_NAME").map_or(true, |v| v.trim().is_empty()) {
        resource = resource.with_service_name(service_name.to_string());
    }
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build())
}
