//! Refuses, before any drafting, a request whose token caps no node in routing can hold: the longest
//! text each phase may put in one sequence must fit the model's context (with at least one prompt
//! token) and the node's KV budget, as the nodes' load reports give them. The prompt's own length is
//! not known here (it is tokenized on the nodes, which check it exactly); a pool none of whose nodes has
//! reported is not checked.

use scot_proto::{LoadReport, SolveMode};

use crate::validation::{Field, InvalidRequest, SolveSettings};

/// The largest context and KV budget among a pool's reporting nodes in routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolLimits {
    /// Tokens.
    pub context: u64,
    /// Positions; None when some node has no budget (only its context bounds it).
    pub kv_budget: Option<u64>,
}

impl PoolLimits {
    /// None when no node reported.
    pub fn of(reports: &[LoadReport]) -> Option<Self> {
        let context = reports.iter().map(|r| u64::from(r.context_length)).max()?;
        let kv_budget = if reports.iter().any(|r| r.kv_budget_tokens == 0) {
            None
        } else {
            reports.iter().map(|r| r.kv_budget_tokens).max()
        };
        Some(Self { context, kv_budget })
    }
}

/// One phase's longest sequence, beyond its prompt.
struct Need {
    field: Field,
    /// Tokens the caps allow in one sequence.
    tokens: u64,
    /// How `tokens` is made of the caps, for the message.
    made_of: String,
    model: &'static str,
}

/// Ok when every phase the mode runs fits; else the cap to lower, with the numbers.
pub fn check_fit(
    settings: &SolveSettings,
    drafts: Option<PoolLimits>,
    targets: Option<PoolLimits>,
) -> Result<(), InvalidRequest> {
    let (n, draft, thinking, answer) = (
        u64::from(settings.n),
        u64::from(settings.draft_max_tokens),
        u64::from(settings.thinking_max_tokens),
        u64::from(settings.answer_max_tokens),
    );
    let thinks = Need {
        field: Field::ThinkingMaxTokens,
        tokens: thinking + answer,
        made_of: format!("thinking_max_tokens {thinking} + answer_max_tokens {answer}"),
        model: "target",
    };
    let (draft_needs, target_needs) = match settings.mode {
        SolveMode::TargetOnly => (vec![], vec![thinks]),
        SolveMode::DraftOnly => (
            vec![Need {
                field: Field::DraftMaxTokens,
                tokens: draft + answer,
                made_of: format!("draft_max_tokens {draft} + answer_max_tokens {answer}"),
                model: "draft",
            }],
            vec![],
        ),
        SolveMode::Scot | SolveMode::Unspecified => (
            vec![Need {
                field: Field::DraftMaxTokens,
                tokens: draft,
                made_of: format!("draft_max_tokens {draft}"),
                model: "draft",
            }],
            vec![
                Need {
                    field: Field::DraftMaxTokens,
                    tokens: n * draft,
                    made_of: format!(
                        "the selection prompt's {n} drafts of up to draft_max_tokens {draft}"
                    ),
                    model: "target",
                },
                Need {
                    field: Field::AnswerMaxTokens,
                    tokens: draft + answer,
                    made_of: format!(
                        "the accepted draft (draft_max_tokens {draft}) + answer_max_tokens {answer}"
                    ),
                    model: "target",
                },
                thinks,
            ],
        ),
    };
    for (needs, limits) in [(draft_needs, drafts), (target_needs, targets)] {
        let Some(limits) = limits else { continue };
        for need in needs {
            fits(&need, limits)?;
        }
    }
    Ok(())
}

fn fits(need: &Need, limits: PoolLimits) -> Result<(), InvalidRequest> {
    let caps = match need.field {
        Field::DraftMaxTokens => "draft_max_tokens or n",
        Field::AnswerMaxTokens => "draft_max_tokens or answer_max_tokens",
        _ => "thinking_max_tokens or answer_max_tokens",
    };
    if need.tokens >= limits.context {
        return Err(InvalidRequest::new(
            need.field,
            format!(
                ": {} = {} tokens do not fit the {} model's context of {} tokens with the prompt; lower {caps}",
                need.made_of, need.tokens, need.model, limits.context
            ),
        ));
    }
    if let Some(budget) = limits.kv_budget.filter(|&b| need.tokens > b) {
        return Err(InvalidRequest::new(
            need.field,
            format!(
                ": {} = {} tokens exceed the largest KV-cache budget of a {} node ({budget} positions, \
                 --kv-budget-mib); lower {caps}",
                need.made_of, need.tokens, need.model
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SolveDefaults;
    use crate::validation::validate_request;
    use scot_proto::{SolveOptions, SolveRequest};

    fn settings(options: SolveOptions) -> SolveSettings {
        let request = SolveRequest {
            problem: "What is 2 + 2?".into(),
            options: Some(options),
            ..Default::default()
        };
        validate_request(&request, &SolveDefaults::default()).unwrap()
    }

    fn report(context: u32, kv_budget_tokens: u64) -> LoadReport {
        LoadReport {
            context_length: context,
            kv_budget_tokens,
            ..Default::default()
        }
    }

    #[test]
    fn limits_are_the_largest_reported_and_no_budget_wins() {
        assert_eq!(PoolLimits::of(&[]), None);
        let limits = PoolLimits::of(&[report(2048, 10_000), report(4096, 5_000)]);
        assert_eq!(
            limits,
            Some(PoolLimits {
                context: 4096,
                kv_budget: Some(10_000)
            })
        );
        let unbounded = PoolLimits::of(&[report(2048, 0), report(4096, 5_000)]).unwrap();
        assert_eq!(unbounded.kv_budget, None);
    }

    #[test]
    fn the_papers_caps_fit_a_32k_target_and_are_refused_by_a_2k_one_naming_the_numbers() {
        let paper = settings(SolveOptions::default());
        let large = PoolLimits::of(&[report(32_768, 0)]);
        assert_eq!(check_fit(&paper, large, large), Ok(()));

        let small = PoolLimits::of(&[report(2048, 0)]);
        let refused = check_fit(&paper, large, small).unwrap_err();
        assert_eq!(refused.field, Field::DraftMaxTokens);
        let message = refused.to_string();
        assert!(
            message.contains("5 drafts of up to draft_max_tokens 5000 = 25000 tokens")
                && message.contains("target model's context of 2048 tokens"),
            "{message}"
        );
        // The thinking caps are checked for target-only requests too.
        let target_only = settings(SolveOptions {
            mode: SolveMode::TargetOnly as i32,
            ..Default::default()
        });
        let refused = check_fit(&target_only, None, small).unwrap_err();
        assert_eq!(refused.field, Field::ThinkingMaxTokens);
        assert!(
            refused
                .to_string()
                .contains("thinking_max_tokens 20480 + answer_max_tokens 10240 = 30720 tokens"),
            "{refused}"
        );
        // Without reports nothing is refused here (the nodes check each call).
        assert_eq!(check_fit(&paper, None, None), Ok(()));
    }

    #[test]
    fn a_budget_too_small_for_one_phase_is_refused_before_drafting() {
        let caps = settings(SolveOptions {
            n: Some(3),
            draft_max_tokens: Some(100),
            thinking_max_tokens: Some(300),
            answer_max_tokens: Some(50),
            ..Default::default()
        });
        let drafts = PoolLimits::of(&[report(2048, 1000)]);
        let roomy = PoolLimits::of(&[report(2048, 1000)]);
        assert_eq!(check_fit(&caps, drafts, roomy), Ok(()));
        let tight = PoolLimits::of(&[report(2048, 320)]);
        let refused = check_fit(&caps, drafts, tight).unwrap_err();
        assert_eq!(refused.field, Field::ThinkingMaxTokens);
        assert!(
            refused.to_string().contains(
                "= 350 tokens exceed the largest KV-cache budget of a target node (320 positions"
            ),
            "{refused}"
        );
        // Draft-only requests need the draft pool only.
        let draft_only = settings(SolveOptions {
            mode: SolveMode::DraftOnly as i32,
            draft_max_tokens: Some(100),
            answer_max_tokens: Some(50),
            ..Default::default()
        });
        assert_eq!(check_fit(&draft_only, drafts, tight), Ok(()));
        let tiny_drafts = PoolLimits::of(&[report(128, 0)]);
        let refused = check_fit(&draft_only, tiny_drafts, None).unwrap_err();
        assert_eq!(refused.field, Field::DraftMaxTokens);
        assert!(refused.to_string().contains("draft model's context of 128"));
    }
}
