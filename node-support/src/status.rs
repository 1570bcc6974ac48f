//! Engine errors as gRPC statuses: what the request got wrong is INVALID_ARGUMENT, a failed
//! tensor-parallel rank UNAVAILABLE (the node is stopping; another node can serve), the rest INTERNAL.

use scot_engine::EngineError;
use scot_templates::TemplateError;
use tonic::Status;

use crate::node_failure::RankFailure;

pub fn engine_status(error: EngineError) -> Status {
    match error {
        EngineError::ContextOverflow { needed, limit } => Status::invalid_argument(format!(
            "the problem is too long for the model: it needs {needed} tokens of context but the limit \
             is {limit}; shorten the problem or lower the token caps"
        )),
        EngineError::InvalidRequest(message) => Status::invalid_argument(message),
        EngineError::Cancelled => {
            Status::cancelled("cancelled: the caller's deadline passed or it stopped waiting")
        }
        EngineError::RankFailed { rank, reason } => RankFailure {
            rank,
            message: format!(
                "tensor-parallel rank {rank} failed: {reason}; the node is stopping"
            ),
        }
        .status(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_rank_is_unavailable_and_named() {
        let status = engine_status(EngineError::RankFailed {
            rank: 2,
            reason: "injected".into(),
        });
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert!(status.message().contains("rank 2 failed: injected"));
        assert_eq!(RankFailure::from_status(&status).map(|f| f.rank), Some(2));
    }
}
