//! The small HTTP admin server the draft and target nodes expose on `--metrics-listen`: `GET /metrics`
//! (Prometheus), `GET /health` (the process is up) and `GET /ready` (the node serves: what Kubernetes
//! probes ask, since a kubelet's gRPC probe cannot speak the nodes' mTLS). The coordinator serves the
//! same `/metrics` on its admin port.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::registry::{encode_metrics, METRICS_CONTENT_TYPE};

/// `/metrics` response: the process registry in the text format.
pub fn metrics_response() -> Response {
    ([(CONTENT_TYPE, METRICS_CONTENT_TYPE)], encode_metrics()).into_response()
}

/// Whether this process serves (its gRPC health says SERVING); false until it says so.
static READY: AtomicBool = AtomicBool::new(false);

/// Sets what `/ready` answers: the node serving (true) or loading, draining or failed (false).
pub fn set_ready(ready: bool) {
    READY.store(ready, Ordering::SeqCst);
}

async fn ready() -> Response {
    if READY.load(Ordering::SeqCst) {
        "ready".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready").into_response()
    }
}

fn router() -> Router {
    Router::new()
        .route("/metrics", get(|| async { metrics_response() }))
        .route("/health", get(|| async { "ok" }))
        .route("/ready", get(ready))
}

/// Binds `listen` (an error now if the port is taken) and serves metrics on a background task.
/// Returns the bound address (useful with port 0); does nothing for None.
pub async fn spawn_metrics_server(
    listen: Option<SocketAddr>,
) -> std::io::Result<Option<SocketAddr>> {
    let Some(listen) = listen else {
        return Ok(None);
    };
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let bound = listener.local_addr()?;
    tracing::info!(listen = %bound, "serving metrics");
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, router()).await {
            tracing::error!(%error, "metrics server stopped");
        }
    });
    Ok(Some(bound))
}
