//! `POST /v1/chat/completions`: the OpenAI request mapped onto a Solve (400 when it cannot be), then the
//! front door as gRPC uses it (429 over capacity, 400 invalid). The client going away (dropped
//! connection or stream) cancels the request and its work on the nodes; the configured request timeout
//! applies.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::stream::{self, StreamExt};
use scot_proto::solve_event::Event as SolveEventKind;
use scot_proto::{SolveEvent, SolveRequest};
use tonic::Status;
use tracing::Instrument;

use super::api_error::ApiError;
use super::completion::{chat_completion, CompletionMeta};
use super::request_mapping::{map_request, parse_body, refusal_error, MappedRequest};
use super::sse_chunks::ChunkBuilder;
use super::{unix_now, HttpState};
use crate::event_queue::EventReceiver;
use crate::front_door::{BadRequestId, Door, Started};
use crate::metrics::{metrics, Api, Outcome};

pub async fn chat_completions(
    State(state): State<Arc<HttpState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let span = tracing::info_span!(
        "http.request",
        otel.name = "POST /v1/chat/completions",
        otel.kind = "server",
        http.request.method = "POST",
        http.route = "/v1/chat/completions",
        request_id = tracing::field::Empty,
    );
    scot_telemetry::set_parent_from_headers(&span, &headers);
    handle(state, headers, body).instrument(span).await
}

async fn handle(state: Arc<HttpState>, headers: HeaderMap, body: Bytes) -> Response {
    let mapped =
        match parse_body(&body).and_then(|request| map_request(&request, &state.model_name)) {
            Ok(mapped) => mapped,
            Err(error) => {
                tracing::info!(error = %error.message, param = ?error.param, "bad request");
                metrics().count_outcome(Api::Http, Outcome::Invalid);
                return error.into_response();
            }
        };
    let MappedRequest {
        problem,
        options,
        stream,
        include_usage,
    } = mapped;
    let request = SolveRequest {
        request_id: header_request_id(&headers),
        problem,
        options: Some(options),
    };
    let door = Door {
        api: Api::Http,
        timeout: None,
        bad_request_id: BadRequestId::Replace,
    };
    let Started { request_id, events } = match state.front.start(request, door) {
        Ok(started) => started,
        Err(refused) => return refusal_error(&refused).into_response(),
    };
    tracing::Span::current().record("request_id", request_id.as_str());
    let meta = CompletionMeta {
        id: format!("chatcmpl-{request_id}"),
        created: unix_now(),
        model: state.model_name.clone(),
    };
    let mut response = if stream {
        stream_response(events, ChunkBuilder::new(meta, include_usage))
    } else {
        collect_response(events, &meta).await
    };
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

/// The client's `x-request-id` when it is one visible-ASCII word (it goes back as a header); empty
/// otherwise, so the front door makes one up.
fn header_request_id(headers: &HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|id| id.chars().all(|c| c.is_ascii_graphic()))
        .unwrap_or_default()
        .to_string()
}

async fn collect_response(mut events: EventReceiver, meta: &CompletionMeta) -> Response {
    while let Some(event) = events.recv().await {
        match event {
            Ok(SolveEvent {
                event: Some(SolveEventKind::Result(result)),
            }) => return Json(chat_completion(meta, &result)).into_response(),
            Ok(_) => {}
            Err(status) => return ApiError::from_status(&status).into_response(),
        }
    }
    ApiError::from_status(&Status::internal("the request ended without a result")).into_response()
}

fn stream_response(events: EventReceiver, mut chunks: ChunkBuilder) -> Response {
    let opening = sse_json(&chunks.opening());
    let body = events.into_stream().flat_map(move |event| {
        let out: Vec<Event> = match event {
            Ok(event) => {
                let last = matches!(event.event, Some(SolveEventKind::Result(_)));
                let mut out: Vec<Event> = chunks.on_event(&event).iter().map(sse_json).collect();
                if last {
                    out.push(Event::default().data("[DONE]"));
                }
                out
            }
            // After the 200 has gone out, an error is an `error` object in the stream (as vLLM does).
            Err(status) => vec![
                sse_json(&ApiError::from_status(&status).body()),
                Event::default().data("[DONE]"),
            ],
        };
        stream::iter(out)
    });
    let body = stream::once(async move { opening })
        .chain(body)
        .map(Ok::<Event, Infallible>);
    Sse::new(body)
        .keep_alive(KeepAlive::default())
        .into_response()
}

fn sse_json(value: &impl serde::Serialize) -> Event {
    let data = serde_json::to_string(value).unwrap_or_else(|_| "{}".to_string());
    Event::default().data(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_come_from_the_header_when_one_word() {
        let mut headers = HeaderMap::new();
        assert_eq!(header_request_id(&headers), "");
        headers.insert("x-request-id", HeaderValue::from_static(" abc-1 "));
        assert_eq!(header_request_id(&headers), "abc-1");
        headers.insert("x-request-id", HeaderValue::from_static("has space"));
        assert_eq!(header_request_id(&headers), "");
    }
}
