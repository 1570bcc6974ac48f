//! How the engine ended a sequence, in the contract's words (Draft and Generate report it).

use scot_engine::FinishReason as EngineFinish;
use scot_proto::FinishReason;

/// A stop string can only be the thinking end marker: it is the one stop string a node sets.
pub fn finish_reason(reason: &EngineFinish) -> FinishReason {
    match reason {
        EngineFinish::StopString(_) => FinishReason::ThinkEnd,
        EngineFinish::Eos => FinishReason::Eos,
        EngineFinish::Length => FinishReason::Length,
        EngineFinish::Cancelled => FinishReason::Cancelled,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_engine_finish_has_its_contract_word() {
        assert_eq!(
            finish_reason(&EngineFinish::StopString("</think>".into())),
            FinishReason::ThinkEnd
        );
        assert_eq!(finish_reason(&EngineFinish::Eos), FinishReason::Eos);
        assert_eq!(finish_reason(&EngineFinish::Length), FinishReason::Length);
        assert_eq!(
            finish_reason(&EngineFinish::Cancelled),
            FinishReason::Cancelled
        );
    }
}
