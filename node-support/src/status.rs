//! Engine errors as gRPC statuses: what the request got wrong is INVALID_ARGUMENT, the rest INTERNAL.

use scot_engine::EngineError;
use scot_templates::TemplateError;
use tonic::Status;

pub fn engine_status(error: EngineError) -> Status {
    match error {
        EngineError::ContextOverflow { needed, limit } => Status::invalid_argument(format!(
            "the problem is too long for the model: it needs {needed} tokens of context but the limit \
             is {limit}; shorten the problem or lower the token caps"
        )),
        EngineError::InvalidRequest(message) => Status::invalid_argument(message),
        other => Status::internal(other.to_string()),
    }
}

pub fn template_status(error: TemplateError) -> Status {
    match error {
        TemplateError::UnknownSet { .. } | TemplateError::ThinkMarker { .. } => {
            Status::invalid_argument(error.to_string())
        }
        other => Status::internal(other.to_string()),
    }
}
