//! The process around any scot server (node or coordinator): its async runtime, telemetry, the stop
//! signal, and a bounded runtime shutdown so a stopped server exits instead of waiting on engine threads.

use std::future::Future;
use std::time::Duration;

pub use scot_telemetry::shutdown_signal;

/// How long blocking work still running after the server stopped (engine threads) may hold up the exit.
const RUNTIME_SHUTDOWN: Duration = Duration::from_secs(5);

/// What can stop a server process before its server runs.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("starting the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("telemetry")]
    Telemetry(#[source] scot_telemetry::TelemetryError),
}

/// Runs `serve` in a multi-threaded runtime with telemetry as `service_name` (logs to stderr, traces
/// over OTLP when configured; flushed when `serve` ends), then gives the runtime a bounded shutdown.
pub fn run_server_process<E>(
    service_name: &str,
    serve: impl Future<Output = Result<(), E>>,
) -> Result<(), E>
where
    E: From<ProcessError>,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(ProcessError::Runtime)?;
    let result = runtime.block_on(async {
        let _telemetry = scot_telemetry::init(service_name).map_err(ProcessError::Telemetry)?;
        serve.await
    });
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN);
    result
}
