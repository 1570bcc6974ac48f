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
    let summary = run_report(ReportArgs {
        results: vec![dir.join("results")],
        out_dir: dir.join("report"),
        font: scot_eval::plots::DEFAULT_FONT.into(),
    })
    .unwrap();
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
    })
    .unwrap_err();
    assert!(err.to_string().contains("no result lines"), "{err}");
}
