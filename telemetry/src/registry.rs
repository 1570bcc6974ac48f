//! One Prometheus registry per process. Every metric family of scot is registered here once (see
//! docs/metrics.md for the names and formulas) and `/metrics` encodes it in the text exposition format.

use std::sync::{LazyLock, Mutex, PoisonError};

use prometheus_client::registry::{Metric, Registry};

/// Content type of [`encode_metrics`]'s output (OpenMetrics text, which Prometheus scrapes natively).
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

static REGISTRY: LazyLock<Mutex<Registry>> = LazyLock::new(|| Mutex::new(Registry::default()));

/// Registers a metric family. Register each name once per process (hold families in a `LazyLock`).
/// Counters get the `_total` suffix on output.
pub fn register(name: &str, help: &str, metric: impl Metric) {
    REGISTRY
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .register(name, help, metric);
}

/// Every registered family in the text format.
pub fn encode_metrics() -> String {
    let mut text = String::new();
    let registry = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
    if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &registry) {
        tracing::warn!(%error, "encoding metrics failed");
    }
    text
}
