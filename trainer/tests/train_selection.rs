//! `scot train selection` end to end on a real small model (SmolLM2-135M, GGUF): the loss falls on
//! a toy selection task, the saved adapter gives the engine the logits the trainer computed, an
//! interrupted run resumes to the same adapter, and data made for another model, a malformed line or
//! a checkpoint of other settings are refused with a clear error.

use std::path::{Path, PathBuf};

use scot_engine::{LoadOptions, Model};
use scot_selection::{SelectionExample, TrainingDraft};
use scot_trainer::{run_train_selection, TrainError, TrainSelectionArgs};

mod common;

use common::{lora_args, max_abs_diff, model_path, saved_terms, tensors};

/// Six toy problems: the prompt names its correct option ("... the answer is option 3 ... Best:"),
/// three drafts each.
fn write_data(path: &Path, model: &Model, fingerprint: &str) {
    let tok = model.tokenizer();
    let options: Vec<u32> = (1..=4)
        .map(|k| tok.encode(&k.to_string(), false).unwrap()[0])
        .collect();
    let mut lines = Vec::new();
    for (i, right) in [1usize, 2, 3, 4, 2, 1].iter().enumerate() {
        let drafts: Vec<TrainingDraft> = (1..=3)
            .map(|k| TrainingDraft {
                text: format!("path {k}"),
                answer: Some(k.to_string()),
                correct: k == *right,
            })
            .collect();
        let prompt = format!(
            "Problem {i}. Paths 1, 2 and 3 follow; 4 means all are wrong. The right one is {right}. Best path:"
        );
        let example = SelectionExample {
            id: format!("toy-{i}"),
            problem: format!("problem {i}"),
            gold: right.to_string(),
            labels: SelectionExample::labels_for(&drafts),
            drafts,
            prompt_token_ids: tok.encode(&prompt, false).unwrap(),
            prompt_text: prompt,
            option_token_ids: options.clone(),
            model_fingerprint: fingerprint.to_string(),
            template_set: "default".into(),
            prompt_digest: String::new(),
        };
        lines.push(serde_json::to_string(&example).unwrap());
    }
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

fn args(data: &Path, out: &Path, epochs: usize) -> TrainSelectionArgs {
    TrainSelectionArgs {
        lora: lora_args(data, out, epochs),
    }
}

struct Setup {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    data: PathBuf,
    model: Model,
}

fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let model = Model::load(&LoadOptions::new(model_path())).unwrap();
    let fingerprint = scot_node_support::model_fingerprint(&model_path(), None).unwrap();
    let data = dir.join("toy.jsonl");
    write_data(&data, &model, &fingerprint);
    Setup {
        _tmp: tmp,
        dir,
        data,
        model,
    }
}

#[test]
fn the_loss_falls_and_the_saved_adapter_gives_the_trained_logits() {
    let s = setup();
    let out = s.dir.join("adapter");
    let mut fit = args(&s.data, &out, 20);
    fit.lora.lr = 1e-2;
    let summary = run_train_selection(fit).unwrap();
    eprintln!("{summary:#?}");
    assert_eq!(summary.steps, 20 * 6);
    assert!(
        summary.train_after.loss < 0.5 * summary.train_before.loss,
        "loss {} -> {}",
        summary.train_before.loss,
        summary.train_after.loss
    );
    assert!(summary.train_after.accuracy >= summary.train_before.accuracy);
    assert!(out.join("adapter_config.json").is_file() && out.join("train-summary.json").is_file());

    // The engine with the saved adapter (run-time LoRA on the GGUF) scores the options as the trainer
    // did, within the rounding of the quantized last block (stated bound: twice the base model's own
    // difference between the two paths, plus 1e-3).
    let options: Vec<u32> = (1..=4)
        .map(|k| s.model.tokenizer().encode(&k.to_string(), false).unwrap()[0])
        .collect();
    let examples = scot_selection::read_examples(&s.data).unwrap();
    let adapted = Model::load(&LoadOptions {
        lora: Some(out.clone()),
        ..LoadOptions::new(model_path())
    })
    .unwrap();
    let block = s.model.top_block(&options).unwrap();
    let terms = saved_terms(&out, &block, &["q_proj", "v_proj", "o_proj"]);
    let engine = |model: &Model, prompt: &[u32]| -> Vec<f32> {
        let mut session = model.session().unwrap();
        session.extend(prompt).unwrap();
        let all = session.last_logits().unwrap();
        options.iter().map(|&t| all[t as usize]).collect()
    };
    for e in &examples {
        let x = s
            .model
            .residual_stream_before_top(&e.prompt_token_ids)
            .unwrap();
        let trained: Vec<f32> = block.last_logits(&x, &terms).unwrap().to_vec1().unwrap();
        let base: Vec<f32> = block
            .last_logits(&x, &scot_engine::LoraTerms::default())
            .unwrap()
            .to_vec1()
            .unwrap();
        let rounding = max_abs_diff(&engine(&s.model, &e.prompt_token_ids), &base);
        let diff = max_abs_diff(&engine(&adapted, &e.prompt_token_ids), &trained);
        assert!(
            diff <= 2.0 * rounding + 1e-3,
            "{}: engine with the saved adapter vs trainer: {diff} (base model's rounding {rounding})",
            e.id
        );
    }
}

#[test]
fn an_interrupted_run_resumes_to_the_same_adapter() {
    let s = setup();
    let straight = s.dir.join("straight");
    run_train_selection(args(&s.data, &straight, 3)).unwrap();
    // The same run stopped after its first epoch, then started again with the full count.
    let resumed = s.dir.join("resumed");
    run_train_selection(args(&s.data, &resumed, 1)).unwrap();
    let second = run_train_selection(args(&s.data, &resumed, 3)).unwrap();
    assert_eq!(second.resumed_at_step, Some(6));
    assert_eq!(second.steps, 18);
    assert_eq!(tensors(&straight), tensors(&resumed));

    // A checkpoint made under other settings is refused, not mixed in.
    let mut other = args(&s.data, &resumed, 4);
    other.lora.lr = 1e-3;
    let err = run_train_selection(other).unwrap_err();
    assert!(matches!(err, TrainError::Checkpoint { .. }), "{err}");
    assert!(err.to_string().contains("other settings"), "{err}");
}

#[test]
fn data_for_another_model_or_malformed_is_refused() {
    let s = setup();
    let text = std::fs::read_to_string(&s.data).unwrap();
    let foreign = s.dir.join("foreign.jsonl");
    std::fs::write(
        &foreign,
        text.replace(
            &scot_node_support::model_fingerprint(&model_path(), None).unwrap(),
            "sha256:another-model",
        ),
    )
    .unwrap();
    let err = run_train_selection(args(&foreign, &s.dir.join("a"), 1)).unwrap_err();
    assert!(matches!(err, TrainError::InvalidArgument(_)), "{err}");
    assert!(
        err.to_string().contains("toy-0") && err.to_string().contains("another-model"),
        "{err}"
    );

    let broken = s.dir.join("broken.jsonl");
    let mut lines: Vec<&str> = text.lines().collect();
    lines.insert(2, "{\"id\": \"half a line\"");
    std::fs::write(&broken, lines.join("\n")).unwrap();
    let err = run_train_selection(args(&broken, &s.dir.join("b"), 1)).unwrap_err();
    assert!(matches!(err, TrainError::Data(_)), "{err}");
    assert!(err.to_string().contains("line 3"), "{err}");

    let mut bad_module = args(&s.data, &s.dir.join("c"), 1);
    bad_module.lora.modules = vec!["qkv".into()];
    let err = run_train_selection(bad_module).unwrap_err();
    assert!(err.to_string().contains("unknown module `qkv`"), "{err}");
}
