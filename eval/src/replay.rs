//! `scot report --replay`: every stored SCoT problem decided again under other selection policies and
//! parameters, offline, with the same `scot_selection::decide` the coordinator runs live.
//!
//! A scot line keeps each draft's text, the target's option probabilities (raw log-probs, and the
//! debiased ones when the target had a prior) and its live outcome. Re-deciding it needs no model:
//! - an accepted draft is graded by the answer it states (or, where the live run accepted the same
//!   draft, by the live answer);
//! - a rejection (the target thinks from scratch, greedily) is graded by the target-only line of the
//!   same problem, which is the same computation (or by the live correction itself).
//!
//! Latency comes from the cost model (`--costs`), per problem, from the problem's own token counts.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use scot_answers::answers_equal;
use scot_client::Mode;
use scot_proto::AnswerPath;
use scot_selection::{
    decide, draft_answer, needs_target, AnswerTally, Decision, PolicyParams, SelectionPolicy,
    SelectionPrior, TargetVerdict,
};
use serde::Serialize;

use crate::cost_check::MeasuredCosts;
use crate::cost_model::{predict, Workload};
use crate::error::EvalError;
use crate::results::{mode_group, DraftRecord, ModeGroups, ResultLine};

/// One policy with its knobs, as `--replay-setting` spells it: `hybrid:min_votes=3:tau=0.5:prior=off`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReplaySetting {
    pub policy: SelectionPolicy,
    pub min_votes: Option<u32>,
    pub threshold: Option<f32>,
    /// Debiased probabilities (stored, or from `--prior`) are used; off = raw only.
    pub prior: bool,
}

impl ReplaySetting {
    pub fn new(policy: SelectionPolicy) -> Self {
        Self {
            policy,
            min_votes: None,
            threshold: None,
            prior: true,
        }
    }

    pub fn label(&self) -> String {
        let mut label = self.policy.name().to_string();
        if let Some(v) = self.min_votes {
            let _ = write!(label, " min_votes={v}");
        }
        if let Some(t) = self.threshold {
            let _ = write!(label, " tau={t}");
        }
        if self.policy.uses_prior() && !self.prior {
            label.push_str(" prior=off");
        }
        label
    }

    /// The settings `--replay` tries when none are named: each policy's default, the knobs that
    /// trade acceptance for accuracy, and the prior on and off.
    pub fn default_grid() -> Vec<Self> {
        use SelectionPolicy::*;
        let mut grid = Vec::new();
        for tau in [None, Some(0.35), Some(0.5)] {
            grid.push(Self {
                threshold: tau,
                ..Self::new(Paper)
            });
            for prior in [true, false] {
                grid.push(Self {
                    threshold: tau,
                    prior,
                    ..Self::new(Debiased)
                });
            }
        }
        for votes in [2, 3, 4, 5] {
            grid.push(Self {
                min_votes: Some(votes),
                ..Self::new(Vote)
            });
            for tau in [None, Some(0.5), Some(0.35)] {
                grid.push(Self {
                    min_votes: Some(votes),
                    threshold: tau,
                    ..Self::new(Hybrid)
                });
            }
        }
        grid
    }
}

impl FromStr for ReplaySetting {
    type Err = String;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let mut parts = spec.split(':');
        let policy = parts
            .next()
            .unwrap_or_default()
            .parse::<SelectionPolicy>()
            .map_err(|e| e.to_string())?;
        let mut setting = Self::new(policy);
        for part in parts {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?}: expected key=value (min_votes, tau, prior)"))?;
            let bad = |what: &str| format!("{part:?}: {what}");
            match key {
                "min_votes" => {
                    setting.min_votes = Some(value.parse().map_err(|_| bad("not a count"))?)
                }
                "tau" => setting.threshold = Some(value.parse().map_err(|_| bad("not a number"))?),
                "prior" => {
                    setting.prior = match value {
                        "on" => true,
                        "off" => false,
                        _ => return Err(bad("use prior=on or prior=off")),
                    }
                }
                _ => return Err(bad("unknown key; use min_votes, tau or prior")),
            }
        }
        Ok(setting)
    }
}

/// The outcome of one setting on one data set.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplayRow {
    pub dataset: String,
    pub setting: String,
    /// Problems decided (the others are in `skipped`).
    pub problems: usize,
    /// Problems that could not be re-decided: no stored drafts, no verdict where one was needed,
    /// or no target answer for a rejection.
    pub skipped: usize,
    pub accuracy: f64,
    /// Accepted drafts / problems.
    pub acceptance: f64,
    /// Correct answers among accepted drafts.
    pub accepted_accuracy: Option<f64>,
    /// Among problems with at least one correct offered draft: a correct draft was accepted (the
    /// paper's selection accuracy).
    pub selection_accuracy: Option<f64>,
    /// Among problems with no correct offered draft: the target thought instead.
    pub none_when_none: Option<f64>,
    /// Share of problems where the target's selection prefill runs.
    pub scored: f64,
    /// Cost-model chain-of-thought latency (s) and r = target-only / this (with `--costs`).
    pub predicted_cot_s: Option<f64>,
    pub predicted_r: Option<f64>,
    pub predicted_e2e_s: Option<f64>,
    /// Problems whose decision equals the live one.
    pub same_as_live: usize,
    /// Target-only on the same problems: accuracy (where its line exists) and predicted latency.
    pub target_accuracy: Option<f64>,
    pub predicted_target_e2e_s: Option<f64>,
}

/// What one problem came to under a setting.
struct Replayed {
    accepted: bool,
    correct: bool,
    scored: bool,
    any_correct_draft: bool,
    same_as_live: bool,
    cot_s: Option<f64>,
    e2e_s: Option<f64>,
    target_cot_s: Option<f64>,
    target_e2e_s: Option<f64>,
    target_correct: Option<bool>,
}

/// Whether an extracted answer is the gold one.
fn is_gold(answer: &Option<String>, gold: &str) -> bool {
    answer.as_deref().is_some_and(|a| answers_equal(a, gold))
}

/// The row whose target-only figures stand for a data set's replay: the setting that replayed the
/// most problems (settings that need stored verdicts or votes may skip some).
pub fn target_reference<'r>(
    rows: impl IntoIterator<Item = &'r ReplayRow>,
) -> Option<&'r ReplayRow> {
    rows.into_iter()
        .max_by_key(|r| (r.problems, std::cmp::Reverse(r.skipped)))
}

/// The offered drafts in option order, with the answers they vote with.
fn offered(line: &ResultLine) -> Vec<(&DraftRecord, Option<String>)> {
    let mut drafts: Vec<&DraftRecord> = line.drafts.iter().filter(|d| d.offered).collect();
    drafts.sort_by_key(|d| d.index);
    drafts
        .into_iter()
        .map(|d| {
            let answer = if d.text.is_empty() {
                d.answer.clone()
            } else {
                draft_answer(&d.text, d.ended_on_its_own())
            };
            (d, answer)
        })
        .collect()
}

/// Whether the line kept its drafts' texts or answers (lines written before `scot eval` kept them
/// carry only token counts: their votes cannot be replayed).
fn keeps_draft_answers(line: &ResultLine) -> bool {
    line.drafts
        .iter()
        .any(|d| !d.text.is_empty() || d.answer.is_some())
}

/// The draft the live run accepted; lines from before `chosen_draft` name it by its option number.
fn live_accepted_draft(
    line: &ResultLine,
    drafts: &[(&DraftRecord, Option<String>)],
) -> Option<u32> {
    if !line.took(AnswerPath::DraftAccepted) {
        return None;
    }
    line.chosen_draft.or_else(|| {
        (line.chosen as usize)
            .checked_sub(1)
            .and_then(|i| drafts.get(i))
            .map(|(d, _)| d.index)
    })
}

fn replay_one(
    line: &ResultLine,
    target_only: Option<&ResultLine>,
    setting: &ReplaySetting,
    priors: &[SelectionPrior],
    costs: Option<&MeasuredCosts>,
) -> Option<Replayed> {
    let drafts = offered(line);
    let answers_kept = keeps_draft_answers(line);
    if drafts.is_empty() || (setting.policy.uses_votes() && !answers_kept) {
        return None;
    }
    let n = drafts.len() as u32;
    let params = PolicyParams::resolve(
        setting.policy,
        n,
        setting.min_votes.map(|v| v.min(n)),
        setting.threshold,
    )
    .ok()?;
    let answers: Vec<Option<String>> = drafts.iter().map(|(_, a)| a.clone()).collect();
    let tally = AnswerTally::count(&answers);
    let scored = needs_target(&params, &tally);
    let debiased: Option<Vec<f32>> = if !setting.prior || line.option_probs.is_empty() {
        None
    } else if !line.debiased_probs.is_empty() {
        Some(line.debiased_probs.clone())
    } else {
        priors
            .iter()
            .filter(|p| p.n == n)
            .find_map(|p| p.debias(&line.option_probs))
    };
    let verdict = (scored && line.option_probs.len() == drafts.len() + 1).then(|| TargetVerdict {
        probs: &line.option_probs,
        debiased: debiased.as_deref(),
    });
    if scored && verdict.is_none() {
        return None;
    }
    let decision = decide(&params, &tally, verdict.as_ref());
    let draft_correct = |answer: &Option<String>| is_gold(answer, &line.gold);
    let any_correct_draft = answers.iter().any(draft_correct);
    let live_accepted = live_accepted_draft(line, &drafts);
    let (accepted, correct, same_as_live) = match decision {
        Decision::Accept { option, .. } => {
            let (draft, answer) = &drafts[option as usize - 1];
            let correct = if live_accepted == Some(draft.index) {
                line.correct
            } else if answers_kept {
                draft_correct(answer)
            } else {
                return None; // another draft than the live one, and no answer stored to grade it
            };
            (true, correct, live_accepted == Some(draft.index))
        }
        Decision::Reject(_) => {
            let correct = match target_only {
                Some(t) => t.correct,
                None if line.took(AnswerPath::TargetCorrection) => line.correct,
                None => return None,
            };
            (false, correct, line.took(AnswerPath::TargetCorrection))
        }
    };
    let prediction = costs.and_then(|costs| {
        let base = target_only?;
        let problem_tokens = f64::from(base.target_prompt_tokens);
        let tokens: Vec<f64> = drafts.iter().map(|(d, _)| f64::from(d.tokens)).collect();
        let draft_sum: f64 = tokens.iter().sum();
        let select_prompt = f64::from(line.target_prompt_tokens.saturating_sub(line.prompt_tokens));
        let workload = Workload {
            n: drafts.len(),
            problem_tokens,
            selection_overhead_tokens: if line.scored_by_target() {
                (select_prompt - problem_tokens - draft_sum).max(0.0)
            } else {
                0.0
            },
            draft_tokens_mean: draft_sum / tokens.len() as f64,
            draft_tokens_longest: line
                .drafts
                .iter()
                .map(|d| f64::from(d.tokens))
                .fold(0.0, f64::max),
            target_thinking_tokens: f64::from(base.target_thinking_tokens),
            answer_tokens: f64::from(base.answer_tokens),
            accept_rate: if accepted { 1.0 } else { 0.0 },
            selection_share: if scored { 1.0 } else { 0.0 },
        };
        Some(predict(
            &costs.draft,
            &costs.target,
            &workload,
            &costs.deployment,
        ))
    });
    Some(Replayed {
        accepted,
        correct,
        scored,
        any_correct_draft,
        same_as_live,
        cot_s: prediction.map(|p| p.scot_cot_s),
        e2e_s: prediction.map(|p| p.scot_e2e_s),
        target_cot_s: prediction.map(|p| p.target_cot_s),
        target_e2e_s: prediction.map(|p| p.target_e2e_s),
        target_correct: target_only.map(|t| t.correct),
    })
}

fn share(part: usize, whole: usize) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// Replays `settings` on every data set's latest scot lines (`groups` as `latest_successful` gives
/// them, keyed by (data set, mode)).
pub fn replay(
    groups: &ModeGroups,
    settings: &[ReplaySetting],
    priors: &[SelectionPrior],
    costs: Option<&MeasuredCosts>,
) -> Vec<ReplayRow> {
    let mut rows = Vec::new();
    for ((dataset, mode), scot) in groups {
        if mode != Mode::Scot.name() {
            continue;
        }
        let baseline: HashMap<&str, &ResultLine> = mode_group(groups, dataset, Mode::TargetOnly)
            .map(|lines| lines.iter().map(|l| (l.id.as_str(), l)).collect())
            .unwrap_or_default();
        for setting in settings {
            let results: Vec<Replayed> = scot
                .iter()
                .filter_map(|l| {
                    replay_one(
                        l,
                        baseline.get(l.id.as_str()).copied(),
                        setting,
                        priors,
                        costs,
                    )
                })
                .collect();
            rows.push(summarise(dataset, setting.label(), scot.len(), &results));
        }
    }
    rows
}

fn summarise(dataset: &str, setting: String, total: usize, results: &[Replayed]) -> ReplayRow {
    let n = results.len();
    let count = |f: &dyn Fn(&Replayed) -> bool| results.iter().filter(|r| f(r)).count();
    let accepted = count(&|r| r.accepted);
    let with_correct = count(&|r| r.any_correct_draft);
    let without_correct = n - with_correct;
    let mean = |f: &dyn Fn(&Replayed) -> Option<f64>| -> Option<f64> {
        let values: Vec<f64> = results.iter().filter_map(f).collect();
        (values.len() == n && n > 0).then(|| values.iter().sum::<f64>() / n as f64)
    };
    let cot = mean(&|r| r.cot_s);
    let target_cot = mean(&|r| r.target_cot_s);
    ReplayRow {
        dataset: dataset.to_string(),
        setting,
        problems: n,
        skipped: total - n,
        accuracy: share(count(&|r| r.correct), n).unwrap_or(0.0),
        acceptance: share(accepted, n).unwrap_or(0.0),
        accepted_accuracy: share(count(&|r| r.accepted && r.correct), accepted),
        selection_accuracy: share(
            count(&|r| r.any_correct_draft && r.accepted && r.correct),
            with_correct,
        ),
        none_when_none: share(
            count(&|r| !r.any_correct_draft && !r.accepted),
            without_correct,
        ),
        scored: share(count(&|r| r.scored), n).unwrap_or(0.0),
        predicted_cot_s: cot,
        predicted_r: cot.zip(target_cot).map(|(s, t)| t / s),
        predicted_e2e_s: mean(&|r| r.e2e_s),
        same_as_live: count(&|r| r.same_as_live),
        target_accuracy: {
            let known: Vec<bool> = results.iter().filter_map(|r| r.target_correct).collect();
            share(known.iter().filter(|c| **c).count(), known.len())
        },
        predicted_target_e2e_s: mean(&|r| r.target_e2e_s),
    }
}

fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_string(), |v| format!("{:.1}%", 100.0 * v))
}

/// What limits any policy on one data set: how often drafts state an answer, how often they are right,
/// and how often and how reliably they agree.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DraftFacts {
    pub problems: usize,
    pub drafts: usize,
    /// Drafts with an answer to vote with.
    pub answered: usize,
    /// Drafts that ended on their own (end of thinking or end of sequence), not at the cap.
    pub finished: usize,
    /// Finished drafts whose text states the answer (boxed or "the answer is"), no last-number guess.
    pub finished_stating: usize,
    pub correct: usize,
    /// Problems with at least one correct offered draft.
    pub problems_with_a_correct_draft: usize,
    /// Per k = 2..=5: problems whose leading answer holds at least k drafts, and how many of those
    /// leading answers are right.
    pub agreement: Vec<(u32, usize, usize)>,
}

/// Facts about the drafts of one data set's scot lines (lines without stored drafts are left out).
pub fn draft_facts(scot: &[ResultLine]) -> DraftFacts {
    let mut facts = DraftFacts {
        problems: 0,
        drafts: 0,
        answered: 0,
        finished: 0,
        finished_stating: 0,
        correct: 0,
        problems_with_a_correct_draft: 0,
        agreement: (2..=5).map(|k| (k, 0, 0)).collect(),
    };
    for line in scot {
        let drafts = offered(line);
        if drafts.is_empty() || !keeps_draft_answers(line) {
            continue;
        }
        facts.problems += 1;
        let right = |a: &Option<String>| is_gold(a, &line.gold);
        let mut any_right = false;
        for (draft, answer) in &drafts {
            facts.drafts += 1;
            facts.answered += usize::from(answer.is_some());
            facts.correct += usize::from(right(answer));
            any_right |= right(answer);
            if draft.ended_on_its_own() {
                facts.finished += 1;
                facts.finished_stating +=
                    usize::from(scot_answers::stated_answer(&draft.text).is_some());
            }
        }
        facts.problems_with_a_correct_draft += usize::from(any_right);
        let answers: Vec<Option<String>> = drafts.iter().map(|(_, a)| a.clone()).collect();
        let tally = AnswerTally::count(&answers);
        if let Some((leader, members)) = tally.leader() {
            let leader_right = answers_equal(leader, &line.gold);
            for (k, agreeing, right) in facts.agreement.iter_mut() {
                if members.len() as u32 >= *k {
                    *agreeing += 1;
                    *right += usize::from(leader_right);
                }
            }
        }
    }
    facts
}

fn draft_facts_markdown(f: &DraftFacts) -> String {
    if f.problems == 0 {
        return "- drafts: no line keeps its drafts' texts or answers (written before `scot eval` kept them): settings that vote are skipped, and a pick other than the live one cannot be graded\n".to_string();
    }
    let of = |part: usize, whole: usize| format!("{part}/{whole} ({})", pct(share(part, whole)));
    let mut out = format!(
        "- drafts: {} offered over {} problems; with an answer to vote with {}; correct {}; problems with at least one correct draft {}\n- drafts that ended on their own: {}, of which state their answer (boxed or \"the answer is\") {}\n",
        f.drafts,
        f.problems,
        of(f.answered, f.drafts),
        of(f.correct, f.drafts),
        of(f.problems_with_a_correct_draft, f.problems),
        of(f.finished, f.drafts),
        of(f.finished_stating, f.finished),
    );
    let agreement: Vec<String> = f
        .agreement
        .iter()
        .map(|(k, agreeing, right)| {
            format!(
                ">= {k}: {} of problems, leading answer right in {}",
                pct(share(*agreeing, f.problems)),
                of(*right, *agreeing)
            )
        })
        .collect();
    let _ = writeln!(out, "- answer agreement: {}", agreement.join("; "));
    out
}

/// Markdown: one table per data set, one row per setting, target-only's accuracy above it.
pub fn replay_markdown(rows: &[ReplayRow], groups: &ModeGroups) -> String {
    let mut out =
        String::from("## Replay: every stored problem re-decided per selection setting\n\n");
    let mut by_dataset: BTreeMap<&str, Vec<&ReplayRow>> = BTreeMap::new();
    for row in rows {
        by_dataset
            .entry(row.dataset.as_str())
            .or_default()
            .push(row);
    }
    for (dataset, rows) in by_dataset {
        let _ = writeln!(out, "### {dataset}\n");
        for mode in [Mode::TargetOnly, Mode::DraftOnly, Mode::Scot] {
            if let Some(lines) = mode_group(groups, dataset, mode) {
                let correct = lines.iter().filter(|l| l.correct).count();
                let live = if mode == Mode::Scot {
                    lines
                        .first()
                        .map(|l| match l.selection_policy.as_str() {
                            // Lines from before selection policies: the paper's read-out ran.
                            "" => ", live policy paper".to_string(),
                            policy => format!(", live policy {policy}"),
                        })
                        .unwrap_or_default()
                } else {
                    String::new()
                };
                let _ = writeln!(
                    out,
                    "- {} (live): {:.1}% of {} problems{live}",
                    mode.name(),
                    100.0 * correct as f64 / lines.len().max(1) as f64,
                    lines.len()
                );
            }
        }
        if let Some(lines) = mode_group(groups, dataset, Mode::Scot) {
            out.push_str(&draft_facts_markdown(&draft_facts(lines)));
        }
        out.push_str("\n| setting | problems | skipped | accuracy | acceptance | accepted correct | selection accuracy | none when none | target scores | predicted CoT s | predicted r | same as live |\n");
        out.push_str("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
        if let Some(first) = target_reference(rows.iter().copied()) {
            let _ = writeln!(
                out,
                "| target-only (same problems) | {} | | {} | | | | | | {} | 1.00 | |",
                first.problems,
                pct(first.target_accuracy),
                first
                    .predicted_target_e2e_s
                    .map_or("–".into(), |v| format!("{v:.2} (e2e)")),
            );
        }
        for r in rows {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.1}% | {:.1}% | {} | {} | {} | {:.0}% | {} | {} | {} |",
                r.setting,
                r.problems,
                r.skipped,
                100.0 * r.accuracy,
                100.0 * r.acceptance,
                pct(r.accepted_accuracy),
                pct(r.selection_accuracy),
                pct(r.none_when_none),
                100.0 * r.scored,
                r.predicted_cot_s.map_or("–".into(), |v| format!("{v:.2}")),
                r.predicted_r.map_or("–".into(), |v| format!("{v:.2}")),
                r.same_as_live,
            );
        }
        out.push('\n');
    }
    out.push_str("Accepted drafts are graded by the answer they state (the live answer where the live run accepted the same draft); rejections by the target-only line of the same problem (the target's own greedy thinking). Selection accuracy: a correct draft accepted, among problems with at least one correct offered draft. None when none: the target thought, among problems with no correct offered draft. Predicted latency: the cost model (`--costs`) per problem from its own token counts; r = predicted target-only CoT / predicted SCoT CoT.\n");
    out
}

/// Reads `--prior` files.
pub fn load_priors(paths: &[PathBuf]) -> Result<Vec<SelectionPrior>, EvalError> {
    paths
        .iter()
        .map(|p| SelectionPrior::load(p).map_err(|e| EvalError::InvalidArgument(e.to_string())))
        .collect()
}

/// The replay's rows of one data set as `(label, accuracy %, x)` points for the frontier plot.
pub fn frontier_points(rows: &[&ReplayRow]) -> Vec<(String, f64, f64)> {
    rows.iter()
        .map(|r| {
            (
                r.setting.clone(),
                100.0 * r.accuracy,
                r.predicted_e2e_s.unwrap_or(100.0 * r.acceptance),
            )
        })
        .collect()
}

/// Where the frontier PNG of a data set goes.
pub fn frontier_path(out_dir: &Path, dataset: &str) -> PathBuf {
    out_dir.join(format!("{dataset}-replay-frontier.png"))
}
