//! Per data set and mode: accuracy, latency percentiles, speed-up against target-only, draft
//! acceptance, draft length and correction share, and their markdown tables.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;

use scot_client::Mode;
use scot_proto::AnswerPath;
use serde::Serialize;

use crate::results::{acceptance_rate, latest_successful, mode_group, ResultLine};
use crate::stats::{mean, percentile};

/// The numbers of one (data set, mode) group.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModeStats {
    pub dataset: String,
    pub mode: String,
    pub problems: usize,
    /// Problems with only failed attempts.
    pub failed: usize,
    pub accuracy: f64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    /// Chain-of-thought latency (the paper's t): end-to-end minus writing the final answer.
    pub mean_cot_ms: f64,
    /// mean(target-only) / mean(this mode) over the problems both answered; None without target-only.
    pub speedup: Option<f64>,
    pub speedup_cot: Option<f64>,
    /// Accepted drafts / problems where selection ran.
    pub acceptance_rate: Option<f64>,
    /// Mean tokens per draft, over all drafts.
    pub mean_draft_tokens: Option<f64>,
    /// Share of problems that went through the target's own thinking after selection said "none".
    pub correction_share: f64,
}

/// Statistics of every (data set, mode) group in `lines`.
pub fn compute_stats(lines: Vec<ResultLine>) -> Vec<ModeStats> {
    let answered: HashSet<(String, String, String)> = lines
        .iter()
        .filter(|l| l.succeeded())
        .map(|l| (l.dataset.clone(), l.mode.clone(), l.id.clone()))
        .collect();
    let mut failed: HashMap<(String, String), HashSet<String>> = HashMap::new();
    for l in lines.iter().filter(|l| !l.succeeded()) {
        if !answered.contains(&(l.dataset.clone(), l.mode.clone(), l.id.clone())) {
            failed
                .entry((l.dataset.clone(), l.mode.clone()))
                .or_default()
                .insert(l.id.clone());
        }
    }
    let groups = latest_successful(lines);
    let mut stats = Vec::new();
    for ((dataset, mode), group) in &groups {
        let baseline = mode_group(&groups, dataset, Mode::TargetOnly);
        stats.push(group_stats(
            dataset,
            mode,
            group,
            baseline,
            failed
                .get(&(dataset.clone(), mode.clone()))
                .map_or(0, HashSet::len),
        ));
    }
    stats
}

fn group_stats(
    dataset: &str,
    mode: &str,
    group: &[ResultLine],
    baseline: Option<&[ResultLine]>,
    failed: usize,
) -> ModeStats {
    let n = group.len();
    let mut latencies: Vec<f64> = group.iter().map(|l| l.total_ms).collect();
    latencies.sort_by(f64::total_cmp);
    // Speed-up: ratio of means over the problems both modes answered in these files.
    let speedups = baseline.and_then(|base| {
        let base: HashMap<&str, &ResultLine> = base.iter().map(|l| (l.id.as_str(), l)).collect();
        let pairs: Vec<(&ResultLine, &ResultLine)> = group
            .iter()
            .filter_map(|l| base.get(l.id.as_str()).map(|b| (*b, l)))
            .collect();
        let e2e = mean(pairs.iter().map(|(b, _)| b.total_ms))?
            / mean(pairs.iter().map(|(_, l)| l.total_ms))?;
        let cot = mean(pairs.iter().map(|(b, _)| b.cot_ms()))?
            / mean(pairs.iter().map(|(_, l)| l.cot_ms()))?;
        Some((e2e, cot))
    });
    let corrections = group
        .iter()
        .filter(|l| l.took(AnswerPath::TargetCorrection))
        .count();
    ModeStats {
        dataset: dataset.to_string(),
        mode: mode.to_string(),
        problems: n,
        failed,
        accuracy: group.iter().filter(|l| l.correct).count() as f64 / n.max(1) as f64,
        mean_ms: mean(latencies.iter().copied()).unwrap_or(0.0),
        p50_ms: percentile(&latencies, 0.5),
        p90_ms: percentile(&latencies, 0.9),
        mean_cot_ms: mean(group.iter().map(ResultLine::cot_ms)).unwrap_or(0.0),
        speedup: speedups.map(|s| s.0),
        speedup_cot: speedups.map(|s| s.1),
        acceptance_rate: acceptance_rate(group),
        mean_draft_tokens: mean(
            group
                .iter()
                .flat_map(|l| l.drafts.iter().map(|d| f64::from(d.tokens))),
        ),
        correction_share: corrections as f64 / n.max(1) as f64,
    }
}

fn opt(value: Option<f64>, fmt: impl Fn(f64) -> String) -> String {
    value.map_or_else(|| "–".to_string(), fmt)
}

/// Markdown: one table per data set, one row per mode.
pub fn markdown_tables(stats: &[ModeStats]) -> String {
    let mut by_dataset: BTreeMap<&str, Vec<&ModeStats>> = BTreeMap::new();
    for s in stats {
        by_dataset.entry(s.dataset.as_str()).or_default().push(s);
    }
    let mut out = String::new();
    for (dataset, rows) in by_dataset {
        let _ = writeln!(out, "### {dataset}\n");
        out.push_str("| mode | problems | failed | accuracy | mean s | p50 s | p90 s | mean CoT s | speed-up (e2e) | speed-up (CoT) | draft acceptance | mean draft tokens | corrected |\n");
        out.push_str("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
        for s in rows {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.1}% | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} | {} | {} | {:.1}% |",
                s.mode,
                s.problems,
                s.failed,
                100.0 * s.accuracy,
                s.mean_ms / 1e3,
                s.p50_ms / 1e3,
                s.p90_ms / 1e3,
                s.mean_cot_ms / 1e3,
                opt(s.speedup, |v| format!("{v:.2}x")),
                opt(s.speedup_cot, |v| format!("{v:.2}x")),
                opt(s.acceptance_rate, |v| format!("{:.1}%", 100.0 * v)),
                opt(s.mean_draft_tokens, |v| format!("{v:.0}")),
                100.0 * s.correction_share,
            );
        }
        out.push('\n');
    }
    out.push_str("Speed-up = mean target-only latency / mean latency of the mode, over the problems both answered in these files. CoT latency excludes writing the final answer (the paper's t). Draft acceptance = accepted / problems where selection ran; corrected = share of problems where the target thought from scratch after selection.\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::DraftRecord;

    fn line(mode: &str, id: &str, total: f64, path: &str, correct: bool) -> ResultLine {
        ResultLine {
            id: id.into(),
            dataset: "gsm8k".into(),
            mode: mode.into(),
            total_ms: total,
            answer_ms: 1000.0,
            path: path.into(),
            correct,
            drafts: vec![
                DraftRecord {
                    index: 0,
                    tokens: 100,
                    finish: "think_end".into(),
                    elapsed_ms: 1.0,
                    offered: true,
                    node: String::new(),
                    ..Default::default()
                },
                DraftRecord {
                    index: 1,
                    tokens: 300,
                    finish: "length".into(),
                    elapsed_ms: 1.0,
                    offered: true,
                    node: String::new(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        }
    }

    #[test]
    fn speedup_acceptance_and_correction() {
        let lines = vec![
            line("target-only", "a", 21000.0, "target_only", true),
            line("target-only", "b", 41000.0, "target_only", true),
            line("scot", "a", 11000.0, "draft_accepted", true),
            line("scot", "b", 11000.0, "target_correction", false),
            // A failed attempt that never succeeded counts as failed, not as a problem.
            ResultLine {
                error: Some("deadline".into()),
                ..line("scot", "c", 0.0, "", false)
            },
        ];
        let stats = compute_stats(lines);
        let scot = stats.iter().find(|s| s.mode == "scot").unwrap();
        assert_eq!(scot.problems, 2);
        assert_eq!(scot.failed, 1);
        assert_eq!(scot.accuracy, 0.5);
        // (21 + 41) / 2 = 31 s against 11 s.
        assert!((scot.speedup.unwrap() - 31.0 / 11.0).abs() < 1e-12);
        // CoT: (20 + 40) / 2 = 30 s against 10 s.
        assert!((scot.speedup_cot.unwrap() - 3.0).abs() < 1e-12);
        assert_eq!(scot.acceptance_rate, Some(0.5));
        assert_eq!(scot.mean_draft_tokens, Some(200.0));
        assert_eq!(scot.correction_share, 0.5);
        let md = markdown_tables(&stats);
        assert!(md.contains("| scot | 2 | 1 | 50.0% |"), "{md}");
        assert!(md.contains("2.82x"), "{md}");
    }
}
