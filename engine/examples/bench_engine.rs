//! Engine benchmark: prefill tokens/s for a fixed-length prompt, greedy decode tokens/s at batch 1, and
//! decode throughput of `Model::generate_batch` with 5 sequences, plus peak RSS (VmHWM).
//!
//! ```text
//! RAYON_NUM_THREADS=2 cargo run --release -p scot-engine --example bench_engine -- \
//!     --model ~/.cache/scot/models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf \
//!     --prompt-tokens 512 --decode-tokens 64 --batch 5 --reps 2 --prompt-out /tmp/prompt.json
//! ```
//! Prints one JSON object on stdout; progress goes to stderr. `--prompt-out` writes the prompt's token
//! ids so scripts/bench_llamacpp.py can feed llama.cpp the very same tokens.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use candle_core::quantized::gguf_file;
use scot_engine::{
    BatchEvent, CancelToken, LoadOptions, Model, SamplingParams, StopCriteria, TextTokenizer,
};

struct Args {
    model: PathBuf,
    prompt_tokens: usize,
    decode_tokens: usize,
    batch: usize,
    reps: usize,
    prompt_out: Option<PathBuf>,
    /// Run only this phase (prefill | decode | batch), e.g. under `perf record`.
    only: Option<String>,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        model: PathBuf::new(),
        prompt_tokens: 512,
        decode_tokens: 64,
        batch: 5,
        reps: 2,
        prompt_out: None,
        only: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--model" => args.model = PathBuf::from(value()?),
            "--prompt-tokens" => args.prompt_tokens = value()?.parse()?,
            "--decode-tokens" => args.decode_tokens = value()?.parse()?,
            "--batch" => args.batch = value()?.parse()?,
            "--reps" => args.reps = value()?.parse()?,
            "--prompt-out" => args.prompt_out = Some(PathBuf::from(value()?)),
            "--only" => args.only = Some(value()?),
            "-h" | "--help" => {
                eprintln!("usage: bench_engine --model FILE.gguf [--prompt-tokens 512] [--decode-tokens 64] [--batch 5] [--reps 2] [--prompt-out ids.json] [--only prefill|decode|batch]");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other}"),
        }
    }
    if let Some(only) = &args.only {
        if !["prefill", "decode", "batch"].contains(&only.as_str()) {
            bail!("--only takes prefill, decode or batch");
        }
    }
    if args.model.as_os_str().is_empty() {
        bail!("--model is required");
    }
    if args.reps == 0 || args.batch == 0 || args.decode_tokens == 0 || args.prompt_tokens == 0 {
        bail!("--reps, --batch, --decode-tokens and --prompt-tokens must be positive");
    }
    Ok(args)
}

/// A deterministic prompt of exactly `n` tokens: numbered arithmetic word problems, as a math eval sends.
fn build_prompt(tok: &TextTokenizer, n: usize) -> Result<Vec<u32>> {
    let mut text = String::from(
        "Solve the following problems step by step and give each final answer in \\boxed{}.\n",
    );
    let mut i = 1u64;
    loop {
        let ids = tok.encode(&text, false)?;
        if ids.len() >= n {
            return Ok(ids[..n].to_vec());
        }
        let (a, b, c) = (i * 7 % 97 + 3, i * 13 % 89 + 5, i * 3 % 11 + 2);
        text.push_str(&format!(
            "Problem {i}: A shop sells {a} apples on Monday and {b} apples on Tuesday. Each crate holds {c} \
             apples. How many full crates were sold over the two days, and how many apples are left over?\n"
        ));
        i += 1;
    }
}

/// Peak resident set size (VmHWM) of this process, in bytes.
fn peak_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// (layers, kv_heads, head_dim) from GGUF metadata, for the KV-cache size.
fn kv_shape(path: &std::path::Path) -> Result<(usize, usize, usize)> {
    let mut f = std::fs::File::open(path)?;
    let content = gguf_file::Content::read(&mut f)?;
    let arch = content
        .metadata
        .get("general.architecture")
        .context("general.architecture")?
        .to_string()?
        .clone();
    let get = |key: &str| -> Result<usize> {
        Ok(content
            .metadata
            .get(&format!("{arch}.{key}"))
            .with_context(|| format!("{arch}.{key}"))?
            .to_u32()? as usize)
    };
    let layers = get("block_count")?;
    let heads = get("attention.head_count")?;
    let kv_heads = get("attention.head_count_kv")?;
    let head_dim = match get("attention.key_length") {
        Ok(d) => d,
        Err(_) => get("embedding_length")? / heads,
    };
    Ok((layers, kv_heads, head_dim))
}

fn tok_per_s(tokens: usize, d: Duration) -> f64 {
    tokens as f64 / d.as_secs_f64()
}

fn main() -> Result<()> {
    let args = parse_args()?;
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "all".into());
    eprintln!(
        "[engine] loading {} (threads {threads})",
        args.model.display()
    );
    let load_start = Instant::now();
    let model = Model::load(&LoadOptions::new(&args.model))?;
    let load_s = load_start.elapsed().as_secs_f64();
    let rss_after_load = peak_rss_bytes();
    let prompt = build_prompt(model.tokenizer(), args.prompt_tokens)?;
    if let Some(out) = &args.prompt_out {
        std::fs::write(out, serde_json::to_string(&prompt)?)?;
    }

    // Prefill: a fresh session per repetition; best of `reps` (least disturbed by other processes).
    let runs = |phase: &str| {
        if args.only.as_deref().is_none_or(|o| o == phase) {
            args.reps
        } else {
            0
        }
    };
    let mut prefill_runs = Vec::new();
    // The last prefilled session is kept: decode repetitions start from forks of it.
    let mut prefilled = None;
    for _ in 0..runs("prefill") {
        let mut session = model.session()?;
        let t = Instant::now();
        session.extend(&prompt)?;
        prefill_runs.push(tok_per_s(prompt.len(), t.elapsed()));
        prefilled = Some(session);
    }
    eprintln!("[engine] prefill tok/s {prefill_runs:.1?}");

    // Batch-1 greedy decode after the prompt: `decode_tokens` tokens = `decode_tokens` forward passes.
    let stop = StopCriteria {
        max_new_tokens: args.decode_tokens,
        stop_strings: Vec::new(),
        stop_at_eos: false,
    };
    let cancel = CancelToken::new();
    let mut decode_runs = Vec::new();
    // Every repetition decodes from its own fork of one prefilled cache.
    if prefilled.is_none() && runs("decode") > 0 {
        let mut session = model.session()?;
        session.extend(&prompt)?;
        prefilled = Some(session);
    }
    for _ in 0..runs("decode") {
        let Some(base) = &prefilled else { break };
        let mut session = base.fork()?;
        let t = Instant::now();
        let out = session.generate(&SamplingParams::greedy(), &stop, &mut |_| {}, &cancel)?;
        decode_runs.push(tok_per_s(out.tokens.len(), t.elapsed()));
    }
    drop(prefilled);
    eprintln!("[engine] decode b1 tok/s {decode_runs:.1?}");
    let rss_after_b1 = peak_rss_bytes();

    // Batch decode: prefill once, fork into `batch` sequences (drafting's sampling: temperature 0.6,
    // distinct seeds); throughput = generated tokens / (total time - prefill time).
    let sequences: Vec<SamplingParams> = (0..args.batch)
        .map(|i| SamplingParams::with_temperature(0.6, 1000 + i as u64))
        .collect();
    let mut batch_runs = Vec::new();
    for _ in 0..runs("batch") {
        let mut prefill = Duration::ZERO;
        let t = Instant::now();
        let outs = model.generate_batch(
            &prompt,
            &sequences,
            &stop,
            &mut |ev| {
                if let BatchEvent::Prefilled { elapsed, .. } = ev {
                    prefill = elapsed;
                }
            },
            &cancel,
        )?;
        let total = t.elapsed();
        let generated: usize = outs.iter().map(|o| o.tokens.len()).sum();
        batch_runs.push(tok_per_s(generated, total.saturating_sub(prefill)));
    }
    eprintln!(
        "[engine] decode b{} tok/s (all sequences) {batch_runs:.1?}",
        args.batch
    );
    let peak_rss = peak_rss_bytes();

    let best = |v: &[f64]| v.iter().cloned().fold(0.0, f64::max);
    let file_bytes = std::fs::metadata(&args.model)?.len();
    let (layers, kv_heads, head_dim) = kv_shape(&args.model)?;
    // The engine keeps K and V in f32 for every layer of every sequence.
    let kv_bytes_per_token = (2 * layers * kv_heads * head_dim * 4) as u64;
    let kv_tokens = (args.batch * (prompt.len() + args.decode_tokens)) as u64;
    let kv_bytes = kv_bytes_per_token * kv_tokens;
    let rss_budget = (1.2 * file_bytes as f64) as u64 + kv_bytes;
    let report = serde_json::json!({
        "side": "engine",
        "model": args.model.file_name().map(|s| s.to_string_lossy().into_owned()),
        "threads": threads,
        "prompt_tokens": prompt.len(),
        "decode_tokens": args.decode_tokens,
        "batch": args.batch,
        "load_s": load_s,
        "prefill_tok_s": best(&prefill_runs),
        "decode_b1_tok_s": best(&decode_runs),
        "decode_batch_tok_s": best(&batch_runs),
        "prefill_runs": prefill_runs,
        "decode_b1_runs": decode_runs,
        "decode_batch_runs": batch_runs,
        "file_bytes": file_bytes,
        "kv_cache_bytes": kv_bytes,
        "peak_rss_bytes": peak_rss,
        "peak_rss_after_load_bytes": rss_after_load,
        "peak_rss_after_b1_bytes": rss_after_b1,
        "rss_budget_bytes": rss_budget,
        "rss_within_budget": peak_rss <= rss_budget,
    });
    println!("{report}");
    Ok(())
}
