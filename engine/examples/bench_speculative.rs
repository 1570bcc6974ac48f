//! Token-level speculative decoding benchmark: the target's greedy decode alone, then with the draft
//! proposing k tokens per verification pass, on the same prompts in the same run. Checks that every
//! speculative output equals the plain one, and compares the measured speed-up with what Leviathan et
//! al.'s formula predicts from the measured acceptance rate and cost ratio.
//!
//! ```text
//! cargo run --release -p scot-engine --example bench_speculative -- \
//!     --target ~/.cache/scot/models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf \
//!     --draft ~/.cache/scot/models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf \
//!     --problems ../shared/data/gsm8k.jsonl --count 5 --tokens 128 --k 1,2,3,4,6
//! ```
//! Prompts: the first `--count` problems of a JSONL file (field `problem`), each asked as
//! "Solve step by step" through the target's chat template. Prefill is not timed; decoding is.
//! Prints a markdown table on stdout; progress on stderr.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use scot_engine::{
    CancelToken, ChatMessage, LoadOptions, Model, SamplingParams, SpeculationStats, Speculator,
    StopCriteria,
};

struct Args {
    target: PathBuf,
    draft: PathBuf,
    problems: PathBuf,
    count: usize,
    tokens: usize,
    ks: Vec<usize>,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        target: PathBuf::new(),
        draft: PathBuf::new(),
        problems: PathBuf::new(),
        count: 5,
        tokens: 128,
        ks: vec![1, 2, 3, 4, 6],
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--target" => args.target = PathBuf::from(value()?),
            "--draft" => args.draft = PathBuf::from(value()?),
            "--problems" => args.problems = PathBuf::from(value()?),
            "--count" => args.count = value()?.parse()?,
            "--tokens" => args.tokens = value()?.parse()?,
            "--k" => {
                args.ks = value()?
                    .split(',')
                    .map(|k| k.trim().parse())
                    .collect::<Result<_, _>>()?
            }
            "-h" | "--help" => {
                eprintln!("usage: bench_speculative --target F --draft F --problems F.jsonl [--count 5] [--tokens 128] [--k 1,2,3,4,6]");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other}"),
        }
    }
    for (name, path) in [
        ("--target", &args.target),
        ("--draft", &args.draft),
        ("--problems", &args.problems),
    ] {
        if path.as_os_str().is_empty() {
            bail!("{name} is required");
        }
    }
    if args.count == 0 || args.tokens == 0 || args.ks.is_empty() {
        bail!("--count, --tokens and --k must be positive");
    }
    Ok(args)
}

fn problems(path: &PathBuf, count: usize) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path:?}"))?;
    text.lines()
        .take(count)
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line)?;
            v["problem"]
                .as_str()
                .map(str::to_string)
                .context("a line without a `problem` string")
        })
        .collect()
}

/// Greedy decode of `tokens` after `prompt` (prefill untimed): output ids, decode seconds and the
/// session's speculation.
fn decode(
    model: &Model,
    speculator: Option<&Speculator>,
    prompt: &[u32],
    tokens: usize,
) -> Result<(Vec<u32>, f64, Option<SpeculationStats>)> {
    let mut session = match speculator {
        Some(s) => model.speculative_session(s)?,
        None => model.session()?,
    };
    session.extend(prompt)?;
    let stop = StopCriteria {
        max_new_tokens: tokens,
        stop_strings: vec![],
        stop_at_eos: false,
    };
    let started = Instant::now();
    let out = session.generate(
        &SamplingParams::greedy(),
        &stop,
        &mut |_| {},
        &CancelToken::new(),
    )?;
    Ok((
        out.tokens,
        started.elapsed().as_secs_f64(),
        session.speculation(),
    ))
}

#[derive(Default, Clone, Copy)]
struct Totals {
    secs: f64,
    tokens: usize,
    stats: SpeculationStats,
}

impl Totals {
    fn add(&mut self, secs: f64, tokens: usize, stats: Option<SpeculationStats>) {
        self.secs += secs;
        self.tokens += tokens;
        if let Some(s) = stats {
            self.stats.rounds += s.rounds;
            self.stats.proposed += s.proposed;
            self.stats.accepted += s.accepted;
            self.stats.rejected += s.rejected;
        }
    }

    fn per_token(&self) -> f64 {
        self.secs / self.tokens as f64
    }
}

/// Leviathan et al.'s expected speed-up for acceptance rate `alpha`, `k` proposals per round, a draft
/// step costing `c` target steps and a verification pass costing `v` target steps (their formula
/// takes v = 1).
fn predicted_speedup(alpha: f64, k: usize, c: f64, v: f64) -> f64 {
    let tokens_per_round = if alpha >= 1.0 {
        (k + 1) as f64
    } else {
        (1.0 - alpha.powi(k as i32 + 1)) / (1.0 - alpha)
    };
    tokens_per_round / (k as f64 * c + v)
}

fn main() -> Result<()> {
    let args = parse_args()?;
    eprintln!("loading {:?} and {:?}", args.target, args.draft);
    let target = Model::load(&LoadOptions::new(&args.target))?;
    let draft = Arc::new(Model::load(&LoadOptions::new(&args.draft))?);
    let template = target
        .chat_template()
        .context("the target has no chat template")?;
    let prompts = problems(&args.problems, args.count)?
        .iter()
        .map(|p| {
            let text = template.render(
                &[ChatMessage::new("user", format!("Solve step by step: {p}"))],
                true,
            )?;
            Ok(target.tokenizer().encode(&text, false)?)
        })
        .collect::<Result<Vec<_>>>()?;
    let speculators = args
        .ks
        .iter()
        .map(|&k| Speculator::new(&target, draft.clone(), k))
        .collect::<Result<Vec<_>, _>>()?;

    let mut plain = Totals::default();
    let mut draft_alone = Totals::default();
    let mut spec = vec![Totals::default(); args.ks.len()];
    let mut mismatches = 0;
    // Interleaved per prompt, so a slow phase of the machine hits every configuration alike.
    for (i, prompt) in prompts.iter().enumerate() {
        let (expected, secs, _) = decode(&target, None, prompt, args.tokens)?;
        plain.add(secs, expected.len(), None);
        let plain_rate = expected.len() as f64 / secs.max(1e-9);
        let (ids, secs, _) = decode(&draft, None, prompt, args.tokens)?;
        draft_alone.add(secs, ids.len(), None);
        for (j, speculator) in speculators.iter().enumerate() {
            let (ids, secs, stats) = decode(&target, Some(speculator), prompt, args.tokens)?;
            if ids != expected {
                mismatches += 1;
                eprintln!("MISMATCH: prompt {i}, k={}", speculator.tokens());
            }
            spec[j].add(secs, ids.len(), stats);
        }
        eprintln!(
            "prompt {}/{}: plain target {plain_rate:.1} tok/s",
            i + 1,
            prompts.len(),
        );
    }

    let c = draft_alone.per_token() / plain.per_token();
    println!(
        "target {}, draft {}; {} prompts x {} greedy tokens; plain target {:.2} tok/s, draft alone {:.2} tok/s, c = draft step / target step = {c:.3}",
        target.info().name,
        draft.info().name,
        prompts.len(),
        args.tokens,
        1.0 / plain.per_token(),
        1.0 / draft_alone.per_token(),
    );
    println!();
    println!("| k | tok/s | speed-up | alpha | kept / round | verify cost v (target steps) | predicted (v = 1) | measured / predicted (v = 1) | predicted (measured v) |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for (k, t) in args.ks.iter().zip(&spec) {
        let speedup = plain.per_token() / t.per_token();
        let alpha = t.stats.acceptance_rate().unwrap_or(0.0);
        let rounds = t.stats.rounds.max(1) as f64;
        // Each round: k draft steps and one verification; solve the round's time for v.
        let round_secs = t.secs / rounds;
        let v = (round_secs - *k as f64 * draft_alone.per_token()) / plain.per_token();
        let ideal = predicted_speedup(alpha, *k, c, 1.0);
        println!(
            "| {k} | {:.2} | {speedup:.2}x | {alpha:.3} | {:.2} | {v:.2} | {ideal:.2}x | {:.0} % | {:.2}x |",
            1.0 / t.per_token(),
            t.stats.accepted as f64 / rounds,
            100.0 * speedup / ideal,
            predicted_speedup(alpha, *k, c, v),
        );
    }
    println!();
    println!(
        "greedy outputs identical to plain decoding: {}",
        if mismatches == 0 {
            "all".to_string()
        } else {
            format!("NO ({mismatches} differ)")
        }
    );
    if mismatches > 0 {
        bail!("{mismatches} speculative outputs differ from plain greedy decoding");
    }
    Ok(())
}
