//! `scot report --replay` on hand-made result lines whose right decisions are known: each policy's
//! decision, how accepted drafts and rejections are graded, the selection-accuracy counts, the live
//! decision reproduced, and the frontier plot.

use std::collections::BTreeMap;
use std::path::PathBuf;

use scot_eval::replay::{replay, ReplaySetting};
use scot_eval::results::{DraftRecord, ResultLine, ResultWriter};
use scot_eval::{run_report, ReportArgs};
use scot_selection::SelectionPolicy;

fn draft(index: u32, text: &str) -> DraftRecord {
    DraftRecord {
        index,
        tokens: 100 + index,
        finish: "think_end".into(),
        offered: true,
        text: text.into(),
        ..Default::default()
    }
}

/// Drafts 0-2 agree on 18 (right), draft 3 says 7 and is the target's raw favourite, draft 4 says 3.
/// Live (hybrid) accepted draft 0, the first of the three that agree; the target's probabilities are
/// stored as a run that scores every problem would store them.
fn agreeing() -> ResultLine {
    ResultLine {
        id: "p1".into(),
        dataset: "toy".into(),
        mode: "scot".into(),
        gold: "18".into(),
        correct: true,
        answer_text: "\\boxed{18}".into(),
        path: "draft_accepted".into(),
        chosen: 1,
        chosen_draft: Some(0),
        selection_policy: "hybrid".into(),
        target_scored: true,
        option_probs: vec![0.1, 0.2, 0.05, 0.5, 0.05, 0.1],
        drafts: vec![
            draft(0, "9 * 2 = 18, so \\boxed{18}"),
            draft(1, "Twice 9 is 18."),
            draft(2, "The answer is 18."),
            draft(3, "9 - 2 = 7"),
            draft(4, "so \\boxed{3}"),
        ],
        ..Default::default()
    }
}

/// Every draft is wrong and they disagree; the target's raw favourite is draft 0 (p = 0.6). Live
/// (hybrid, no agreement, tau 1) the target thought and was right.
fn split() -> ResultLine {
    ResultLine {
        id: "p2".into(),
        dataset: "toy".into(),
        mode: "scot".into(),
        gold: "5".into(),
        correct: true,
        answer_text: "\\boxed{5}".into(),
        path: "target_correction".into(),
        chosen: 4,
        selection_policy: "hybrid".into(),
        target_scored: true,
        option_probs: vec![0.6, 0.2, 0.1, 0.1],
        drafts: vec![
            draft(0, "It is 4."),
            draft(1, "It is 6."),
            draft(2, "It is 7."),
        ],
        ..Default::default()
    }
}

fn target_only(id: &str, gold: &str) -> ResultLine {
    ResultLine {
        id: id.into(),
        dataset: "toy".into(),
        mode: "target-only".into(),
        gold: gold.into(),
        correct: true,
        answer_text: format!("\\boxed{{{gold}}}"),
        path: "target_only".into(),
        ..Default::default()
    }
}

fn groups() -> BTreeMap<(String, String), Vec<ResultLine>> {
    BTreeMap::from([
        (("toy".into(), "scot".into()), vec![agreeing(), split()]),
        (
            ("toy".into(), "target-only".into()),
            vec![target_only("p1", "18"), target_only("p2", "5")],
        ),
    ])
}

#[test]
fn each_policy_decides_as_specified_and_is_graded_by_the_right_answer() {
    let settings = [
        ReplaySetting::new(SelectionPolicy::Paper),
        ReplaySetting {
            min_votes: Some(3),
            ..ReplaySetting::new(SelectionPolicy::Vote)
        },
        ReplaySetting {
            min_votes: Some(3),
            ..ReplaySetting::new(SelectionPolicy::Hybrid)
        },
        ReplaySetting {
            min_votes: Some(3),
            threshold: Some(0.5),
            ..ReplaySetting::new(SelectionPolicy::Hybrid)
        },
    ];
    let rows = replay(&groups(), &settings, &[], None);
    assert_eq!(rows.len(), 4);
    // paper: p1 takes draft 3 (7, wrong), p2 takes draft 0 (4, wrong).
    let paper = &rows[0];
    assert_eq!((paper.problems, paper.skipped), (2, 0));
    assert_eq!((paper.accuracy, paper.acceptance), (0.0, 1.0));
    assert_eq!(
        paper.selection_accuracy,
        Some(0.0),
        "p1 had right drafts, none taken"
    );
    assert_eq!(
        paper.none_when_none,
        Some(0.0),
        "p2 had none and took one anyway"
    );
    // vote: p1's agreement accepts draft 0 without the target (right); p2 falls to paper (wrong).
    let vote = &rows[1];
    assert_eq!(
        (vote.accuracy, vote.acceptance, vote.scored),
        (0.5, 1.0, 0.5)
    );
    // hybrid: p1 takes draft 0 (the live decision, graded by the live answer); p2 goes to the
    // target (right, by the target-only line).
    let hybrid = &rows[2];
    assert_eq!((hybrid.accuracy, hybrid.acceptance), (1.0, 0.5));
    assert_eq!(hybrid.same_as_live, 2, "the live decisions replay exactly");
    assert_eq!(hybrid.selection_accuracy, Some(1.0));
    assert_eq!(hybrid.none_when_none, Some(1.0));
    assert_eq!(hybrid.accepted_accuracy, Some(1.0));
    // hybrid at tau 0.5: p2's target pick (0.6) is now taken: wrong.
    assert_eq!((rows[3].accuracy, rows[3].acceptance), (0.5, 1.0));
}

#[test]
fn a_rejection_without_a_target_answer_or_a_line_without_drafts_is_skipped() {
    let mut groups = groups();
    groups.remove(&("toy".to_string(), "target-only".to_string()));
    let mut old = agreeing();
    old.id = "p0".into();
    old.drafts.clear();
    groups
        .get_mut(&("toy".to_string(), "scot".to_string()))
        .unwrap()
        .push(old);
    let paper_tau = ReplaySetting {
        threshold: Some(0.9),
        ..ReplaySetting::new(SelectionPolicy::Paper)
    };
    let rows = replay(&groups, &[paper_tau], &[], None);
    // p1 rejected (0.5 < 0.9) with no target answer: skipped; p2 rejected, but live corrected it.
    assert_eq!((rows[0].problems, rows[0].skipped), (1, 2));
    assert_eq!(rows[0].accuracy, 1.0);
}

/// A line written before `scot eval` kept draft texts, policies and `chosen_draft`: the paper's
/// read-out (with a threshold) replays from its option probabilities, graded by the live answer;
/// settings that vote cannot, and are skipped.
#[test]
fn lines_without_draft_texts_replay_the_papers_read_out_only() {
    let mut old = agreeing();
    old.selection_policy.clear();
    old.chosen = 4; // the live pick: option 4 (draft 3), p = 0.5, graded wrong
    old.chosen_draft = None;
    old.correct = false;
    for d in &mut old.drafts {
        d.text.clear();
    }
    let groups = BTreeMap::from([
        (("toy".into(), "scot".into()), vec![old]),
        (
            ("toy".into(), "target-only".into()),
            vec![target_only("p1", "18")],
        ),
    ]);
    let settings = [
        ReplaySetting::new(SelectionPolicy::Paper),
        ReplaySetting {
            threshold: Some(0.6),
            ..ReplaySetting::new(SelectionPolicy::Paper)
        },
        ReplaySetting::new(SelectionPolicy::Hybrid),
    ];
    let rows = replay(&groups, &settings, &[], None);
    assert_eq!(
        (rows[0].problems, rows[0].same_as_live, rows[0].accuracy),
        (1, 1, 0.0),
        "the live pick, graded by the live answer"
    );
    assert_eq!(
        (rows[1].accuracy, rows[1].acceptance),
        (1.0, 0.0),
        "under 0.6 the target thinks, graded by its target-only line"
    );
    assert_eq!(
        (rows[2].problems, rows[2].skipped),
        (0, 1),
        "no votes to replay"
    );
}

#[test]
fn settings_parse_from_their_spelling() {
    let s: ReplaySetting = "hybrid:min_votes=4:tau=0.5:prior=off".parse().unwrap();
    assert_eq!(
        (s.policy, s.min_votes, s.threshold, s.prior),
        (SelectionPolicy::Hybrid, Some(4), Some(0.5), false)
    );
    assert_eq!(s.label(), "hybrid min_votes=4 tau=0.5 prior=off");
    for bad in [
        "fast",
        "vote:min_votes",
        "vote:min_votes=x",
        "paper:prior=maybe",
        "vote:k=1",
    ] {
        assert!(bad.parse::<ReplaySetting>().is_err(), "{bad}");
    }
}

/// The two toy problems in scot and target-only result files under a fresh `<tmp>/<name>/results`,
/// each line adjusted by `adjust` first; returns `<tmp>/<name>`.
fn write_toy_results(name: &str, adjust: impl Fn(&mut ResultLine)) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    for (mode, lines) in [
        ("scot", vec![agreeing(), split()]),
        (
            "target-only",
            vec![target_only("p1", "18"), target_only("p2", "5")],
        ),
    ] {
        let mut writer =
            ResultWriter::open(&dir.join(format!("results/toy-{mode}.jsonl"))).unwrap();
        for mut line in lines {
            adjust(&mut line);
            writer.append(&line).unwrap();
        }
    }
    dir
}

#[test]
fn report_replay_writes_the_table_and_the_frontier_plot() {
    let dir = write_toy_results("scot-eval-replay", |line| {
        line.target_prompt_tokens = 200;
        line.target_thinking_tokens = 300;
    });
    let costs = dir.join("costs.json");
    std::fs::write(
        &costs,
        r#"{"draft": {"prefill_s_per_token": 0.011, "decode_s_batch1": 0.025, "decode_s_batch_n": 0.107, "batch_n": 5},
            "target": {"prefill_s_per_token": 0.0074, "decode_s_batch1": 0.062, "decode_s_batch_n": 0.17, "batch_n": 5},
            "deployment": {"shared_prefill": true, "straggler_ratio": null, "draft_nodes": 1},
            "source": "test figures"}"#,
    )
    .unwrap();
    let summary = run_report(ReportArgs {
        results: vec![dir.join("results")],
        out_dir: dir.join("report"),
        font: scot_eval::plots::DEFAULT_FONT.into(),
        costs: Some(costs),
        replay: true,
        replay_settings: Vec::new(),
        priors: Vec::new(),
        selector_probs: None,
    })
    .unwrap();
    assert!(summary.text.contains("## Replay"), "{}", summary.text);
    assert!(
        summary
            .text
            .contains("| hybrid min_votes=3 | 2 | 0 | 100.0% | 50.0% |"),
        "{}",
        summary.text
    );
    let frontier = summary
        .plots
        .iter()
        .find(|p| p.ends_with("toy-replay-frontier.png"))
        .expect("a frontier plot");
    let bytes = std::fs::read(frontier).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    assert!(bytes.len() > 10_000);
}

/// A trained selector's probabilities replace the stored target's: p2's stored read-out accepts a
/// wrong draft under `paper`, the selector's says "all wrong" (the target then answers right); p1,
/// which the selector did not score, is left out.
#[test]
fn replay_decides_with_a_trained_selectors_probabilities() {
    let dir = write_toy_results("scot-eval-replay-selector", |_| {});
    let paper_row = |selector: Option<PathBuf>| -> String {
        let summary = run_report(ReportArgs {
            results: vec![dir.join("results")],
            out_dir: dir.join("report"),
            font: scot_eval::plots::DEFAULT_FONT.into(),
            costs: None,
            replay: true,
            replay_settings: vec!["paper".parse().unwrap()],
            priors: Vec::new(),
            selector_probs: selector,
        })
        .unwrap();
        summary
            .text
            .lines()
            .find(|l| l.starts_with("| paper"))
            .unwrap_or_else(|| panic!("no paper row: {}", summary.text))
            .to_string()
    };
    let stored = paper_row(None);
    let probs = dir.join("selector-probs.jsonl");
    std::fs::write(
        &probs,
        "{\"id\":\"p2\",\"option_probs\":[0.1,0.1,0.1,0.7]}\n",
    )
    .unwrap();
    let trained = paper_row(Some(probs));
    assert!(stored.starts_with("| paper | 2 | "), "{stored}");
    assert!(trained.starts_with("| paper | 1 | "), "{trained}");
    assert!(trained.contains("| 100.0% | 0.0% |"), "{trained}");
}

#[test]
fn draft_facts_say_what_limits_every_policy() {
    let facts = scot_eval::replay::draft_facts(&[agreeing(), split()]);
    assert_eq!((facts.problems, facts.drafts, facts.answered), (2, 8, 8));
    assert_eq!((facts.correct, facts.problems_with_a_correct_draft), (3, 1));
    assert_eq!((facts.finished, facts.finished_stating), (8, 3));
    assert_eq!(
        facts.agreement,
        vec![(2, 1, 1), (3, 1, 1), (4, 0, 0), (5, 0, 0)]
    );
}
