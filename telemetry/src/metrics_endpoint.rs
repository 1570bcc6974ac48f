//! The small HTTP server the draft and target nodes expose metrics on (`--metrics-listen`):
//! `GET /metrics` (Prometheus) and `GET /health`. The coordinator serves the same `/metrics` on its
//! own HTTP port.

use std::net::SocketAddr;

use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::registry::{encode_metrics, METRICS_CONTENT_TYPE};

/// `/metrics` response: the process registry in the text format.
pub fn metrics_response() -> Response {
    ([(CONTENT_TYPE, METRICS_CONTENT_TYPE)], encode_metrics()).into_response()
}

fn router() -> Router {
    Router::new()
        .route("/metrics", get(|| async { metrics_response() }))
        .route("/health", get(|| async { "ok" }))
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
