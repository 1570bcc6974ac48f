//! What selection is offered: the finished drafts with their answers, and which of them become options
//! (switch (c) drops drafts cut off by the cap). The decision itself is `scot_selection::decide`.

use scot_proto::FinishReason;

/// A finished draft as the coordinator keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectedDraft {
    pub index: u32,
    pub text: String,
    pub token_count: u32,
    pub finish: FinishReason,
    pub elapsed_ms: f64,
    pub node: String,
    /// The answer it votes with (`scot_selection::draft_answer`).
    pub answer: Option<String>,
}

/// Positions (into `drafts`) of the drafts offered to selection, in draft-index order.
pub fn offered_drafts(drafts: &[CollectedDraft], drop_capped: bool) -> Vec<usize> {
    let mut offered: Vec<usize> = (0..drafts.len())
        .filter(|&i| !(drop_capped && drafts[i].finish == FinishReason::Length))
        .collect();
    offered.sort_by_key(|&i| drafts[i].index);
    offered
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft(index: u32, finish: FinishReason) -> CollectedDraft {
        CollectedDraft {
            index,
            text: format!("draft {index}"),
            token_count: 10,
            finish,
            elapsed_ms: 1.0,
            node: "n".into(),
            answer: None,
        }
    }

    #[test]
    fn capped_drafts_are_dropped_only_when_asked() {
        let drafts = vec![
            draft(2, FinishReason::ThinkEnd),
            draft(0, FinishReason::Length),
            draft(1, FinishReason::Eos),
        ];
        assert_eq!(offered_drafts(&drafts, false), vec![1, 2, 0]);
        assert_eq!(offered_drafts(&drafts, true), vec![2, 0]);
    }
}
