//! Tensor-parallel benchmark: prefill and greedy-decode tokens/s of one model at several tensor-
//! parallel degrees, with ratios against the first degree listed, all from the same run.
//!
//! ```text
//! cargo run --release -p scot-engine --example bench_tp -- \
//!     --model ~/.cache/scot/models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf \
//!     --tp 1,2 --prompt-tokens 256 --decode-tokens 32 --device cpu
//! ```
//! On GPUs: `--device cuda:0 --tp 1,2,4,8` (a build with `--features nccl`; rank r on cuda:r).
//! Prints a Markdown table on stdout; progress goes to stderr.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use scot_engine::{
    CancelToken, DeviceSpec, LoadOptions, Model, SamplingParams, StopCriteria, TextTokenizer,
};

struct Args {
    model: PathBuf,
    tp: Vec<usize>,
    prompt_tokens: usize,
    decode_tokens: usize,
    reps: usize,
    device: DeviceSpec,
}

fn parse_device(s: &str) -> Result<DeviceSpec> {
    if s == "cpu" {
        return Ok(DeviceSpec::Cpu);
    }
    let ordinal = s
        .strip_prefix("cuda:")
        .with_context(|| format!("--device takes cpu or cuda:N, not {s}"))?;
    Ok(DeviceSpec::Cuda(ordinal.parse()?))
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        model: PathBuf::new(),
        tp: vec![1, 2],
        prompt_tokens: 256,
        decode_tokens: 32,
        reps: 2,
        device: DeviceSpec::Cpu,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--model" => args.model = PathBuf::from(value()?),
            "--tp" => {
                args.tp = value()?
                    .split(',')
                    .map(|s| s.trim().parse::<usize>())
                    .collect::<Result<_, _>>()?
            }
            "--prompt-tokens" => args.prompt_tokens = value()?.parse()?,
            "--decode-tokens" => args.decode_tokens = value()?.parse()?,
            "--reps" => args.reps = value()?.parse()?,
            "--device" => args.device = parse_device(&value()?)?,
            "-h" | "--help" => {
                eprintln!("usage: bench_tp --model FILE.gguf [--tp 1,2] [--prompt-tokens 256] [--decode-tokens 32] [--reps 2] [--device cpu|cuda:N]");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other}"),
        }
    }
    if args.model.as_os_str().is_empty() {
        bail!("--model is required");
    }
    if args.tp.is_empty() || args.tp.contains(&0) {
        bail!("--tp takes a list of positive degrees, e.g. 1,2");
    }
    if args.reps == 0 || args.decode_tokens == 0 || args.prompt_tokens == 0 {
        bail!("--reps, --decode-tokens and --prompt-tokens must be positive");
    }
    Ok(args)
}

/// A deterministic prompt of exactly `n` tokens (numbered arithmetic word problems).
fn build_prompt(tok: &TextTokenizer, n: usize) -> Result<Vec<u32>> {
    let mut text = String::from("Solve the following problems step by step.\n");
    let mut i = 1u64;
    loop {
        let ids = tok.encode(&text, false)?;
        if ids.len() >= n {
            return Ok(ids[..n].to_vec());
        }
        let (a, b, c) = (i * 7 % 97 + 3, i * 13 % 89 + 5, i * 3 % 11 + 2);
        text.push_str(&format!(
            "Problem {i}: A shop sells {a} apples on Monday and {b} on Tuesday; a crate holds {c}. \
             How many full crates were sold, and how many apples are left over?\n"
        ));
        i += 1;
    }
}

fn tok_per_s(tokens: usize, d: Duration) -> f64 {
    tokens as f64 / d.as_secs_f64()
}

struct Row {
    tp: usize,
    load_s: f64,
    prefill: f64,
    decode: f64,
}

fn measure(args: &Args, tp: usize) -> Result<Row> {
    eprintln!("[bench_tp] loading {} at TP {tp}", args.model.display());
    let started = Instant::now();
    let model = Model::load(&LoadOptions {
        device: args.device,
        tensor_parallel: tp,
        ..LoadOptions::new(&args.model)
    })?;
    let load_s = started.elapsed().as_secs_f64();
    let prompt = build_prompt(model.tokenizer(), args.prompt_tokens)?;
    let stop = StopCriteria {
        max_new_tokens: args.decode_tokens,
        stop_strings: Vec::new(),
        stop_at_eos: false,
    };
    let (mut prefill, mut decode) = (0f64, 0f64);
    // Best of `reps`: the run least disturbed by other processes.
    for _ in 0..args.reps {
        let mut session = model.session()?;
        let t = Instant::now();
        session.extend(&prompt)?;
        prefill = prefill.max(tok_per_s(prompt.len(), t.elapsed()));
        let t = Instant::now();
        let out = session.generate(
            &SamplingParams::greedy(),
            &stop,
            &mut |_| {},
            &CancelToken::new(),
        )?;
        decode = decode.max(tok_per_s(out.tokens.len(), t.elapsed()));
    }
    eprintln!("[bench_tp] TP {tp}: prefill {prefill:.1} tok/s, decode {decode:.1} tok/s");
    Ok(Row {
        tp,
        load_s,
        prefill,
        decode,
    })
}

fn main() -> Result<()> {
    let args = parse_args()?;
    let rows = args
        .tp
        .iter()
        .map(|&tp| measure(&args, tp))
        .collect::<Result<Vec<_>>>()?;
    let base = &rows[0];
    println!(
        "model {}, device {}, prompt {} tokens, decode {} tokens, best of {}",
        args.model.display(),
        args.device,
        args.prompt_tokens,
        args.decode_tokens,
        args.reps
    );
    println!();
    println!(
        "| TP | load s | prefill tok/s | decode tok/s | prefill vs TP {} | decode vs TP {} |",
        base.tp, base.tp
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {:.1} | {:.1} | {:.2} | {:.2}x | {:.2}x |",
            r.tp,
            r.load_s,
            r.prefill,
            r.decode,
            r.prefill / base.prefill,
            r.decode / base.decode
        );
    }
    Ok(())
}
