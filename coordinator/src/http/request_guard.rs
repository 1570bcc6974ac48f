//! What a request body passes before its handler: the Content-Type (415), the size (413, from the
//! declared length or while reading) and the read time (408, a client that trickles its body), all
//! answered in OpenAI's error shape. The handler gets the body already read.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::LengthLimitError;

use super::api_error::ApiError;
use super::HttpState;

/// Largest request body read (a chat request with a long problem is well below; problems are at most
/// 1 MiB).
pub const MAX_BODY_BYTES: usize = 2 << 20;

/// JSON, or no Content-Type at all (what OpenAI's API takes); anything else is refused.
fn is_json(request: &Request) -> bool {
    match request.headers().get(header::CONTENT_TYPE) {
        None => true,
        Some(value) => value.to_str().ok().is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
        }),
    }
}

pub async fn read_body(
    State(state): State<Arc<HttpState>>,
    request: Request,
    next: Next,
) -> Response {
    if !is_json(&request) {
        return ApiError::unsupported_media_type().into_response();
    }
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return ApiError::payload_too_large(MAX_BODY_BYTES).into_response();
    }
    let (parts, body) = request.into_parts();
    let read = tokio::time::timeout(
        state.body_timeout,
        axum::body::to_bytes(body, MAX_BODY_BYTES),
    )
    .await;
    let bytes = match read {
        Ok(Ok(bytes)) => bytes,
        // to_bytes fails at the limit, or when the connection fails mid-body.
        Ok(Err(error)) => {
            return match error.into_inner().downcast::<LengthLimitError>() {
                Ok(_) => ApiError::payload_too_large(MAX_BODY_BYTES).into_response(),
                Err(_) => {
                    ApiError::invalid("the request body could not be read", None).into_response()
                }
            }
        }
        Err(_) => return ApiError::body_timeout(state.body_timeout).into_response(),
    };
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}
