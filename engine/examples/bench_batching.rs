//! Continuous batching benchmark (engine level): N sessions decoding at once on one model (their
//! steps batched by the engine loop) against the same N requests one after another, in the same
//! run. Checks every concurrent output equals its sequential one, and reports aggregate decode
//! tokens/s, the speed-up and the mean batch size.
//!
//! ```text
//! cargo run --release -p scot-engine --example bench_batching -- \
//!     --model ~/.cache/scot/models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf \
//!     --sessions 1,2,4,8,16 --tokens 64
//! ```
//! Each session gets its own prompt (different lengths, so different positions) and greedy
//! decoding; prefill is included (it runs between the others' steps, as on a node).

use std::path::PathBuf;
use std::sync::Barrier;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use scot_engine::{CancelToken, LoadOptions, Model, SamplingParams, StopCriteria};

fn prompt(model: &Model, i: usize) -> Result<Vec<u32>> {
    let text = format!(
        "<|im_start|>user\nA farmer has {} cows and buys {} more each week{}. How many cows after {} weeks? Think step by step.<|im_end|>\n<|im_start|>assistant\n",
        10 + i,
        3 + i % 5,
        ", but sells one every second week".repeat(i % 4),
        4 + i % 7
    );
    Ok(model.tokenizer().encode(&text, false)?)
}

fn generate(model: &Model, prompt: &[u32], tokens: usize) -> Result<Vec<u32>> {
    let mut session = model.session()?;
    session.extend(prompt)?;
    let stop = StopCriteria {
        max_new_tokens: tokens,
        stop_strings: Vec::new(),
        stop_at_eos: false,
    };
    Ok(session
        .generate(
            &SamplingParams::greedy(),
            &stop,
            &mut |_| {},
            &CancelToken::new(),
        )?
        .tokens)
}

fn main() -> Result<()> {
    let mut model_path = PathBuf::new();
    let mut sessions = vec![1, 2, 4, 8, 16];
    let mut tokens = 64;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--model" => model_path = PathBuf::from(value()?),
            "--tokens" => tokens = value()?.parse()?,
            "--sessions" => {
                sessions = value()?
                    .split(',')
                    .map(|k| k.trim().parse())
                    .collect::<Result<_, _>>()?
            }
            other => bail!(
                "unknown flag {other}; usage: --model F [--sessions 1,2,4,8,16] [--tokens 64]"
            ),
        }
    }
    let model = Model::load(&LoadOptions::new(&model_path))?;
    println!("| sessions | one after another, tok/s | together, tok/s | speed-up | mean batch | outputs equal |");
    println!("|---|---|---|---|---|---|");
    for &n in &sessions {
        let prompts = (0..n)
            .map(|i| prompt(&model, i))
            .collect::<Result<Vec<_>>>()?;
        let started = Instant::now();
        let alone = prompts
            .iter()
            .map(|p| generate(&model, p, tokens))
            .collect::<Result<Vec<_>>>()?;
        let sequential = started.elapsed().as_secs_f64();
        let before = model.step_stats();
        let barrier = Barrier::new(n);
        let started = Instant::now();
        let together = std::thread::scope(|scope| {
            let handles: Vec<_> = prompts
                .iter()
                .map(|p| {
                    let (model, barrier) = (&model, &barrier);
                    scope.spawn(move || {
                        barrier.wait();
                        generate(model, p, tokens)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a session thread panicked"))
                .collect::<Result<Vec<_>>>()
        })?;
        let concurrent = started.elapsed().as_secs_f64();
        let after = model.step_stats();
        let equal = alone.iter().zip(&together).filter(|(a, t)| a == t).count();
        let total = (n * tokens) as f64;
        let batch = (after.decode_rows - before.decode_rows) as f64
            / (after.decode_batches - before.decode_batches).max(1) as f64;
        println!(
            "| {n} | {:.1} | {:.1} | {:.2}x | {batch:.1} | {equal} of {n} |",
            total / sequential,
            total / concurrent,
            sequential / concurrent
        );
    }
    Ok(())
}
