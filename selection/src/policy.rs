//! Selection policies: from the drafts' answers and (when asked for) the target's one selection
//! prefill to a decision: continue from draft k, or let the target think.
//!
//! - `paper`: the target's most likely option (the paper's read-out), "all wrong" included.
//! - `debiased`: the same on the probabilities with the target's position prior divided out.
//! - `vote`: when one answer holds at least `min_votes` of the offered drafts, its first draft is
//!   accepted without asking the target; otherwise `paper` decides.
//! - `hybrid`: the vote first; without agreement, `debiased` decides under the threshold (by default
//!   tau = 1: the target thinks).
//!
//! `accept_threshold` (tau) is the lowest probability at which the target's own pick is taken (tau = 1
//! never takes it); agreement does not need it. The selection prefill runs only where its verdict
//! can change the decision: not after agreement (vote, hybrid), and not under tau = 1.

use std::fmt;
use std::str::FromStr;

use crate::votes::AnswerTally;

/// `hybrid`'s threshold when none is configured: without answer agreement, a draft is taken only on
/// the target's (debiased) word at this probability.
pub const HYBRID_DEFAULT_THRESHOLD: f32 = 1.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SelectionPolicy {
    Paper,
    Debiased,
    Vote,
    Hybrid,
}

impl SelectionPolicy {
    pub const ALL: [SelectionPolicy; 4] = [
        SelectionPolicy::Paper,
        SelectionPolicy::Debiased,
        SelectionPolicy::Vote,
        SelectionPolicy::Hybrid,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SelectionPolicy::Paper => "paper",
            SelectionPolicy::Debiased => "debiased",
            SelectionPolicy::Vote => "vote",
            SelectionPolicy::Hybrid => "hybrid",
        }
    }

    /// Whether the policy reads the drafts' answers.
    pub fn uses_votes(self) -> bool {
        matches!(self, SelectionPolicy::Vote | SelectionPolicy::Hybrid)
    }

    /// Whether the policy reads debiased probabilities (where the target has a prior).
    pub fn uses_prior(self) -> bool {
        matches!(self, SelectionPolicy::Debiased | SelectionPolicy::Hybrid)
    }

    /// The valid names, for error messages and help texts.
    pub fn choices() -> String {
        Self::ALL.map(Self::name).join(", ")
    }
}

impl fmt::Display for SelectionPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for SelectionPolicy {
    type Err = InvalidPolicy;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|p| p.name() == name.trim())
            .ok_or_else(|| InvalidPolicy::Unknown(name.to_string()))
    }
}

/// A policy knob out of range; the message names what is accepted (the caller adds the field).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvalidPolicy {
    #[error("unknown selection policy {0:?}: use one of {choices}", choices = SelectionPolicy::choices())]
    Unknown(String),
    #[error("min_votes = {min_votes}: must be between 1 and n = {n}")]
    MinVotes { min_votes: u32, n: u32 },
    #[error(
        "accept_threshold = {0}: must be a probability in [0, 1] (unset = the policy's default)"
    )]
    Threshold(f32),
}

/// A policy with its parameters resolved for a request of n drafts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PolicyParams {
    pub policy: SelectionPolicy,
    /// Drafts that must agree on an answer (vote, hybrid).
    pub min_votes: u32,
    /// Lowest probability at which the target's own pick is taken; None = any.
    pub accept_threshold: Option<f32>,
}

impl PolicyParams {
    /// Three quarters of n (4 of 5), and never a lone draft. A bare majority (3 of 5) let a shared
    /// wrong answer of a weak draft model through (BENCHMARKS.md, "Selection policies").
    pub fn default_min_votes(n: u32) -> u32 {
        (3 * n).div_ceil(4).max(2)
    }

    /// The threshold a policy uses when neither the request nor the server sets one.
    pub fn default_threshold(policy: SelectionPolicy) -> Option<f32> {
        match policy {
            SelectionPolicy::Hybrid => Some(HYBRID_DEFAULT_THRESHOLD),
            _ => None,
        }
    }

    /// tau = 1: the target's own pick is never taken, so its verdict cannot change a decision.
    fn trusts_no_target_pick(&self) -> bool {
        self.accept_threshold.is_some_and(|tau| tau >= 1.0)
    }

    /// The offered positions that agree enough to decide alone (policies that vote).
    fn agreement<'t>(&self, tally: &'t AnswerTally) -> Option<&'t [usize]> {
        if self.policy.uses_votes() {
            tally.agreement(self.min_votes)
        } else {
            None
        }
    }

    /// Checks and fills in the knobs for n drafts (None: the policy's default).
    pub fn resolve(
        policy: SelectionPolicy,
        n: u32,
        min_votes: Option<u32>,
        accept_threshold: Option<f32>,
    ) -> Result<Self, InvalidPolicy> {
        let min_votes = match min_votes {
            Some(v) if v == 0 || v > n.max(1) => {
                return Err(InvalidPolicy::MinVotes { min_votes: v, n })
            }
            Some(v) => v,
            None => Self::default_min_votes(n),
        };
        let accept_threshold = accept_threshold.or(Self::default_threshold(policy));
        if let Some(tau) = accept_threshold {
            if !tau.is_finite() || !(0.0..=1.0).contains(&tau) {
                return Err(InvalidPolicy::Threshold(tau));
            }
        }
        Ok(Self {
            policy,
            min_votes,
            accept_threshold,
        })
    }
}

/// What the target's selection prefill said, options in offered order, "all wrong" last.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TargetVerdict<'a> {
    /// Probabilities renormalised over the options.
    pub probs: &'a [f32],
    /// The same with the position prior divided out; None when the target has no prior for n.
    pub debiased: Option<&'a [f32]>,
}

/// How an accepted draft was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    /// The target's pick.
    Target,
    /// Answer agreement (no selection prefill).
    Votes,
}

impl Basis {
    pub fn name(self) -> &'static str {
        match self {
            Basis::Target => "target",
            Basis::Votes => "votes",
        }
    }
}

/// Why no draft was accepted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RejectReason {
    /// The target's most likely option was "all wrong".
    TargetChoseNone,
    /// The target's pick was under the threshold.
    BelowThreshold { probability: f32, threshold: f32 },
    /// tau = 1 takes no draft on the target's word, and no answer had `min_votes` drafts (None
    /// when the policy does not vote).
    Untrusted { votes: u32, min_votes: Option<u32> },
    /// The policy needed the target's verdict and had none.
    NoVerdict,
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RejectReason::TargetChoseNone => f.write_str("the target chose \"all wrong\""),
            RejectReason::BelowThreshold {
                probability,
                threshold,
            } => write!(
                f,
                "no answer agreement and the best option's probability {probability:.3} was under accept_threshold {threshold}"
            ),
            RejectReason::Untrusted {
                votes,
                min_votes: Some(min_votes),
            } => write!(
                f,
                "no answer agreement ({votes} drafts agreed, {min_votes} needed) and accept_threshold = 1 takes no draft on the target's word"
            ),
            RejectReason::Untrusted {
                min_votes: None, ..
            } => f.write_str("accept_threshold = 1 takes no draft on the target's word"),
            RejectReason::NoVerdict => f.write_str("no selection verdict"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decision {
    /// Continue from option `option` (1-based among the offered drafts).
    Accept { option: u32, basis: Basis },
    /// The target thinks for itself.
    Reject(RejectReason),
}

/// Whether the decision needs the selection prefill: not when answer agreement decides (vote,
/// hybrid), and not when the threshold (tau = 1) would refuse the target's pick anyway.
pub fn needs_target(params: &PolicyParams, tally: &AnswerTally) -> bool {
    params.agreement(tally).is_none() && !params.trusts_no_target_pick()
}

/// The decision of `params` given the offered drafts' answers and the target's verdict (None when
/// [`needs_target`] said no or no selection ran).
pub fn decide(
    params: &PolicyParams,
    tally: &AnswerTally,
    verdict: Option<&TargetVerdict<'_>>,
) -> Decision {
    match params.agreement(tally) {
        Some(members) => Decision::Accept {
            option: members[0] as u32 + 1,
            basis: Basis::Votes,
        },
        None if params.trusts_no_target_pick() => Decision::Reject(RejectReason::Untrusted {
            votes: tally.top_votes(),
            min_votes: params.policy.uses_votes().then_some(params.min_votes),
        }),
        None => match verdict {
            Some(verdict) => {
                let probs = if params.policy.uses_prior() {
                    verdict.debiased.unwrap_or(verdict.probs)
                } else {
                    verdict.probs
                };
                target_pick(probs, params.accept_threshold)
            }
            None => Decision::Reject(RejectReason::NoVerdict),
        },
    }
}

/// The most likely option (ties: the lower number); the last option is "all wrong".
fn target_pick(probs: &[f32], threshold: Option<f32>) -> Decision {
    let Some(best) = (0..probs.len()).reduce(|a, b| if probs[b] > probs[a] { b } else { a }) else {
        return Decision::Reject(RejectReason::NoVerdict);
    };
    if best + 1 == probs.len() {
        return Decision::Reject(RejectReason::TargetChoseNone);
    }
    if let Some(threshold) = threshold {
        if probs[best] < threshold {
            return Decision::Reject(RejectReason::BelowThreshold {
                probability: probs[best],
                threshold,
            });
        }
    }
    Decision::Accept {
        option: best as u32 + 1,
        basis: Basis::Target,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(answers: &[Option<&str>]) -> AnswerTally {
        AnswerTally::count(
            &answers
                .iter()
                .map(|a| a.map(str::to_string))
                .collect::<Vec<_>>(),
        )
    }

    fn params(policy: SelectionPolicy, n: u32) -> PolicyParams {
        PolicyParams::resolve(policy, n, None, None).unwrap()
    }

    fn accept(option: u32, basis: Basis) -> Decision {
        Decision::Accept { option, basis }
    }

    const BIASED: [f32; 4] = [0.5, 0.1, 0.3, 0.1];
    // Position 1's prior is high: with it divided out, draft 3 leads.
    const DEBIASED: [f32; 4] = [0.2, 0.15, 0.55, 0.1];

    #[test]
    fn paper_takes_the_targets_argmax_and_its_none() {
        let p = params(SelectionPolicy::Paper, 3);
        let agree = tally(&[Some("1"), Some("1"), Some("1")]);
        let v = TargetVerdict {
            probs: &BIASED,
            debiased: Some(&DEBIASED),
        };
        assert_eq!(
            decide(&p, &agree, Some(&v)),
            accept(1, Basis::Target),
            "votes are ignored"
        );
        let none = TargetVerdict {
            probs: &[0.2, 0.1, 0.1, 0.6],
            debiased: None,
        };
        assert_eq!(
            decide(&p, &agree, Some(&none)),
            Decision::Reject(RejectReason::TargetChoseNone)
        );
        assert!(needs_target(&p, &agree));
        assert_eq!(
            decide(&p, &agree, None),
            Decision::Reject(RejectReason::NoVerdict)
        );
    }

    #[test]
    fn ties_go_to_the_lower_option() {
        let p = params(SelectionPolicy::Paper, 3);
        let v = TargetVerdict {
            probs: &[0.3, 0.3, 0.3, 0.1],
            debiased: None,
        };
        assert_eq!(decide(&p, &tally(&[]), Some(&v)), accept(1, Basis::Target));
        let h = params(SelectionPolicy::Hybrid, 3);
        let agree = tally(&[Some("2"), Some("2"), Some("2")]);
        assert_eq!(decide(&h, &agree, None), accept(1, Basis::Votes));
    }

    #[test]
    fn debiased_reads_the_debiased_probabilities_and_falls_back_to_raw() {
        let p = params(SelectionPolicy::Debiased, 3);
        let v = TargetVerdict {
            probs: &BIASED,
            debiased: Some(&DEBIASED),
        };
        assert_eq!(decide(&p, &tally(&[]), Some(&v)), accept(3, Basis::Target));
        let raw = TargetVerdict {
            probs: &BIASED,
            debiased: None,
        };
        assert_eq!(
            decide(&p, &tally(&[]), Some(&raw)),
            accept(1, Basis::Target)
        );
    }

    #[test]
    fn the_threshold_turns_weak_picks_into_rejections() {
        let p = PolicyParams::resolve(SelectionPolicy::Paper, 3, None, Some(0.6)).unwrap();
        let v = TargetVerdict {
            probs: &BIASED,
            debiased: None,
        };
        assert_eq!(
            decide(&p, &tally(&[]), Some(&v)),
            Decision::Reject(RejectReason::BelowThreshold {
                probability: 0.5,
                threshold: 0.6
            })
        );
        let p = PolicyParams::resolve(SelectionPolicy::Paper, 3, None, Some(1.0)).unwrap();
        let sure = TargetVerdict {
            probs: &[1.0, 0.0, 0.0, 0.0],
            debiased: None,
        };
        assert!(!needs_target(&p, &tally(&[])), "tau = 1 needs no verdict");
        assert_eq!(
            decide(&p, &tally(&[]), Some(&sure)),
            Decision::Reject(RejectReason::Untrusted {
                votes: 0,
                min_votes: None
            }),
            "tau = 1 always lets the target think"
        );
    }

    #[test]
    fn vote_accepts_agreement_without_the_target() {
        let p = params(SelectionPolicy::Vote, 5);
        assert_eq!(p.min_votes, 4);
        let agree = tally(&[Some("7"), Some("18"), Some("18"), Some("18"), Some("18.0")]);
        assert!(!needs_target(&p, &agree));
        assert_eq!(decide(&p, &agree, None), accept(2, Basis::Votes));
        // No agreement: the target's raw pick decides.
        let split = tally(&[Some("7"), Some("18"), Some("18"), None, Some("3")]);
        assert!(needs_target(&p, &split));
        let v = TargetVerdict {
            probs: &[0.1, 0.1, 0.1, 0.1, 0.5, 0.1],
            debiased: None,
        };
        assert_eq!(decide(&p, &split, Some(&v)), accept(5, Basis::Target));
    }

    #[test]
    fn hybrid_accepts_agreement_and_lets_the_target_think_without_it() {
        let p = params(SelectionPolicy::Hybrid, 3);
        assert_eq!(
            (p.min_votes, p.accept_threshold),
            (3, Some(HYBRID_DEFAULT_THRESHOLD))
        );
        let agree = tally(&[Some("5"), Some("5"), Some("5.0")]);
        assert!(!needs_target(&p, &agree), "agreement decides alone");
        assert_eq!(decide(&p, &agree, None), accept(1, Basis::Votes));
        let split = tally(&[Some("1"), Some("2"), Some("3")]);
        assert!(!needs_target(&p, &split), "tau = 1: no prefill can help");
        let reason = decide(&p, &split, None);
        assert_eq!(
            reason,
            Decision::Reject(RejectReason::Untrusted {
                votes: 1,
                min_votes: Some(3)
            })
        );
        let Decision::Reject(reason) = reason else {
            unreachable!()
        };
        assert!(reason.to_string().contains("1 drafts agreed, 3 needed"));
        // Under a lower threshold the target's debiased pick decides without agreement.
        let lenient = PolicyParams::resolve(SelectionPolicy::Hybrid, 3, None, Some(0.5)).unwrap();
        assert!(needs_target(&lenient, &split));
        let v = TargetVerdict {
            probs: &BIASED,
            debiased: Some(&DEBIASED),
        };
        assert_eq!(decide(&lenient, &split, Some(&v)), accept(3, Basis::Target));
        let strict = PolicyParams::resolve(SelectionPolicy::Hybrid, 3, None, Some(0.6)).unwrap();
        assert!(matches!(
            decide(&strict, &split, Some(&v)),
            Decision::Reject(RejectReason::BelowThreshold { .. })
        ));
    }

    #[test]
    fn the_default_is_three_quarters_of_n_and_never_one() {
        let defaults: Vec<u32> = (1..=8).map(PolicyParams::default_min_votes).collect();
        assert_eq!(defaults, [2, 2, 3, 3, 4, 5, 6, 6]);
    }

    #[test]
    fn capped_or_silent_drafts_do_not_vote() {
        let p = params(SelectionPolicy::Vote, 5);
        let silent = tally(&[None, None, None, None, None]);
        assert!(needs_target(&p, &silent));
        let v = TargetVerdict {
            probs: &[0.1, 0.1, 0.1, 0.1, 0.1, 0.5],
            debiased: None,
        };
        assert_eq!(
            decide(&p, &silent, Some(&v)),
            Decision::Reject(RejectReason::TargetChoseNone)
        );
    }

    #[test]
    fn a_lost_draft_node_leaves_fewer_voters_against_the_requested_majority() {
        // n = 5 asked (4 must agree), two drafts lost with their node: the 3 left can never agree
        // enough, so the target decides; asked with min_votes = 3, all 3 must agree.
        let p = params(SelectionPolicy::Vote, 5);
        let three = tally(&[Some("9"), Some("9"), Some("9")]);
        assert!(needs_target(&p, &three));
        let p = PolicyParams::resolve(SelectionPolicy::Vote, 5, Some(3), None).unwrap();
        assert_eq!(decide(&p, &three, None), accept(1, Basis::Votes));
        let two_of_three = tally(&[Some("9"), Some("8"), Some("9")]);
        assert!(needs_target(&p, &two_of_three));
    }

    #[test]
    fn capped_drafts_without_answers_leave_hybrid_to_the_target() {
        // Every draft hit the cap and states no answer: no votes, so hybrid's threshold rules.
        let p = params(SelectionPolicy::Hybrid, 3);
        let capped = tally(&[None, None, None]);
        assert!(!needs_target(&p, &capped));
        assert!(matches!(
            decide(&p, &capped, None),
            Decision::Reject(RejectReason::Untrusted { votes: 0, .. })
        ));
        let lenient = PolicyParams::resolve(SelectionPolicy::Hybrid, 3, None, Some(0.8)).unwrap();
        let v = TargetVerdict {
            probs: &[0.9, 0.05, 0.03, 0.02],
            debiased: None,
        };
        assert_eq!(
            decide(&lenient, &capped, Some(&v)),
            accept(1, Basis::Target)
        );
    }

    #[test]
    fn one_draft_never_agrees_with_itself_by_default() {
        let p = params(SelectionPolicy::Vote, 1);
        assert_eq!(p.min_votes, 2);
        let one = tally(&[Some("4")]);
        assert!(needs_target(&p, &one));
        let v = TargetVerdict {
            probs: &[0.7, 0.3],
            debiased: None,
        };
        assert_eq!(decide(&p, &one, Some(&v)), accept(1, Basis::Target));
    }

    #[test]
    fn bad_knobs_name_what_is_accepted() {
        let unknown = "fast".parse::<SelectionPolicy>().unwrap_err().to_string();
        assert!(
            unknown.contains("paper, debiased, vote, hybrid"),
            "{unknown}"
        );
        assert_eq!(
            "hybrid".parse::<SelectionPolicy>(),
            Ok(SelectionPolicy::Hybrid)
        );
        let e = PolicyParams::resolve(SelectionPolicy::Vote, 5, Some(6), None).unwrap_err();
        assert_eq!(e.to_string(), "min_votes = 6: must be between 1 and n = 5");
        assert!(PolicyParams::resolve(SelectionPolicy::Vote, 5, Some(0), None).is_err());
        let e = PolicyParams::resolve(SelectionPolicy::Paper, 5, None, Some(1.5)).unwrap_err();
        assert!(e.to_string().contains("[0, 1]"));
        assert!(PolicyParams::resolve(SelectionPolicy::Paper, 5, None, Some(f32::NAN)).is_err());
    }
}
