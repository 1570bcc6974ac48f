//! The coordinator's HTTP front door (axum): the OpenAI-compatible `POST /v1/chat/completions`
//! (streamed as SSE or not), `GET /v1/models`, `/health` (liveness), `/ready` (the target node answers
//! its health check) and `/metrics` (Prometheus). Requests run on the same Solver as the gRPC service.

pub mod api_error;
pub mod api_types;
pub mod chat_handler;
pub mod completion;
pub mod probes;
pub mod request_mapping;
pub mod sse_chunks;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::routing::{get, post};
use axum::Router;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::config::{CoordinatorConfig, SolveDefaults};
use crate::draft_pool::DraftPool;
use crate::service::CoordinatorError;
use crate::solve::Solver;
use crate::target_pool::TargetPool;

#[derive(clap::Args, Debug, Clone, PartialEq)]
pub struct HttpConfig {
    /// Address of the HTTP API (OpenAI-compatible chat completions, /health, /ready, /metrics).
    /// Off when unset.
    #[arg(id = "http_listen", long = "http-listen", env = "SCOT_HTTP_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Requests solved at once, HTTP and gRPC together; more get HTTP 429 / gRPC RESOURCE_EXHAUSTED
    /// (TGI's max_concurrent_requests). Requests waiting for node room count here too.
    #[arg(
        long = "max-concurrent-requests",
        env = "SCOT_MAX_CONCURRENT_REQUESTS",
        default_value_t = 128
    )]
    pub max_concurrent_requests: usize,
    /// Model id listed by /v1/models and accepted in a request's `model` field.
    #[arg(
        long = "served-model-name",
        env = "SCOT_SERVED_MODEL_NAME",
        default_value = "scot"
    )]
    pub served_model_name: String,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: None,
            max_concurrent_requests: 128,
            served_model_name: "scot".to_string(),
        }
    }
}

/// What the handlers share.
pub struct HttpState {
    pub solver: Arc<Solver>,
    pub defaults: SolveDefaults,
    pub default_timeout: Option<Duration>,
    /// The Solver's admission (shared with gRPC).
    pub capacity: Arc<Semaphore>,
    pub max_concurrent: usize,
    pub model_name: String,
    pub created: u64,
    /// For /ready: the Solver's own target and draft pools (static flags or etcd discovery).
    pub targets: Arc<TargetPool>,
    pub pool: Arc<DraftPool>,
    pub probe_timeout: Duration,
}

impl HttpState {
    pub fn new(
        config: &CoordinatorConfig,
        http: &HttpConfig,
        solver: Arc<Solver>,
    ) -> Result<Self, CoordinatorError> {
        if http.served_model_name.trim().is_empty() {
            return Err(CoordinatorError::Config(
                "--served-model-name must not be empty".to_string(),
            ));
        }
        let probe_timeout = Duration::from_millis(config.health_timeout_ms.max(1));
        let targets = solver.target_pool();
        let pool = solver.draft_pool();
        let admission = solver.admission().clone();
        Ok(Self {
            solver,
            defaults: config.defaults.clone(),
            default_timeout: (config.request_timeout_secs > 0)
                .then(|| Duration::from_secs(config.request_timeout_secs)),
            capacity: admission.permits(),
            max_concurrent: admission.limit(),
            model_name: http.served_model_name.clone(),
            created: unix_now(),
            targets,
            pool,
            probe_timeout,
        })
    }
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub fn router(state: Arc<HttpState>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat_handler::chat_completions))
        .route("/v1/models", get(probes::models))
        .route("/health", get(probes::health))
        .route("/ready", get(probes::ready))
        .route("/metrics", get(probes::metrics))
        .fallback(probes::not_found)
        .with_state(state)
}

/// Serves the router on `listener` until `stop` is cancelled.
pub async fn serve_http(
    listener: tokio::net::TcpListener,
    state: Arc<HttpState>,
    stop: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await
}

/// Binds `--http-listen` (when set) and serves the HTTP API on a background task.
pub async fn start(
    config: &CoordinatorConfig,
    solver: Arc<Solver>,
    stop: CancellationToken,
) -> Result<Option<tokio::task::JoinHandle<()>>, CoordinatorError> {
    let Some(listen) = config.http.listen else {
        return Ok(None);
    };
    let state = Arc::new(HttpState::new(config, &config.http, solver)?);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| CoordinatorError::Config(format!("--http-listen {listen}: {e}")))?;
    tracing::info!(%listen, model = %state.model_name, "HTTP API serving");
    Ok(Some(tokio::spawn(async move {
        if let Err(error) = serve_http(listener, state, stop).await {
            tracing::error!(%error, "HTTP server stopped");
        }
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        config: CoordinatorConfig,
    }

    #[test]
    fn http_flags_parse_next_to_the_grpc_ones() {
        Cli::command().debug_assert();
        let cli = Cli::parse_from([
            "coordinator",
            "--listen",
            "127.0.0.1:1",
            "--http-listen",
            "127.0.0.1:2",
            "--target-node",
            "t:1",
            "--max-concurrent-requests",
            "3",
        ]);
        assert_eq!(cli.config.listen.port(), 1);
        assert_eq!(cli.config.http.listen.map(|a| a.port()), Some(2));
        assert_eq!(cli.config.http.max_concurrent_requests, 3);
        assert_eq!(cli.config.http.served_model_name, "scot");
        let cli = Cli::parse_from(["coordinator", "--target-node", "t:1"]);
        assert_eq!(cli.config.http, HttpConfig::default());
    }
}
