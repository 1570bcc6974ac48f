//! Errors of the HTTP API in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}` with a
//! matching status code (400 bad input, 404 unknown model, 429 over capacity, 5xx node trouble).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use crate::metrics::Outcome;

#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub kind: &'static str,
    pub param: Option<String>,
    pub code: Option<&'static str>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorFields<'a>,
}

#[derive(Serialize)]
struct ErrorFields<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: Option<&'a str>,
}

impl ApiError {
    /// 400: the request is wrong; `param` names the field.
    pub fn invalid(message: impl Into<String>, param: Option<&str>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            kind: "invalid_request_error",
            param: param.map(str::to_string),
            code: None,
        }
    }

    pub fn model_not_found(model: &str, served: &str) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            message: format!("The model `{model}` does not exist: this server serves `{served}`"),
            kind: "invalid_request_error",
            param: Some("model".to_string()),
            code: Some("model_not_found"),
        }
    }

    /// 401: no API key, or one the server does not know (OpenAI's `invalid_api_key`).
    pub fn unauthorized() -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            message: "Incorrect or missing API key: send `Authorization: Bearer <key>`".to_string(),
            kind: "invalid_request_error",
            param: None,
            code: Some("invalid_api_key"),
        }
    }

    /// 429: the key is over its `--api-key-rate-limit`.
    pub fn key_rate_limited(per_minute: u32) -> Self {
        Self {
            status: StatusCode::TOO_MANY_REQUESTS,
            message: format!(
                "Rate limit reached for this API key: {per_minute} requests per minute"
            ),
            kind: "rate_limit_error",
            param: None,
            code: Some("rate_limit_exceeded"),
        }
    }

    /// 413: the body is over the API's limit.
    pub fn payload_too_large(limit: usize) -> Self {
        Self {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            message: format!("The request body is larger than {limit} bytes"),
            kind: "invalid_request_error",
            param: None,
            code: Some("payload_too_large"),
        }
    }

    /// 415: a body that is not JSON.
    pub fn unsupported_media_type() -> Self {
        Self {
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            message: "The request body must be JSON (Content-Type: application/json)".to_string(),
            kind: "invalid_request_error",
            param: None,
            code: Some("unsupported_media_type"),
        }
    }

    /// 408: the body did not arrive within the body timeout.
    pub fn body_timeout(limit: std::time::Duration) -> Self {
        Self {
            status: StatusCode::REQUEST_TIMEOUT,
            message: format!(
                "The request body did not arrive within {} s",
                limit.as_secs()
            ),
            kind: "invalid_request_error",
            param: None,
            code: Some("request_timeout"),
        }
    }

    /// 405: the route exists, the method does not.
    pub fn method_not_allowed() -> Self {
        Self {
            status: StatusCode::METHOD_NOT_ALLOWED,
            message: "Method not allowed: /v1/chat/completions takes POST, the other routes GET"
                .to_string(),
            kind: "invalid_request_error",
            param: None,
            code: Some("method_not_allowed"),
        }
    }

    /// 429: the front door's refusal `message`.
    pub fn over_capacity(message: String) -> Self {
        Self {
            status: StatusCode::TOO_MANY_REQUESTS,
            message,
            kind: "rate_limit_error",
            param: None,
            code: Some(Outcome::OverCapacity.label()),
        }
    }

    /// A failed solve: the gRPC status of the coordinator's pipeline, by its outcome, mapped to HTTP.
    pub fn from_status(status: &tonic::Status) -> Self {
        let (http, kind, code) = match Outcome::of(status.code()) {
            Outcome::Invalid if status.code() == tonic::Code::NotFound => {
                (StatusCode::NOT_FOUND, "invalid_request_error", None)
            }
            Outcome::Invalid => (StatusCode::BAD_REQUEST, "invalid_request_error", None),
            outcome @ Outcome::OverCapacity => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                Some(outcome.label()),
            ),
            outcome @ Outcome::DeadlineExceeded => (
                StatusCode::GATEWAY_TIMEOUT,
                "timeout_error",
                Some(outcome.label()),
            ),
            outcome @ Outcome::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                Some(outcome.label()),
            ),
            Outcome::Cancelled => (
                StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
                "cancelled",
                None,
            ),
            Outcome::Ok | Outcome::Error => {
                (StatusCode::INTERNAL_SERVER_ERROR, "server_error", None)
            }
        };
        Self {
            status: http,
            message: status.message().to_string(),
            kind,
            param: None,
            code,
        }
    }

    /// The JSON body (also sent as the last event of a failed stream).
    pub fn body(&self) -> serde_json::Value {
        serde_json::to_value(ErrorBody {
            error: ErrorFields {
                message: &self.message,
                kind: self.kind,
                param: self.param.as_deref(),
                code: self.code,
            },
        })
        .unwrap_or(serde_json::Value::Null)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body())).into_response();
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_the_openai_shape() {
        let body = ApiError::invalid("messages is empty", Some("messages")).body();
        assert_eq!(
            body,
            serde_json::json!({"error": {"message": "messages is empty",
                "type": "invalid_request_error", "param": "messages", "code": null}})
        );
    }

    #[test]
    fn statuses_map_to_http() {
        let cases = [
            (tonic::Status::invalid_argument("x"), 400),
            (tonic::Status::deadline_exceeded("x"), 504),
            (tonic::Status::unavailable("x"), 503),
            (tonic::Status::resource_exhausted("x"), 429),
            (tonic::Status::internal("x"), 500),
        ];
        for (status, http) in cases {
            assert_eq!(ApiError::from_status(&status).status.as_u16(), http);
        }
        assert_eq!(ApiError::over_capacity("full".into()).status.as_u16(), 429);
    }
}
