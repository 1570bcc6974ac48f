//! Checks the cost model against a measured run: the workload (draft lengths, acceptance, the
//! target's thinking length) comes from one data set's scot and target-only result lines, the
//! per-token costs from a JSON file measured separately (the engine benchmark), and the prediction
//! is set beside the phase times the coordinator measured on the same problems.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::cost_model::{predict, Deployment, ModelCosts, Prediction, Workload};
use crate::error::EvalError;
use crate::results::{acceptance_rate, ResultLine};

/// The per-token costs and the deployment the measured run used (`scot report --costs FILE`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeasuredCosts {
    pub draft: ModelCosts,
    pub target: ModelCosts,
    pub deployment: Deployment,
    /// Where the costs come from (printed under the table).
    #[serde(default)]
    pub source: String,
}

impl MeasuredCosts {
    pub fn from_file(path: &Path) -> Result<Self, EvalError> {
        let text = std::fs::read_to_string(path).map_err(|source| EvalError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|e| EvalError::BadLine {
            path: path.to_path_buf(),
            line: e.line(),
            message: format!("not a cost file (draft, target, deployment): {e}"),
        })
    }
}

/// Mean phase times of the problems both modes answered (in a [`Prediction`]'s shape, so the two
/// sit side by side), and the workload they imply.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MeasuredRun {
    pub problems: usize,
    pub workload: Workload,
    pub phases: Prediction,
}

/// Mean of `values`, 0 when there are none (every caller has at least one paired problem).
fn mean(values: impl Iterator<Item = f64>) -> f64 {
    crate::stats::mean(values).unwrap_or(0.0)
}

/// Pairs `scot` and `target_only` lines by id (answered ones only) and measures them; None when
/// no problem was answered in both modes or no scot line carries drafts.
pub fn measure_run(scot: &[ResultLine], target_only: &[ResultLine]) -> Option<MeasuredRun> {
    let baseline: HashMap<&str, &ResultLine> = target_only
        .iter()
        .filter(|l| l.succeeded())
        .map(|l| (l.id.as_str(), l))
        .collect();
    let pairs: Vec<(&ResultLine, &ResultLine)> = scot
        .iter()
        .filter(|l| l.succeeded() && !l.drafts.is_empty())
        .filter_map(|l| baseline.get(l.id.as_str()).map(|b| (l, *b)))
        .collect();
    if pairs.is_empty() {
        return None;
    }
    let s = || pairs.iter().map(|(s, _)| *s);
    let t = || pairs.iter().map(|(_, t)| *t);
    let n = s().map(|l| l.drafts.len()).max().unwrap_or(1);
    let problem_tokens = mean(t().map(|l| f64::from(l.target_prompt_tokens)));
    let draft_tokens_mean = mean(s().flat_map(|l| l.drafts.iter().map(|d| f64::from(d.tokens))));
    let draft_tokens_longest = mean(s().map(|l| {
        l.drafts
            .iter()
            .map(|d| f64::from(d.tokens))
            .fold(0.0, f64::max)
    }));
    let selected: Vec<&ResultLine> = s().filter(|l| l.selection_ran()).collect();
    let scored: Vec<&ResultLine> = s().filter(|l| l.scored_by_target()).collect();
    // Whatever the selection prompt holds beyond the problem and n mean drafts: instructions,
    // numbering, and the drafts' deviation from the mean.
    let selection_overhead_tokens = if scored.is_empty() {
        0.0
    } else {
        mean(scored.iter().map(|l| f64::from(l.target_prompt_tokens)))
            - problem_tokens
            - n as f64 * draft_tokens_mean
    };
    let workload = Workload {
        n,
        problem_tokens,
        selection_overhead_tokens,
        draft_tokens_mean,
        draft_tokens_longest,
        target_thinking_tokens: mean(t().map(|l| f64::from(l.target_thinking_tokens))),
        answer_tokens: mean(
            pairs
                .iter()
                .flat_map(|(s, t)| [f64::from(s.answer_tokens), f64::from(t.answer_tokens)]),
        ),
        accept_rate: acceptance_rate(selected.iter().copied()).unwrap_or(0.0),
        selection_share: s().filter(|l| l.scored_by_target()).count() as f64 / pairs.len() as f64,
    };
    let secs = |ms: f64| ms / 1e3;
    let (scot_cot_s, scot_e2e_s) = (
        secs(mean(s().map(ResultLine::cot_ms))),
        secs(mean(s().map(|l| l.total_ms))),
    );
    let (target_cot_s, target_e2e_s) = (
        secs(mean(t().map(ResultLine::cot_ms))),
        secs(mean(t().map(|l| l.total_ms))),
    );
    Some(MeasuredRun {
        problems: pairs.len(),
        workload,
        phases: Prediction {
            draft_s: secs(mean(s().map(|l| l.draft_ms))),
            select_s: secs(mean(s().map(|l| l.select_ms))),
            correction_s: secs(mean(s().map(|l| l.target_thinking_ms))),
            answer_s: secs(mean(s().map(|l| l.answer_ms))),
            scot_cot_s,
            scot_e2e_s,
            target_cot_s,
            target_e2e_s,
            speedup_cot: target_cot_s / scot_cot_s,
            speedup_e2e: target_e2e_s / scot_e2e_s,
        },
    })
}

/// The cost model's prediction for the measured workload.
pub fn predict_measured(costs: &MeasuredCosts, run: &MeasuredRun) -> Prediction {
    predict(
        &costs.draft,
        &costs.target,
        &run.workload,
        &costs.deployment,
    )
}

/// One data set's check as markdown: predicted against measured, phase by phase.
pub fn cost_check_markdown(dataset: &str, costs: &MeasuredCosts, run: &MeasuredRun) -> String {
    let p = predict_measured(costs, run);
    let w = &run.workload;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### {dataset}: cost model against the measurement ({} problems in both modes)\n",
        run.problems
    );
    out.push_str("| quantity | predicted | measured | predicted / measured |\n| --- | ---: | ---: | ---: |\n");
    let m = &run.phases;
    let rows = [
        ("drafting s", p.draft_s, m.draft_s),
        ("selection s", p.select_s, m.select_s),
        (
            "correction s (mean over problems)",
            p.correction_s,
            m.correction_s,
        ),
        ("final answer s", p.answer_s, m.answer_s),
        ("t_SCoT (CoT) s", p.scot_cot_s, m.scot_cot_s),
        ("t_target (CoT) s", p.target_cot_s, m.target_cot_s),
        ("r (CoT)", p.speedup_cot, m.speedup_cot),
        ("r (end-to-end)", p.speedup_e2e, m.speedup_e2e),
    ];
    for (name, predicted, measured) in rows {
        let ratio = if measured > 0.0 {
            format!("{:.2}", predicted / measured)
        } else {
            "–".to_string()
        };
        let _ = writeln!(out, "| {name} | {predicted:.2} | {measured:.2} | {ratio} |");
    }
    let _ = writeln!(
        out,
        "\nWorkload measured in this run: n = {}, problem prompt {:.0} tokens, selection overhead {:.0}, \
         mean draft {:.0} tokens, longest of n {:.0}, target thinking {:.0}, answer {:.0}, acceptance {:.1}%. \
         Deployment: shared prefill {}, straggler ratio {}, {} draft node(s).",
        w.n,
        w.problem_tokens,
        w.selection_overhead_tokens,
        w.draft_tokens_mean,
        w.draft_tokens_longest,
        w.target_thinking_tokens,
        w.answer_tokens,
        100.0 * w.accept_rate,
        costs.deployment.shared_prefill,
        costs
            .deployment
            .straggler_ratio
            .map_or_else(|| "off".to_string(), |r| format!("{r}")),
        costs.deployment.draft_nodes,
    );
    if !costs.source.is_empty() {
        let _ = writeln!(out, "Per-token costs: {}.", costs.source);
    }
    out.push_str(&what_ifs_markdown(costs, run));
    out
}

/// Predicted only: the measured workload under other deployments (acceptance held at the measured
/// rate, which a straggler cut may lower).
fn what_ifs_markdown(costs: &MeasuredCosts, run: &MeasuredRun) -> String {
    let as_run = costs.deployment;
    let pool = Deployment {
        draft_nodes: run.workload.n,
        ..as_run
    };
    let cut = Deployment {
        straggler_ratio: Some(1.5),
        ..as_run
    };
    let both = Deployment {
        straggler_ratio: Some(1.5),
        ..pool
    };
    let rows = [
        ("as run".to_string(), as_run),
        (format!("drafts over {} nodes", run.workload.n), pool),
        ("straggler cut at 1.5x the mean draft".to_string(), cut),
        ("both".to_string(), both),
    ];
    let mut out = String::from(
        "\nPredicted on the same workload under other deployments:\n\n| deployment | drafting s | selection s | t_SCoT (CoT) s | r (CoT) | r (end-to-end) |\n| --- | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for (name, deployment) in rows {
        let p = predict(&costs.draft, &costs.target, &run.workload, &deployment);
        let _ = writeln!(
            out,
            "| {name} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
            p.draft_s, p.select_s, p.scot_cot_s, p.speedup_cot, p.speedup_e2e
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use scot_client::Mode;
    use scot_proto::{AnswerPath, FinishReason};

    use super::*;
    use crate::results::DraftRecord;

    fn draft(tokens: u32) -> DraftRecord {
        DraftRecord {
            index: 0,
            tokens,
            finish: FinishReason::Eos.label().into(),
            elapsed_ms: 0.0,
            offered: true,
            node: String::new(),
            ..Default::default()
        }
    }

    fn scot(id: &str, path: AnswerPath, drafts: &[u32], select_prompt: u32) -> ResultLine {
        let corrected = path == AnswerPath::TargetCorrection;
        ResultLine {
            id: id.into(),
            mode: Mode::Scot.name().into(),
            path: path.label().into(),
            drafts: drafts.iter().map(|&t| draft(t)).collect(),
            target_prompt_tokens: select_prompt,
            answer_tokens: 10,
            draft_ms: 20_000.0,
            select_ms: 8_000.0,
            target_thinking_ms: if corrected { 16_000.0 } else { 0.0 },
            answer_ms: 2_000.0,
            total_ms: 30_000.0 + if corrected { 16_000.0 } else { 0.0 },
            ..Default::default()
        }
    }

    fn target(id: &str, thinking: u32) -> ResultLine {
        ResultLine {
            id: id.into(),
            mode: Mode::TargetOnly.name().into(),
            path: AnswerPath::TargetOnly.label().into(),
            target_prompt_tokens: 100,
            target_thinking_tokens: thinking,
            answer_tokens: 20,
            target_thinking_ms: 15_000.0,
            answer_ms: 1_000.0,
            total_ms: 16_000.0,
            ..Default::default()
        }
    }

    fn costs() -> MeasuredCosts {
        MeasuredCosts {
            draft: ModelCosts {
                prefill_s_per_token: 0.01,
                decode_s_batch1: 0.025,
                decode_s_batch_n: 0.1,
                batch_n: 5,
            },
            target: ModelCosts {
                prefill_s_per_token: 0.0075,
                decode_s_batch1: 0.0625,
                decode_s_batch_n: 0.17,
                batch_n: 5,
            },
            deployment: Deployment {
                shared_prefill: true,
                straggler_ratio: None,
                draft_nodes: 1,
            },
            source: "hand-made".into(),
        }
    }

    #[test]
    fn workload_and_phases_come_from_paired_problems() {
        let scot_lines = vec![
            scot("a", AnswerPath::DraftAccepted, &[100, 200, 300], 800),
            scot("b", AnswerPath::TargetCorrection, &[200, 200, 200], 900),
            // No target-only twin: left out.
            scot("c", AnswerPath::DraftAccepted, &[1000, 1000, 1000], 5000),
        ];
        let target_lines = vec![
            target("a", 200),
            target("b", 300),
            ResultLine {
                error: Some("deadline".into()),
                ..target("c", 0)
            },
        ];
        let run = measure_run(&scot_lines, &target_lines).unwrap();
        assert_eq!(run.problems, 2);
        let w = run.workload;
        assert_eq!(w.n, 3);
        assert_eq!(w.problem_tokens, 100.0);
        assert_eq!(w.draft_tokens_mean, 200.0);
        // Longest per problem: 300 and 200.
        assert_eq!(w.draft_tokens_longest, 250.0);
        // (800 + 900) / 2 - 100 - 3 * 200.
        assert_eq!(w.selection_overhead_tokens, 150.0);
        assert_eq!(w.target_thinking_tokens, 250.0);
        assert_eq!(w.answer_tokens, 15.0);
        assert_eq!(w.accept_rate, 0.5);
        let m = run.phases;
        assert_eq!(m.correction_s, 8.0);
        assert_eq!(m.scot_cot_s, 36.0);
        assert_eq!(m.target_cot_s, 15.0);
        assert!((m.speedup_cot - 15.0 / 36.0).abs() < 1e-12);
        assert!((m.speedup_e2e - 16.0 / 38.0).abs() < 1e-12);
    }

    #[test]
    fn markdown_sets_prediction_beside_measurement() {
        let run = measure_run(
            &[scot("a", AnswerPath::DraftAccepted, &[100, 200, 300], 800)],
            &[target("a", 200)],
        )
        .unwrap();
        let c = costs();
        let p = predict_measured(&c, &run);
        // Shared prefill: 100 * 0.01 + longest 300 * step(3 chains) = 300 * 0.0625 -> 19.75 s.
        assert!((p.draft_s - 19.75).abs() < 1e-9, "{p:?}");
        let md = cost_check_markdown("gsm8k", &c, &run);
        assert!(md.contains("| drafting s | 19.75 | 20.00 | 0.99 |"), "{md}");
        assert!(md.contains("acceptance 100.0%"), "{md}");
        assert!(md.contains("Per-token costs: hand-made."), "{md}");
        // Three nodes, one chain each: 100 * 0.01 + 300 * 0.025 = 8.5 s of drafting.
        assert!(md.contains("| drafts over 3 nodes | 8.50 |"), "{md}");
    }

    #[test]
    fn none_without_paired_problems() {
        assert!(measure_run(&[], &[target("a", 10)]).is_none());
        assert!(measure_run(&[scot("a", AnswerPath::DraftAccepted, &[1], 10)], &[]).is_none());
    }

    #[test]
    fn cost_file_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("costs.json");
        std::fs::write(&path, "{\"draft\": 1}").unwrap();
        let err = MeasuredCosts::from_file(&path).unwrap_err().to_string();
        assert!(
            err.contains("costs.json") && err.contains("not a cost file"),
            "{err}"
        );
        std::fs::write(&path, serde_json::to_string(&costs()).unwrap()).unwrap();
        assert_eq!(MeasuredCosts::from_file(&path).unwrap(), costs());
    }
}
