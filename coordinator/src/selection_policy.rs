//! What selection is offered: the finished drafts, and which of them become options (switch (c) drops
//! drafts cut off by the cap). The decision itself is `scot_selection::decide`.

use scot_proto::FinishReason;

use crate::draft_board::DraftRecord;

/// Positions (into `drafts`) of the finished drafts offered to selection, in draft-index order.
pub fn offered_drafts(drafts: &[DraftRecord], drop_capped: bool) -> Vec<usize> {
    let mut offered: Vec<usize> = (0..drafts.len())
        .filter(|&i| drafts[i].is_finished())
        .filter(|&i| !(drop_capped && drafts[i].finish() == FinishReason::Length))
        .collect();
    offered.sort_by_key(|&i| drafts[i].info.index);
    offered
}

#[cfg(test)]
mod tests {
    use scot_proto::DraftInfo;

    use super::*;

    fn draft(index: u32, finish: FinishReason) -> DraftRecord {
        DraftRecord {
            info: DraftInfo {
                index,
                token_count: 10,
                finish_reason: finish as i32,
                ..Default::default()
            },
            text: (finish != FinishReason::Cancelled).then(|| format!("draft {index}")),
        }
    }

    #[test]
    fn capped_drafts_are_dropped_only_when_asked_and_cut_off_ones_never_offered() {
        let drafts = vec![
            draft(2, FinishReason::ThinkEnd),
            draft(0, FinishReason::Length),
            draft(1, FinishReason::Eos),
            draft(3, FinishReason::Cancelled),
        ];
        assert_eq!(offered_drafts(&drafts, false), vec![1, 2, 0]);
        assert_eq!(offered_drafts(&drafts, true), vec![2, 0]);
    }
}
