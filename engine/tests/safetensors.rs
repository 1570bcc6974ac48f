//! Tiny random Qwen2 and Llama models written as Hugging Face safetensors folders: they load, have the
//! right shapes, generate deterministically, and their logits match candle-transformers' dense
//! (non-GGUF) qwen2/llama implementations on the same files.

mod common;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use common::*;
use scot_engine::{Architecture, CancelToken, LoadOptions, Model, SamplingParams, StopCriteria};

/// f32 everywhere; only the attention layout and summation order differ.
const LOGIT_BOUND: f32 = 1e-4;

fn reference_logits(tiny: &TinyModel, tokens: &[u32]) -> Vec<f32> {
    let dev = Device::Cpu;
    let files = [tiny.dir.join("model.safetensors")];
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&files, DType::F32, &dev).unwrap() };
    let config = std::fs::read_to_string(tiny.dir.join("config.json")).unwrap();
    let x = Tensor::new(tokens, &dev).unwrap().unsqueeze(0).unwrap();
    let logits = match tiny.arch {
        TinyArch::Qwen2 => {
            use candle_transformers::models::qwen2;
            let cfg: qwen2::Config = serde_json::from_str(&config).unwrap();
            let mut m = qwen2::ModelForCausalLM::new(&cfg, vb).unwrap();
            m.forward(&x, 0).unwrap()
        }
        TinyArch::Llama => {
            use candle_transformers::models::llama;
            let cfg: llama::LlamaConfig = serde_json::from_str(&config).unwrap();
            let cfg = cfg.into_config(false);
            let m = llama::Llama::load(vb, &cfg).unwrap();
            let mut cache = llama::Cache::new(true, DType::F32, &cfg, &dev).unwrap();
            m.forward(&x, 0, &mut cache).unwrap()
        }
    };
    logits.flatten_all().unwrap().to_vec1().unwrap()
}

fn check_tiny(arch: TinyArch) {
    let dir = tempfile::tempdir().unwrap();
    let tiny = write_tiny_model(&dir.path().join("tiny"), arch);
    let model = Model::load(&LoadOptions::new(&tiny.dir)).unwrap();
    let info = model.info();
    assert_eq!(
        info.architecture,
        match arch {
            TinyArch::Qwen2 => Architecture::Qwen2,
            TinyArch::Llama => Architecture::Llama,
        }
    );
    assert_eq!(info.vocab_size, tiny.vocab);
    assert_eq!(info.context_length, 512);
    assert!(info.eos_token_ids.contains(&2));

    let tokens = model
        .tokenizer()
        .encode("The quick brown fox jumps over the lazy dog.", false)
        .unwrap();
    let mut session = model.session().unwrap();
    session.extend(&tokens).unwrap();
    let ours = session.last_logits().unwrap();
    assert_eq!(ours.len(), tiny.vocab);
    let theirs = reference_logits(&tiny, &tokens);
    let diff = max_abs_diff(&ours, &theirs);
    eprintln!("{arch:?}: max |logit diff| vs candle-transformers = {diff:e}");
    assert!(diff < LOGIT_BOUND, "{arch:?}: max |logit diff| {diff}");

    let stop = StopCriteria {
        max_new_tokens: 10,
        stop_strings: vec![],
        stop_at_eos: false,
    };
    let run = |seed| {
        let mut s = model.session().unwrap();
        s.extend(&tokens).unwrap();
        s.generate(
            &SamplingParams::with_temperature(0.9, seed),
            &stop,
            &mut |_| {},
            &CancelToken::new(),
        )
        .unwrap()
    };
    let (a, b) = (run(5), run(5));
    assert_eq!(a.tokens.len(), 10);
    assert_eq!(a.tokens, b.tokens, "same seed, same tokens");
    let batch = model
        .generate_batch(
            &tokens,
            &[
                SamplingParams::with_temperature(0.9, 5),
                SamplingParams::with_temperature(0.9, 6),
            ],
            &stop,
            &mut |_| {},
            &CancelToken::new(),
        )
        .unwrap();
    assert_eq!(
        batch[0].tokens, a.tokens,
        "batched dense model reproduces the single run"
    );
}

#[test]
fn safetensors_tiny_qwen2_loads_and_matches_reference() {
    let _serial = serial();
    check_tiny(TinyArch::Qwen2);
}

#[test]
fn safetensors_tiny_llama_loads_and_matches_reference() {
    let _serial = serial();
    check_tiny(TinyArch::Llama);
}
