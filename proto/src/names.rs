//! The contract's words: one snake_case label per answer path, finish reason and mode, as HTTP, eval
//! result files, metric labels and logs spell them.

use crate::v1::{AnswerPath, FinishReason, SolveMode};

impl AnswerPath {
    pub fn label(self) -> &'static str {
        match self {
            AnswerPath::Unspecified => "unspecified",
            AnswerPath::DraftAccepted => "draft_accepted",
            AnswerPath::TargetCorrection => "target_correction",
            AnswerPath::TargetFallback => "target_fallback",
            AnswerPath::TargetOnly => "target_only",
            AnswerPath::DraftOnly => "draft_only",
        }
    }

    /// The label of a wire value (unknown values read as unspecified).
    pub fn label_of(path: i32) -> &'static str {
        Self::try_from(path).unwrap_or_default().label()
    }
}

impl FinishReason {
    pub fn label(self) -> &'static str {
        match self {
            FinishReason::Unspecified => "unspecified",
            FinishReason::ThinkEnd => "think_end",
            FinishReason::Length => "length",
            FinishReason::Eos => "eos",
            FinishReason::Cancelled => "cancelled",
        }
    }

    /// The reason a label names.
    pub fn from_label(label: &str) -> Option<Self> {
        [
            FinishReason::Unspecified,
            FinishReason::ThinkEnd,
            FinishReason::Length,
            FinishReason::Eos,
            FinishReason::Cancelled,
        ]
        .into_iter()
        .find(|reason| reason.label() == label)
    }

    /// The label of a wire value (unknown values read as unspecified).
    pub fn label_of(reason: i32) -> &'static str {
        Self::try_from(reason).unwrap_or_default().label()
    }

    /// Whether the text ended on its own (end of thinking or of sequence), not at its cap or
    /// cancelled: only then is its last statement its final answer.
    pub fn ended_on_its_own(self) -> bool {
        matches!(self, FinishReason::ThinkEnd | FinishReason::Eos)
    }
}

impl SolveMode {
    /// The JSON spelling (`scot`, `target_only`, `draft_only`); unspecified means SCoT.
    pub fn label(self) -> &'static str {
        match self {
            SolveMode::Unspecified | SolveMode::Scot => "scot",
            SolveMode::TargetOnly => "target_only",
            SolveMode::DraftOnly => "draft_only",
        }
    }

    /// The mode a JSON label names.
    pub fn from_label(label: &str) -> Option<Self> {
        [SolveMode::Scot, SolveMode::TargetOnly, SolveMode::DraftOnly]
            .into_iter()
            .find(|mode| mode.label() == label)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_snake_case_and_round_trip() {
        assert_eq!(AnswerPath::label_of(2), "target_correction");
        assert_eq!(AnswerPath::label_of(99), "unspecified");
        assert_eq!(
            FinishReason::label_of(FinishReason::Length as i32),
            "length"
        );
        for mode in [SolveMode::Scot, SolveMode::TargetOnly, SolveMode::DraftOnly] {
            assert_eq!(SolveMode::from_label(mode.label()), Some(mode));
        }
        assert_eq!(SolveMode::from_label("target-only"), None);
    }
}
