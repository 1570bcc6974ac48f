//! `scot train selection`: the paper's selection adapter for a target model, fitted on the model's
//! last block from `scot collect selection` data.
//!
//! Each example's residual stream entering the last block is computed once by the quantized engine
//! (cached on disk); every step then runs only the last position through the dense last block with
//! the LoRA terms, back-propagates the selection loss to the factors and updates them (AdamW, one
//! example per step, a shuffled order per epoch). Held-out examples (`--eval-data`) are scored before
//! training and after every epoch.

use candle_core::Tensor;
use scot_engine::{LoadOptions, LoraTerms, Model, TopBlock};
use scot_selection::{read_examples, SelectionExample, SelectorProbs};
use serde::Serialize;

use crate::error::TrainError;
use crate::lora_params::LoraParams;
use crate::lora_run::{
    fit, model_fingerprint, read_all, read_held_out, write_summary, Fitted, LoraTrainingArgs,
    PreparedSets, Task,
};
use crate::residual_cache::ResidualCache;
use crate::selection_loss::{chosen_option, selection_loss};

/// Train a selection adapter (see README, Training).
#[derive(Debug, Clone, clap::Args)]
pub struct TrainSelectionArgs {
    /// `--model` is the target model; `--data` and `--eval-data` are `scot collect selection`
    /// files.
    #[command(flatten)]
    pub lora: LoraTrainingArgs,
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

/// What `scot train selection` did.
pub type TrainSummary = Fitted<SelectionScore>;

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
    let args = args.lora;
    let train = read_all(&args.data, read_examples)?;
    let held_out_sets = read_held_out(&args.eval_data, read_examples)?;
    let held_out: Vec<SelectionExample> =
        held_out_sets.iter().flat_map(|(_, e)| e.clone()).collect();
    if train.is_empty() {
        return Err(TrainError::InvalidArgument("no training examples".into()));
    }
    let fingerprint = model_fingerprint(
        &args,
        train
            .iter()
            .chain(&held_out)
            .map(|e| (e.id.as_str(), e.model_fingerprint.as_str())),
    )?;
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
    let sets = PreparedSets::new(&train, &held_out_sets, prepare)?;
    let task = Selection { block: &block };
    let (summary, params, cache) = fit(
        &args,
        &model,
        &block,
        &fingerprint,
        train.iter().map(|e| e.id.clone()).collect(),
        &sets,
        &task,
    )?;
    write_selector_probs(
        &args.out.join(SELECTOR_PROBS_FILE),
        &block,
        &params,
        &cache,
        sets.held_out.iter().flat_map(|(_, set)| set),
    )?;
    write_summary(&args.out, &summary)?;
    Ok(summary)
}

struct Selection<'a> {
    block: &'a TopBlock,
}

impl Task for Selection<'_> {
    type Prepared = Prepared;
    type Score = SelectionScore;

    fn input(p: &Prepared) -> &[u32] {
        &p.tokens
    }

    fn loss(&self, x: &Tensor, terms: &LoraTerms, p: &Prepared) -> Result<Tensor, TrainError> {
        let logits = self
            .block
            .last_logits(x, terms)?
            .index_select(&p.options, 0)?;
        selection_loss(&logits, &p.labels)
    }

    fn score(
        &self,
        params: &LoraParams,
        cache: &ResidualCache,
        set: &[Prepared],
    ) -> Result<SelectionScore, TrainError> {
        score(self.block, params, cache, set)
    }
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
