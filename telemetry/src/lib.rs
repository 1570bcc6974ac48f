//! What every scot binary shares for observability: logging to stderr, OpenTelemetry tracing with OTLP
//! export (when `OTEL_EXPORTER_OTLP_ENDPOINT` is set), W3C trace context carried through gRPC metadata,
//! and Prometheus metrics (one process-wide registry, a gRPC server layer, a small `/metrics` server).

pub mod grpc_server_layer;
pub mod metrics_endpoint;
pub mod propagation;
pub mod registry;
pub mod shutdown;
pub mod tracing_setup;

pub use grpc_server_layer::GrpcServerLayer;
pub use metrics_endpoint::{metrics_response, set_ready, spawn_metrics_server};
pub use propagation::{
    extract_context, inject_current_context, set_parent_from_headers, HeaderExtractor,
    MetadataInjector,
};
pub use registry::{encode_metrics, register, METRICS_CONTENT_TYPE};
pub use shutdown::shutdown_signal;
pub use tracing_setup::{init, otlp_endpoint, TelemetryError, TelemetryGuard};
