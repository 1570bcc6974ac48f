//! The coordinator's HTTP door (axum): the OpenAI-compatible `POST /v1/chat/completions` (streamed as
//! SSE or not), `GET /v1/models`, `/health` (liveness), `/ready` (the target node answers its health
//! check) and `/metrics` (Prometheus); with `--admin-listen` the last two move to their own listener.
//! Requests go through the same front door as gRPC's. With API keys configured, the `/v1` routes need
//! `Authorization: Bearer <key>` (the probes stay open).

mod api_error;
mod api_keys;
mod api_types;
mod chat_handler;
mod completion;
mod http_listener;
mod probes;
mod request_guard;
mod request_mapping;
mod sse_chunks;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio_util::sync::CancellationToken;

use crate::front_door::FrontDoor;
use api_error::ApiError;
pub use api_keys::ApiKeys;
use api_keys::Denied;
pub use http_listener::ConnectionLimits;

/// What the handlers share.
pub struct HttpState {
    pub front: Arc<FrontDoor>,
    /// Model id listed by /v1/models and accepted in a request's `model` field.
    pub model_name: String,
    pub created: u64,
    /// None: the API is open (no keys configured).
    pub api_keys: Option<Arc<ApiKeys>>,
    /// How long a request body may take to arrive (408 past it).
    pub body_timeout: Duration,
}

impl HttpState {
    pub fn new(
        front: Arc<FrontDoor>,
        model_name: String,
        api_keys: Option<Arc<ApiKeys>>,
        body_timeout: Duration,
    ) -> Self {
        Self {
            front,
            model_name,
            created: unix_now(),
            api_keys,
            body_timeout,
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The API's routes: `/v1` and `/health`, and the admin routes too unless they have their own
/// listener (`with_admin` false).
pub fn router(state: Arc<HttpState>, with_admin: bool) -> Router {
    if let Some(keys) = &state.api_keys {
        keys.watch();
    }
    let chat = post(chat_handler::chat_completions).layer(middleware::from_fn_with_state(
        state.clone(),
        request_guard::read_body,
    ));
    let api = Router::new()
        .route("/v1/chat/completions", chat)
        .route("/v1/models", get(probes::models))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_api_key,
        ));
    let routes = Router::new()
        .merge(api)
        .route("/health", get(probes::health));
    let routes = if with_admin {
        routes.merge(admin_routes())
    } else {
        routes
    };
    routes
        .fallback(probes::not_found)
        .method_not_allowed_fallback(probes::method_not_allowed)
        .with_state(state)
}

/// The admin listener's routes (`--admin-listen`): liveness, readiness with the pools' state, and
/// Prometheus metrics; nothing a client of the API needs.
pub fn admin_router(state: Arc<HttpState>) -> Router {
    admin_routes()
        .route("/health", get(probes::health))
        .fallback(probes::not_found)
        .with_state(state)
}

fn admin_routes() -> Router<Arc<HttpState>> {
    Router::new()
        .route("/ready", get(probes::ready))
        .route("/metrics", get(probes::metrics))
}

/// Lets a request through when keys are off or it carries a known key under its rate.
async fn require_api_key(
    State(state): State<Arc<HttpState>>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(keys) = &state.api_keys {
        let authorization = request
            .headers()
            .get(AUTHORIZATION)
            .and_then(|value| value.to_str().ok());
        match keys.check(authorization) {
            Ok(()) => {}
            Err(Denied::Unauthorized) => return ApiError::unauthorized().into_response(),
            Err(Denied::RateLimited { per_minute }) => {
                return ApiError::key_rate_limited(per_minute).into_response()
            }
        }
    }
    next.run(request).await
}

/// Serves `router` on `listener` under `limits` until `stop` is cancelled, then lets open requests end.
pub async fn serve_http(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: ConnectionLimits,
    stop: CancellationToken,
) -> std::io::Result<()> {
    http_listener::serve(listener, router, limits, stop).await
}
