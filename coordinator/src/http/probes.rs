//! `/health` (the process is up), `/ready` (a target node is in routing: its health check says
//! SERVING; draft nodes are reported but optional, since the target can answer alone), `/v1/models`, `/metrics`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::api_error::ApiError;
use super::api_types::{ModelCard, ModelList};
use super::HttpState;

pub async fn health() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// The target pool's state: (the node shown, Ok when some target is in routing, every node up,
/// every node down with why), nodes named by id (their addresses are in the coordinator's log).
/// Health comes from the pool's checks (a node never checked is checked now).
async fn target_ready(state: &HttpState) -> (String, Result<(), String>, Vec<String>, Vec<String>) {
    let (up, down) = state.front.solver().target_pool().reachable().await;
    let up_list: Vec<String> = up.iter().map(|n| n.id.clone()).collect();
    let down_list: Vec<String> = down
        .iter()
        .map(|u| format!("{} ({})", u.id, u.reason))
        .collect();
    let (node, ready) = match (up.first(), down.first()) {
        (Some(node), _) => (node.id.clone(), Ok(())),
        (None, Some(first)) => (first.id.clone(), Err(down_list.join("; "))),
        (None, None) => (String::new(), Err("no target node configured".to_string())),
    };
    (node, ready, up_list, down_list)
}

/// Probes the draft nodes (which updates the pool gauges): (reachable, unreachable), by id.
async fn probe_pool(state: &HttpState) -> (Vec<String>, Vec<String>) {
    let (ready, unreachable) = state.front.solver().draft_pool().reachable().await;
    (
        ready.iter().map(|n| n.id.clone()).collect(),
        unreachable
            .iter()
            .map(|u| format!("{} ({})", u.id, u.reason))
            .collect(),
    )
}

pub async fn ready(State(state): State<Arc<HttpState>>) -> Response {
    let ((target_node, target, targets_up, targets_down), (drafts_up, drafts_down)) =
        tokio::join!(target_ready(&state), probe_pool(&state));
    let body = json!({
        "status": if target.is_ok() { "ready" } else { "not_ready" },
        "target": {
            "node": target_node,
            "ready": target.is_ok(),
            "error": target.as_ref().err(),
        },
        "target_nodes": {"reachable": targets_up, "unreachable": targets_down},
        "draft_nodes": {"reachable": drafts_up, "unreachable": drafts_down},
    });
    let code = if target.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

pub async fn models(State(state): State<Arc<HttpState>>) -> Json<ModelList> {
    Json(ModelList {
        object: "list",
        data: vec![ModelCard {
            id: state.model_name.clone(),
            object: "model",
            created: state.created,
            owned_by: "scot",
        }],
    })
}

pub async fn metrics(State(state): State<Arc<HttpState>>) -> Response {
    probe_pool(&state).await;
    scot_telemetry::metrics_response()
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::method_not_allowed()
}

pub async fn not_found() -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        ..ApiError::invalid(
            "no such route: the API serves POST /v1/chat/completions, GET /v1/models, /health, /ready, /metrics",
            None,
        )
    }
}
