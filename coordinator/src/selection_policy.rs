//! What selection is offered and how its answer is read: which drafts become options (switch (c) drops
//! drafts cut off by the cap) and whether the chosen option is taken (switch (b), threshold tau).

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
}

/// Positions (into `drafts`) of the drafts offered to selection, in draft-index order.
pub fn offered_drafts(drafts: &[CollectedDraft], drop_capped: bool) -> Vec<usize> {
    let mut offered: Vec<usize> = (0..drafts.len())
        .filter(|&i| !(drop_capped && drafts[i].finish == FinishReason::Length))
        .collect();
    offered.sort_by_key(|&i| drafts[i].index);
    offered
}

/// The outcome of selection after the threshold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decision {
    /// Option `option` (1-based among the offered drafts) is taken.
    Accept { option: u32 },
    /// No draft is taken: the model chose "all wrong", or the best option's probability was under tau.
    None { below_threshold: bool },
}

/// Reads the target's choice among `offered` drafts (+1 for "none"). With tau set, a draft is taken only
/// when its probability is at least tau; tau = 1 always means "none" (a probability renormalised over
/// the options can round to 1.0 but is never certainty, and tau = 1 is how a caller forces the
/// correction path).
pub fn decide(chosen: u32, option_probs: &[f32], offered: usize, tau: Option<f32>) -> Decision {
    let is_draft = chosen >= 1 && (chosen as usize) <= offered;
    if !is_draft {
        return Decision::None {
            below_threshold: false,
        };
    }
    if let Some(tau) = tau {
        let p = option_probs
            .get(chosen as usize - 1)
            .copied()
            .unwrap_or(0.0);
        if tau >= 1.0 || p < tau {
            return Decision::None {
                below_threshold: true,
            };
        }
    }
    Decision::Accept { option: chosen }
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

    #[test]
    fn threshold_turns_weak_choices_into_none() {
        let probs = [0.6, 0.3, 0.1];
        assert_eq!(decide(1, &probs, 2, None), Decision::Accept { option: 1 });
        assert_eq!(
            decide(1, &probs, 2, Some(0.5)),
            Decision::Accept { option: 1 }
        );
        assert_eq!(
            decide(1, &probs, 2, Some(0.7)),
            Decision::None {
                below_threshold: true
            }
        );
        assert_eq!(
            decide(1, &[1.0, 0.0, 0.0], 2, Some(1.0)),
            Decision::None {
                below_threshold: true
            }
        );
        assert_eq!(
            decide(3, &probs, 2, None),
            Decision::None {
                below_threshold: false
            }
        );
        assert_eq!(
            decide(0, &probs, 2, None),
            Decision::None {
                below_threshold: false
            }
        );
    }
}
