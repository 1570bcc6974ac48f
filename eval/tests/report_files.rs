//! `run_report` on result files shaped like `scot eval` writes them: tables and readable PNGs.

use std::path::PathBuf;

use scot_eval::results::{DraftRecord, ResultLine, ResultWriter};
use scot_eval::{run_report, ReportArgs};

fn line(mode: &str, i: usize) -> ResultLine {
    let scot = mode == "scot";
    let accepted = scot && !i.is_multiple_of(4);
    let total = match mode {
        "target-only" => 20_000.0 + 700.0 * i as f64,
        "draft-only" => 4_000.0 + 150.0 * i as f64,
        _ if accepted => 9_000.0 + 300.0 * i as f64,
        _ => 28_000.0 + 500.0 * i as f64,
    };
    ResultLine {
        id: format!("gsm8k-test-{i:04}"),
        dataset: "gsm8k".into(),
        mode: mode.into(),
        gold: "18".into(),
        prediction: Some("18".into()),
        correct: i % 5 != (mode == "draft-only") as usize,
        answer_text: if i % 5 != (mode == "draft-only") as usize {
            "The final answer is \\boxed{18}."
        } else {
            "The final answer is \\boxed{17}."
        }
        .into(),
        path: match mode {
            "target-only" => "target_only",
            "draft-only" => "draft_only",
            _ if accepted => "draft_accepted",
            _ => "target_correction",
        }
        .into(),
        total_ms: total,
        answer_ms: 1_000.0,
        drafts: if scot {
            (0..5)
                .map(|d| DraftRecord {
                    index: d,
                    tokens: 150 + 20 * d + i as u32,
                    finish: "think_end".into(),
                    elapsed_ms: 5_000.0,
                    offered: true,
                    node: "draft-0".into(),
                    ..Default::default()
                })
                .collect()
        } else {
            Vec::new()
        },
        ..Default::default()
    }
}

#[test]
fn report_writes_tables_and_pngs() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("scot-eval-report");
    let _ = std::fs::remove_dir_all(&dir);
    for mode in ["scot", "target-only", "draft-only"] {
        let mut writer =
            ResultWriter::open(&dir.join(format!("results/gsm8k-{mode}.jsonl"))).unwrap();
        for i in 0..20 {
            writer.append(&line(mode, i)).unwrap();
        }
    }
    // A cost file in the shape docs/cost-model.md documents adds the model-vs-measurement table.
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
        replay: false,
        replay_settings: Vec::new(),
        priors: Vec::new(),
        selector_probs: None,
    })
    .unwrap();
    assert!(
        summary
            .text
            .contains("### gsm8k: cost model against the measurement (20 problems in both modes)"),
        "{}",
        summary.text
    );
    assert!(summary.text.contains("| r (CoT) |"), "{}", summary.text);
    assert!(
        summary.text.contains("0 differ from the verdicts stored"),
        "{}",
        summary.text
    );
    assert!(summary.text.contains("Per-token costs: test figures."));
    assert!(
        summary.text.contains("| scot | 20 | 0 |"),
        "{}",
        summary.text
    );
    assert!(
        summary.text.contains("| target-only | 20 | 0 |"),
        "{}",
        summary.text
    );
    assert_eq!(summary.plots.len(), 2);
    for plot in &summary.plots {
        let bytes = std::fs::read(plot).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{}", plot.display());
        assert!(
            bytes.len() > 10_000,
            "{} is suspiciously small",
            plot.display()
        );
    }
    assert!(std::fs::read_to_string(&summary.markdown)
        .unwrap()
        .contains("gsm8k-latency-cdf.png"));
}

#[test]
fn empty_inputs_are_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = run_report(ReportArgs {
        results: vec![dir.path().to_path_buf()],
        out_dir: dir.path().join("r"),
        font: scot_eval::plots::DEFAULT_FONT.into(),
        costs: None,
        replay: false,
        replay_settings: Vec::new(),
        priors: Vec::new(),
        selector_probs: None,
    })
    .unwrap_err();
    assert!(err.to_string().contains("no result lines"), "{err}");
}

#[test]
fn a_bad_cost_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let costs = dir.path().join("costs.json");
    std::fs::write(&costs, "{}").unwrap();
    let err = run_report(ReportArgs {
        results: vec![dir.path().to_path_buf()],
        out_dir: dir.path().join("r"),
        font: scot_eval::plots::DEFAULT_FONT.into(),
        costs: Some(costs),
        replay: false,
        replay_settings: Vec::new(),
        priors: Vec::new(),
        selector_probs: None,
    })
    .unwrap_err();
    assert!(err.to_string().contains("costs.json"), "{err}");
}
