//! `scot train selection`: the paper's selection adapter for a target model, fitted on the model's
//! last block from `scot collect selection` data.
//!
//! Each example's residual stream entering the last block is computed once by the quantized engine
//! (cached on disk); every step then runs only the last position through the dense last block with
//! the LoRA terms, back-propagates the selection loss to the factors and updates them (AdamW, one
//! example per step, a shuffled order per epoch). Held-out examples (`--eval-data`) are scored before
//! training and after every epoch.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use candle_core::Tensor;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use scot_engine::{LoadOptions, Model, TopBlock};
use scot_selection::{read_examples, SelectionExample, SelectorProbs};
use serde::Serialize;

use crate::adamw::{AdamW, AdamWParams};
use crate::checkpoint::{Checkpoint, Progress, RunSettings};
use crate::error::TrainError;
use crate::lora_params::{LoraParams, LoraShape};
use crate::residual_cache::ResidualCache;
use crate::selection_loss::{chosen_option, selection_loss};

/// Train a selection adapter (see README, Training).
#[derive(Debug, Clone, clap::Args)]
pub struct TrainSelectionArgs {
    /// The target model, exactly as the target node serves it (the data must have been rendered by
    /// a node with this model).
    #[arg(long)]
    pub model: PathBuf,
    /// Selection data files (`scot collect selection`).
    #[arg(long, num_args = 1.., required = true)]
    pub data: Vec<PathBuf>,
    /// Held-out selection data, scored before training and after every epoch (each file apart).
    #[arg(long, num_args = 1..)]
    pub eval_data: Vec<PathBuf>,
    /// The adapter folder (PEFT format); its `checkpoint/` lets an interrupted run resume.
    #[arg(long)]
    pub out: PathBuf,
    /// Where the residual streams are cached (default: <out>/residuals).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    #[arg(long, default_value_t = 5)]
    pub epochs: usize,
    #[arg(long, default_value_t = 1e-4)]
    pub lr: f64,
    #[arg(long, default_value_t = 8)]
    pub r: usize,
    #[arg(long, default_value_t = 32.0)]
    pub alpha: f64,
    /// Modules of the last block to adapt.
    #[arg(long, value_delimiter = ',', default_value = "q_proj,v_proj")]
    pub modules: Vec<String>,
    /// Seeds the factors' initialisation and the epochs' orders.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Steps between checkpoints (every epoch's end is one too).
    #[arg(long, default_value_t = 50)]
    pub checkpoint_every: usize,
}

/// How a selector does on a set of examples.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SelectionScore {
    pub examples: usize,
    /// Mean selection loss.
    pub loss: f64,
    /// The chosen option is a label: a correct draft, or "all wrong" when none is.
    pub accuracy: f64,
    /// Examples with a correct draft, and how often one of them was chosen (the paper's
    /// selection accuracy).
    pub with_a_correct_draft: usize,
    pub correct_draft_chosen: f64,
    /// How often a draft (not "all wrong") was chosen.
    pub accepted: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct EpochReport {
    pub epoch: usize,
    pub train_loss: f64,
    /// Per held-out file (its stem).
    pub eval: BTreeMap<String, SelectionScore>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TrainSummary {
    pub adapter: PathBuf,
    pub examples: usize,
    pub eval_examples: usize,
    pub steps: usize,
    pub resumed_at_step: Option<usize>,
    pub residual_seconds: f64,
    pub training_seconds: f64,
    pub train_before: SelectionScore,
    pub train_after: SelectionScore,
    pub eval_before: BTreeMap<String, SelectionScore>,
    pub epochs: Vec<EpochReport>,
}

/// An example ready for the block: its prompt, its options' positions among the scored tokens, labels.
struct Prepared {
    id: String,
    tokens: Vec<u32>,
    options: Tensor,
    labels: Vec<u32>,
    has_correct_draft: bool,
    none_option: u32,
}

pub fn run_train_selection(args: TrainSelectionArgs) -> Result<TrainSummary, TrainError> {
    let train = read_all(&args.data)?;
    let mut held_out_sets = Vec::new();
    for path in &args.eval_data {
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        held_out_sets.push((stem, read_examples(path)?));
    }
    let held_out: Vec<SelectionExample> =
        held_out_sets.iter().flat_map(|(_, e)| e.clone()).collect();
    if train.is_empty() {
        return Err(TrainError::InvalidArgument("no training examples".into()));
    }
    let fingerprint = scot_node_support::model_fingerprint(&args.model, None)?;
    for example in train.iter().chain(&held_out) {
        if example.model_fingerprint != fingerprint {
            return Err(TrainError::InvalidArgument(format!(
                "example {} was rendered for model {} but --model {} is {fingerprint}: collect the data with a target node serving this model",
                example.id,
                example.model_fingerprint,
                args.model.display()
            )));
        }
    }
    let model = Model::load(&LoadOptions::new(&args.model))?;
    // One block scores every option token any example uses.
    let mut scored: Vec<u32> = train
        .iter()
        .chain(&held_out)
        .flat_map(|e| e.option_token_ids.iter().copied())
        .collect();
    scored.sort_unstable();
    scored.dedup();
    let block = model.top_block(&scored)?;
    let prepare = |e: &SelectionExample| -> Result<Prepared, TrainError> {
        let at: Vec<u32> = e
            .option_token_ids
            .iter()
            .map(|t| scored.binary_search(t).map(|i| i as u32).unwrap_or(0))
            .collect();
        Ok(Prepared {
            id: e.id.clone(),
            tokens: e.prompt_token_ids.clone(),
            options: Tensor::new(at.as_slice(), &candle_core::Device::Cpu)?,
            labels: e.labels.clone(),
            has_correct_draft: e.drafts.iter().any(|d| d.correct),
            none_option: e.drafts.len() as u32 + 1,
        })
    };
    let train_set = train.iter().map(&prepare).collect::<Result<Vec<_>, _>>()?;
    let mut eval_sets = Vec::new();
    for (name, examples) in &held_out_sets {
        let prepared = examples
            .iter()
            .map(&prepare)
            .collect::<Result<Vec<_>, _>>()?;
        eval_sets.push((name.clone(), prepared));
    }

    let cache_dir = args
        .cache_dir
        .clone()
        .unwrap_or_else(|| args.out.join("residuals"));
    let cache = ResidualCache::new(&cache_dir, &fingerprint)?;
    let started = Instant::now();
    let all: Vec<&Prepared> = train_set
        .iter()
        .chain(eval_sets.iter().flat_map(|(_, set)| set))
        .collect();
    let missing = all.iter().filter(|p| !cache.has(&p.tokens)).count();
    for (i, p) in all.iter().filter(|p| !cache.has(&p.tokens)).enumerate() {
        cache.fill(&model, &p.tokens)?;
        tracing::info!(
            done = i + 1,
            of = missing,
            tokens = p.tokens.len(),
            "residual stream cached"
        );
    }
    let residual_seconds = started.elapsed().as_secs_f64();

    let shape = LoraShape {
        r: args.r,
        alpha: args.alpha,
        modules: args.modules.clone(),
    };
    let params = LoraParams::init(&block, &shape, args.seed)?;
    let optimizer = AdamWParams::with_lr(args.lr);
    let mut opt = AdamW::new(params.vars(), optimizer)?;
    let settings = RunSettings {
        model_fingerprint: fingerprint.clone(),
        lora: shape,
        optimizer,
        seed: args.seed,
        examples: train.iter().map(|e| e.id.clone()).collect(),
    };
    let checkpoint = Checkpoint::new(&args.out.join("checkpoint"));
    let resumed = checkpoint.resume(&settings, &params, &mut opt)?;
    let resumed_at_step = resumed.as_ref().map(|p| p.step);
    let mut progress = resumed.unwrap_or(Progress {
        settings,
        epoch: 0,
        next: 0,
        step: 0,
        epoch_losses: Vec::new(),
        loss_sum: 0.0,
    });
    // Scores "before" describe the run's starting point (the base model unless resumed).
    let train_before = score(&block, &params, &cache, &train_set)?;
    let score_held_out =
        |params: &LoraParams| -> Result<BTreeMap<String, SelectionScore>, TrainError> {
            eval_sets
                .iter()
                .map(|(name, set)| Ok((name.clone(), score(&block, params, &cache, set)?)))
                .collect()
        };
    let eval_before = score_held_out(&params)?;
    let training = Instant::now();
    let mut epochs = Vec::new();
    while progress.epoch < args.epochs {
        let order = epoch_order(train_set.len(), args.seed, progress.epoch);
        while progress.next < order.len() {
            let p = &train_set[order[progress.next]];
            let x = cache.load(&p.tokens)?;
            let logits = block
                .last_logits(&x, &params.terms())?
                .index_select(&p.options, 0)?;
            let loss = selection_loss(&logits, &p.labels)?;
            progress.loss_sum += f64::from(loss.to_scalar::<f32>()?);
            opt.apply(&loss.backward()?)?;
            progress.next += 1;
            progress.step += 1;
            if args.checkpoint_every > 0 && progress.step.is_multiple_of(args.checkpoint_every) {
                checkpoint.save(&params, &opt, &progress)?;
            }
        }
        let train_loss = progress.loss_sum / train_set.len() as f64;
        progress.epoch_losses.push(train_loss);
        progress.epoch += 1;
        progress.next = 0;
        progress.loss_sum = 0.0;
        checkpoint.save(&params, &opt, &progress)?;
        let eval = score_held_out(&params)?;
        tracing::info!(epoch = progress.epoch, train_loss, ?eval, "epoch done");
        epochs.push(EpochReport {
            epoch: progress.epoch,
            train_loss,
            eval,
        });
    }
    let training_seconds = training.elapsed().as_secs_f64();
    params.save_peft(&args.out, &args.model.display().to_string(), block.layer())?;
    let train_after = score(&block, &params, &cache, &train_set)?;
    write_selector_probs(
        &args.out.join(SELECTOR_PROBS_FILE),
        &block,
        &params,
        &cache,
        eval_sets.iter().flat_map(|(_, set)| set),
    )?;
    let summary = TrainSummary {
        adapter: args.out.clone(),
        examples: train_set.len(),
        eval_examples: held_out.len(),
        steps: progress.step,
        resumed_at_step,
        residual_seconds,
        training_seconds,
        train_before,
        train_after,
        eval_before,
        epochs,
    };
    let path = args.out.join("train-summary.json");
    let text = serde_json::to_string_pretty(&summary)
        .map_err(|e| TrainError::InvalidArgument(format!("cannot serialise the summary: {e}")))?;
    std::fs::write(&path, text).map_err(|e| TrainError::io(&path, e))?;
    Ok(summary)
}

/// The trained selector's option probabilities on every held-out example, beside the adapter
/// (`scot report --replay --selector-probs` decides with them).
pub const SELECTOR_PROBS_FILE: &str = "selector-probs.jsonl";

fn write_selector_probs<'a>(
    path: &std::path::Path,
    block: &TopBlock,
    params: &LoraParams,
    cache: &ResidualCache,
    set: impl Iterator<Item = &'a Prepared>,
) -> Result<(), TrainError> {
    let terms = params.terms();
    let mut text = String::new();
    for p in set {
        let x = cache.load(&p.tokens)?;
        let logits = block.last_logits(&x, &terms)?.index_select(&p.options, 0)?;
        let probs = candle_nn::ops::softmax(&logits, 0)?.to_vec1::<f32>()?;
        let line = SelectorProbs {
            id: p.id.clone(),
            option_probs: probs,
        };
        text.push_str(
            &serde_json::to_string(&line).map_err(|e| {
                TrainError::InvalidArgument(format!("cannot serialise {}: {e}", p.id))
            })?,
        );
        text.push('\n');
    }
    std::fs::write(path, text).map_err(|e| TrainError::io(path, e))
}

fn read_all(paths: &[PathBuf]) -> Result<Vec<SelectionExample>, TrainError> {
    let mut all = Vec::new();
    for path in paths {
        all.extend(read_examples(path)?);
    }
    Ok(all)
}

/// The examples' order in `epoch`: a shuffle seeded by the run's seed and the epoch, so a resumed
/// run walks the same order.
pub fn epoch_order(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = StdRng::seed_from_u64(seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    order.shuffle(&mut rng);
    order
}

fn score(
    block: &TopBlock,
    params: &LoraParams,
    cache: &ResidualCache,
    set: &[Prepared],
) -> Result<SelectionScore, TrainError> {
    let terms = params.terms();
    let mut s = SelectionScore {
        examples: set.len(),
        ..Default::default()
    };
    let (mut right, mut accepted, mut chosen_correct) = (0usize, 0usize, 0usize);
    for p in set {
        let x = cache.load(&p.tokens)?;
        let logits = block.last_logits(&x, &terms)?.index_select(&p.options, 0)?;
        s.loss += f64::from(selection_loss(&logits, &p.labels)?.to_scalar::<f32>()?);
        let chosen = chosen_option(&logits.to_vec1::<f32>()?);
        right += usize::from(p.labels.contains(&chosen));
        accepted += usize::from(chosen != p.none_option);
        if p.has_correct_draft {
            s.with_a_correct_draft += 1;
            chosen_correct += usize::from(p.labels.contains(&chosen));
        }
    }
    let n = set.len().max(1) as f64;
    s.loss /= n;
    s.accuracy = right as f64 / n;
    s.accepted = accepted as f64 / n;
    s.correct_draft_chosen = chosen_correct as f64 / s.with_a_correct_draft.max(1) as f64;
    Ok(s)
}
