//! The coordinator's HTTP door (axum): the OpenAI-compatible `POST /v1/chat/completions` (streamed as
//! SSE or not), `GET /v1/models`, `/health` (liveness), `/ready` (the target node answers its health
//! check) and `/metrics` (Prometheus). Requests go through the same front door as gRPC's.

mod api_error;
mod api_types;
mod chat_handler;
mod completion;
mod probes;
mod request_mapping;
mod sse_chunks;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::routing::{get, post};
use axum::Router;
use tokio_util::sync::CancellationToken;

use crate::front_door::FrontDoor;

/// What the handlers share.
pub struct HttpState {
    pub front: Arc<FrontDoor>,
    /// Model id listed by /v1/models and accepted in a request's `model` field.
    pub model_name: String,
    pub created: u64,
}

impl HttpState {
    pub fn new(front: Arc<FrontDoor>, model_name: String) -> Self {
        Self {
            front,
            model_name,
            created: unix_now(),
        }
    }
}

fn unix_now() -> u64 {
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

/// Serves `router` on `listener` until `stop` is cancelled.
pub async fn serve_http(
    listener: tokio::net::TcpListener,
    router: Router,
    stop: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await
}
