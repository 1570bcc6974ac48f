//! `scot train alignment` end to end on a real small model (SmolLM2-135M, GGUF): on a toy task (the
//! "target" always thinks the same unusual sentence), the next-token loss of the chains falls and
//! the draft's greedy picks come to agree with them; the saved adapter gives the engine (run-time
//! LoRA on the GGUF) the logits the trainer computed at the chain's positions; chains the target
//! answered wrongly are left out unless asked for; a malformed line is refused with its number.

mod common;

use std::path::Path;

use common::{lora_args, max_abs_diff, model_path, saved_terms};
use scot_engine::{LoadOptions, LoraTerms, Model};
use scot_selection::AlignmentExample;
use scot_trainer::{run_train_alignment, TrainAlignmentArgs, TrainError};

const CHAIN: &str = "Violet turtles juggle seven lanterns beneath the quiet harbor";

/// Five problems whose chain is [`CHAIN`]; the last was answered wrongly.
fn write_data(path: &Path, model: &Model, fingerprint: &str) {
    let mut lines = Vec::new();
    for i in 0..5 {
        let prompt = format!("Question {i}: think it through.\n<think>\n");
        let example = AlignmentExample {
            id: format!("toy-{i}"),
            problem: format!("question {i}"),
            gold: "7".into(),
            chain: CHAIN.into(),
            chain_ended: true,
            think_end: "</think>".into(),
            answer: if i < 4 { "7".into() } else { "8".into() },
            correct: i < 4,
            target_model: "toy-target".into(),
            prompt_token_ids: model.tokenizer().encode(&prompt, false).unwrap(),
            prompt_text: prompt,
            model_fingerprint: fingerprint.to_string(),
            template_set: "default".into(),
        };
        lines.push(serde_json::to_string(&example).unwrap());
    }
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

fn args(data: &Path, out: &Path, epochs: usize) -> TrainAlignmentArgs {
    TrainAlignmentArgs {
        lora: lora_args(data, out, epochs),
        include_wrong: false,
        max_chain_tokens: 64,
    }
}

/// A temporary folder with the toy data in `chains.jsonl`, the model and its fingerprint.
fn setup() -> (tempfile::TempDir, std::path::PathBuf, Model, String) {
    let tmp = tempfile::tempdir().unwrap();
    let model = Model::load(&LoadOptions::new(model_path())).unwrap();
    let fingerprint = scot_node_support::model_fingerprint(&model_path(), None).unwrap();
    let data = tmp.path().join("chains.jsonl");
    write_data(&data, &model, &fingerprint);
    (tmp, data, model, fingerprint)
}

#[test]
fn the_chains_are_learnt_and_the_saved_adapter_gives_the_trained_logits() {
    let (tmp, data, model, _) = setup();
    let dir = tmp.path();
    let out = dir.join("adapter");
    let mut fit = args(&data, &out, 6);
    fit.lora.lr = 1e-2;
    fit.lora.eval_data = vec![data.clone()];
    let summary = run_train_alignment(fit).unwrap();
    eprintln!("{summary:#?}");
    assert_eq!(
        summary.fitted.examples, 4,
        "the wrongly answered chain is left out"
    );
    assert_eq!(summary.left_out_wrong, 1);
    assert_eq!(summary.fitted.steps, 6 * 4);
    assert!(
        summary.fitted.train_after.loss < 0.5 * summary.fitted.train_before.loss,
        "loss {} -> {}",
        summary.fitted.train_before.loss,
        summary.fitted.train_after.loss
    );
    assert!(
        summary.fitted.train_after.greedy_agreement > summary.fitted.train_before.greedy_agreement
            && summary.fitted.train_after.greedy_agreement >= 0.8,
        "greedy agreement {} -> {}",
        summary.fitted.train_before.greedy_agreement,
        summary.fitted.train_after.greedy_agreement
    );
    assert_eq!(summary.fitted.epochs.len(), 6);
    assert!(summary.fitted.epochs[5].eval.contains_key("chains"));
    assert!(out.join("adapter_config.json").is_file() && out.join("train-summary.json").is_file());

    // The engine with the saved adapter gives the trainer's logits at the chain's positions, within
    // the quantized last block's rounding (twice the base model's own difference, plus 1e-3).
    let adapted = Model::load(&LoadOptions {
        lora: Some(out.clone()),
        ..LoadOptions::new(model_path())
    })
    .unwrap();
    let block = model.top_block_full_vocabulary().unwrap();
    let terms = saved_terms(&out, &block, &["q_proj", "v_proj", "o_proj"]);
    let example = &scot_selection::read_alignment_examples(&data).unwrap()[0];
    let continuation = model
        .tokenizer()
        .encode(&example.continuation(), false)
        .unwrap();
    let mut input = example.prompt_token_ids.clone();
    input.extend_from_slice(&continuation[..continuation.len() - 1]);
    let from = example.prompt_token_ids.len() - 1;
    let x = model.residual_stream_before_top(&input).unwrap();
    let trained: Vec<Vec<f32>> = block
        .logits_from(&x, &terms, from)
        .unwrap()
        .to_vec2()
        .unwrap();
    let base: Vec<Vec<f32>> = block
        .logits_from(&x, &LoraTerms::default(), from)
        .unwrap()
        .to_vec2()
        .unwrap();
    let engine = |model: &Model, prefix: &[u32]| -> Vec<f32> {
        let mut session = model.session().unwrap();
        session.extend(prefix).unwrap();
        session.last_logits().unwrap()
    };
    for row in [0, continuation.len() / 2, continuation.len() - 1] {
        let prefix = &input[..=from + row];
        let rounding = max_abs_diff(&engine(&model, prefix), &base[row]);
        let diff = max_abs_diff(&engine(&adapted, prefix), &trained[row]);
        assert!(
            diff <= 2.0 * rounding + 1e-3,
            "row {row}: engine with the saved adapter vs trainer: {diff} (base rounding {rounding})"
        );
    }

    // The run resumed with another chain cut is refused: it would learn other targets.
    let mut recut = args(&data, &out, 7);
    recut.lora.lr = 1e-2;
    recut.lora.eval_data = vec![data.clone()];
    recut.max_chain_tokens = 8;
    let err = run_train_alignment(recut).unwrap_err();
    assert!(err.to_string().contains("other settings"), "{err}");

    // With --include-wrong the fifth chain is learnt too (a new run: other data, other settings).
    let mut all = args(&data, &dir.join("all"), 1);
    all.include_wrong = true;
    let summary = run_train_alignment(all).unwrap();
    assert_eq!((summary.fitted.examples, summary.left_out_wrong), (5, 0));
}

#[test]
fn a_malformed_line_or_data_for_another_model_is_refused() {
    let (tmp, data, _, fingerprint) = setup();
    let dir = tmp.path();
    let text = std::fs::read_to_string(&data).unwrap();

    let broken = dir.join("broken.jsonl");
    let mut lines: Vec<&str> = text.lines().collect();
    lines.insert(1, "{\"id\": \"half a line\"");
    std::fs::write(&broken, lines.join("\n")).unwrap();
    let err = run_train_alignment(args(&broken, &dir.join("a"), 1)).unwrap_err();
    assert!(matches!(err, TrainError::Data(_)), "{err}");
    assert!(err.to_string().contains("line 2"), "{err}");

    let foreign = dir.join("foreign.jsonl");
    std::fs::write(&foreign, text.replace(&fingerprint, "sha256:another-model")).unwrap();
    let err = run_train_alignment(args(&foreign, &dir.join("b"), 1)).unwrap_err();
    assert!(
        err.to_string().contains("toy-0") && err.to_string().contains("another-model"),
        "{err}"
    );
}
