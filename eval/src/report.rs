//! `scot report`'s output: reads the result files, regrades them and writes `report.md` (the
//! per-mode tables, the cost-model checks and the replay) and its PNG plots.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use scot_client::Mode;
use serde::Serialize;

use crate::cost_check::{cost_check_markdown, measure_run, MeasuredCosts};
use crate::error::EvalError;
use crate::mode_stats::{compute_stats, markdown_tables};
use crate::replay::{frontier_path, frontier_points, replay_markdown, ReplayRow, ReplaySetting};
use crate::results::{
    collect_result_files, latest_successful, mode_group, read_lines, ModeGroups, ResultLine,
};

/// What `scot report` wrote.
#[derive(Debug, Clone, Serialize)]
pub struct ReportSummary {
    pub markdown: PathBuf,
    pub plots: Vec<PathBuf>,
    /// The markdown text (also written to `markdown`).
    pub text: String,
}

/// Grades every answered line again with the current grader, so grader fixes reach old result
/// files; returns how many verdicts changed.
fn regrade(lines: &mut [ResultLine]) -> usize {
    let mut changed = 0;
    for line in lines.iter_mut().filter(|l| l.succeeded()) {
        let before = line.correct;
        crate::runner::grade(line);
        changed += usize::from(line.correct != before);
    }
    changed
}

/// One cost-model check per data set that has both scot and target-only results.
fn cost_check_sections(groups: &ModeGroups, costs: &MeasuredCosts) -> String {
    let mut out = String::new();
    for ((dataset, mode), scot) in groups {
        if mode != Mode::Scot.name() {
            continue;
        }
        let Some(target_only) = mode_group(groups, dataset, Mode::TargetOnly) else {
            continue;
        };
        if let Some(run) = measure_run(scot, target_only) {
            out.push_str(&cost_check_markdown(dataset, costs, &run));
            out.push('\n');
        }
    }
    out
}

/// What `--replay` re-decides with.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    pub settings: Vec<ReplaySetting>,
    pub priors: Vec<scot_selection::SelectionPrior>,
    /// A trained selector's probabilities, replacing the stored target's (see `--selector-probs`).
    pub selector: Option<Vec<scot_selection::SelectorProbs>>,
}

/// The scot lines as a target with the trained selector would have scored them: its probabilities
/// in place of the stored ones (no prior applies to them); lines it has none for are dropped.
fn with_selector(
    lines: &[ResultLine],
    selector: &[scot_selection::SelectorProbs],
) -> Vec<ResultLine> {
    let by_id: std::collections::HashMap<&str, &Vec<f32>> = selector
        .iter()
        .map(|s| (s.id.as_str(), &s.option_probs))
        .collect();
    lines
        .iter()
        .filter_map(|line| {
            if !line.is_mode(Mode::Scot) {
                return Some(line.clone());
            }
            let probs = by_id.get(line.id.as_str())?;
            let mut line = line.clone();
            line.option_probs = (*probs).clone();
            line.option_logprobs = probs.iter().map(|p| p.ln()).collect();
            line.debiased_probs.clear();
            Some(line)
        })
        .collect()
}

/// Reads the result files, writes `report.md` and the plots into `out_dir`.
pub fn write_report(
    inputs: &[PathBuf],
    out_dir: &Path,
    font: &Path,
    costs: Option<&MeasuredCosts>,
    replay: Option<&ReplayOptions>,
) -> Result<ReportSummary, EvalError> {
    let files = collect_result_files(inputs)?;
    let mut lines = Vec::new();
    for file in &files {
        lines.extend(read_lines(file)?);
    }
    if lines.is_empty() {
        return Err(EvalError::NoResults(inputs.to_vec()));
    }
    let regraded = regrade(&mut lines);
    let groups = latest_successful(lines.clone());
    let lines_for_replay = if replay.is_some_and(|r| r.selector.is_some()) {
        lines.clone()
    } else {
        Vec::new()
    };
    let stats = compute_stats(lines);
    std::fs::create_dir_all(out_dir).map_err(|source| EvalError::Write {
        path: out_dir.to_path_buf(),
        source,
    })?;
    let mut plots = crate::plots::draw_all(&stats, &groups, out_dir, font)?;
    let mut text = String::from("# scot evaluation report\n\n");
    text.push_str(&markdown_tables(&stats));
    let _ = writeln!(
        text,
        "Verdicts are recomputed from each answer text with the current grader; {regraded} differ from the verdicts stored in the result files.\n"
    );
    if let Some(costs) = costs {
        text.push_str(&cost_check_sections(&groups, costs));
    }
    if let Some(options) = replay {
        let replayed_groups = match &options.selector {
            Some(selector) => latest_successful(with_selector(&lines_for_replay, selector)),
            None => groups.clone(),
        };
        let groups = &replayed_groups;
        let rows = crate::replay::replay(groups, &options.settings, &options.priors, costs);
        text.push_str(&replay_markdown(&rows, groups));
        let mut datasets: Vec<&str> = rows.iter().map(|r| r.dataset.as_str()).collect();
        datasets.dedup();
        for dataset in datasets {
            let own: Vec<&ReplayRow> = rows.iter().filter(|r| r.dataset == dataset).collect();
            // Target-only on the problems the replay decided, as a point when latency is predicted.
            let target = crate::replay::target_reference(own.iter().copied()).and_then(|r| {
                let accuracy = 100.0 * r.target_accuracy?;
                Some((accuracy, r.predicted_target_e2e_s))
            });
            let path = frontier_path(out_dir, dataset);
            crate::plots::replay_frontier(
                dataset,
                &frontier_points(&own),
                target,
                costs.is_some(),
                &path,
                font,
            )?;
            plots.push(path);
        }
    }
    for plot in &plots {
        if let Some(name) = plot.file_name() {
            let _ = writeln!(text, "![{0}]({0})", name.to_string_lossy());
        }
    }
    let markdown = out_dir.join("report.md");
    std::fs::write(&markdown, &text).map_err(|source| EvalError::Write {
        path: markdown.clone(),
        source,
    })?;
    Ok(ReportSummary {
        markdown,
        plots,
        text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An answered scot line whose stored verdict is `correct`.
    fn answered(id: &str, gold: &str, answer_text: &str, correct: bool) -> ResultLine {
        ResultLine {
            id: id.into(),
            dataset: "gsm8k".into(),
            mode: Mode::Scot.name().into(),
            gold: gold.into(),
            answer_text: answer_text.into(),
            correct,
            ..Default::default()
        }
    }

    #[test]
    fn regrade_recomputes_stale_verdicts() {
        let mut lines = vec![
            answered(
                "a",
                "\\left( 3, \\frac{\\pi}{2} \\right)",
                "The final answer is \\boxed{3, \\frac{\\pi}{2}}.",
                false,
            ),
            answered("b", "18", "\\boxed{18}", true),
            // Failed requests keep their (wrong) verdict.
            ResultLine {
                error: Some("deadline".into()),
                ..answered("c", "18", "\\boxed{18}", false)
            },
        ];
        assert_eq!(regrade(&mut lines), 1);
        assert!(lines[0].correct && lines[1].correct && !lines[2].correct);
        assert_eq!(lines[0].prediction.as_deref(), Some("3, \\frac{\\pi}{2}"));
    }
}
