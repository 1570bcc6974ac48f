//! `/health` (the process is up), `/ready` (the target node answers its health check; draft nodes are
//! reported but optional, since the target can answer alone), `/v1/models`, `/metrics`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use super::api_error::ApiError;
use super::api_types::{ModelCard, ModelList};
use super::HttpState;
use crate::metrics::metrics as coordinator_metrics;

pub async fn health() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// The target node a request would run on now, and Ok(()) when it reports SERVING within the probe
/// timeout.
async fn target_ready(state: &HttpState) -> (String, Result<(), String>) {
    let target = match state.targets.pick() {
        Ok(target) => target,
        Err(status) => return (String::new(), Err(status.message().to_string())),
    };
    let address = target.address().to_string();
    (address, probe_target(target.channel(), state).await)
}

async fn probe_target(channel: tonic::transport::Channel, state: &HttpState) -> Result<(), String> {
    let mut client = HealthClient::new(channel);
    let check = client.check(HealthCheckRequest {
        service: String::new(),
    });
    match tokio::time::timeout(state.probe_timeout, check).await {
        Err(_) => Err(format!(
            "no answer within {} ms",
            state.probe_timeout.as_millis()
        )),
        Ok(Err(status)) => Err(status.message().to_string()),
        Ok(Ok(response)) if response.get_ref().status == ServingStatus::Serving as i32 => Ok(()),
        Ok(Ok(_)) => Err("not serving".to_string()),
    }
}

/// Probes the draft nodes and updates the pool gauges: (reachable, unreachable addresses).
async fn probe_pool(state: &HttpState) -> (Vec<String>, Vec<String>) {
    let (ready, unreachable) = state.pool.reachable().await;
    coordinator_metrics().set_pool(ready.len(), unreachable.len());
    (
        ready.iter().map(|n| n.address.clone()).collect(),
        unreachable
            .iter()
            .map(|u| format!("{} ({})", u.address, u.reason))
            .collect(),
    )
}

pub async fn ready(State(state): State<Arc<HttpState>>) -> Response {
    let ((target_address, target), (drafts_up, drafts_down)) =
        tokio::join!(target_ready(&state), probe_pool(&state));
    let body = json!({
        "status": if target.is_ok() { "ready" } else { "not_ready" },
        "target": {
            "address": target_address,
            "ready": target.is_ok(),
            "error": target.as_ref().err(),
        },
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

pub async fn not_found() -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        ..ApiError::invalid(
            "no such route: the API serves POST /v1/chat/completions, GET /v1/models, /health, /ready, /metrics",
            None,
        )
    }
}
