//! `scot train alignment`: the draft model fitted on the target's chains of thought (the paper's
//! thinking-behaviour alignment), on the draft's last block, from `scot collect alignment` data.
//!
//! Each example is the draft prompt (as the draft node renders it) followed by the target's chain
//! and the end-of-thinking marker; the loss is the mean next-token cross-entropy of that
//! continuation. The residual stream entering the last block is computed once per example by the
//! quantized engine (cached on disk); every step runs the continuation's positions through the
//! dense last block with the LoRA terms and the whole output projection.

use candle_core::{Device, Tensor};
use scot_engine::{LoadOptions, LoraTerms, Model, TopBlock};
use scot_selection::{read_alignment_examples, AlignmentExample};
use serde::Serialize;

use crate::error::TrainError;
use crate::lora_params::LoraParams;
use crate::lora_run::{
    fit, model_fingerprint, read_all, read_held_out, write_summary, Fitted, LoraTrainingArgs,
    PreparedSets, Task,
};
use crate::next_token_loss::{greedy_agreement, next_token_loss};
use crate::residual_cache::ResidualCache;

/// Align a draft model on the target's chains (see README, Training).
#[derive(Debug, Clone, clap::Args)]
pub struct TrainAlignmentArgs {
    /// `--model` is the draft model; `--data` and `--eval-data` are `scot collect alignment` files.
    #[command(flatten)]
    pub lora: LoraTrainingArgs,
    /// Also learn chains after which the target answered wrongly (default: only right ones).
    #[arg(long)]
    pub include_wrong: bool,
    /// Continuation tokens learnt per example at most; a longer chain is cut there.
    #[arg(long, default_value_t = 1024)]
    pub max_chain_tokens: usize,
}

/// How well the draft predicts the target's chains.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ChainScore {
    pub examples: usize,
    pub tokens: usize,
    /// Mean cross-entropy per continuation token (nats).
    pub loss: f64,
    /// How often the draft's greedy pick is the target's next token.
    pub greedy_agreement: f64,
}

/// What `scot train alignment` did.
#[derive(Debug, Clone, Serialize)]
pub struct AlignmentSummary {
    #[serde(flatten)]
    pub fitted: Fitted<ChainScore>,
    /// Lines left out: the target answered wrongly (without --include-wrong).
    pub left_out_wrong: usize,
}

/// An example ready for the block: the tokens read (prompt and continuation but its last token),
/// where the continuation starts, and the tokens to predict.
struct Prepared {
    input: Vec<u32>,
    from: usize,
    targets: Tensor,
}

pub fn run_train_alignment(args: TrainAlignmentArgs) -> Result<AlignmentSummary, TrainError> {
    let lora = &args.lora;
    if args.max_chain_tokens == 0 {
        return Err(TrainError::InvalidArgument(
            "--max-chain-tokens must be positive".into(),
        ));
    }
    let mut train = read_all(&lora.data, read_alignment_examples)?;
    let all = train.len();
    if !args.include_wrong {
        train.retain(|e| e.correct);
    }
    let left_out_wrong = all - train.len();
    if train.is_empty() {
        return Err(TrainError::InvalidArgument(format!(
            "no training examples ({left_out_wrong} left out as wrongly answered; --include-wrong keeps them)"
        )));
    }
    let held_out_sets = read_held_out(&lora.eval_data, read_alignment_examples)?;
    let fingerprint = model_fingerprint(
        lora,
        train
            .iter()
            .chain(held_out_sets.iter().flat_map(|(_, set)| set))
            .map(|e| (e.id.as_str(), e.model_fingerprint.as_str())),
    )?;
    let model = Model::load(&LoadOptions::new(&lora.model))?;
    let block = model.top_block_full_vocabulary()?;
    let prepare = |e: &AlignmentExample| -> Result<Prepared, TrainError> {
        let mut continuation = model.tokenizer().encode(&e.continuation(), false)?;
        continuation.truncate(args.max_chain_tokens);
        if continuation.is_empty() {
            return Err(TrainError::InvalidArgument(format!(
                "example {}: the chain encodes to no tokens",
                e.id
            )));
        }
        let mut input = e.prompt_token_ids.clone();
        input.extend_from_slice(&continuation[..continuation.len() - 1]);
        Ok(Prepared {
            input,
            from: e.prompt_token_ids.len() - 1,
            targets: Tensor::new(continuation.as_slice(), &Device::Cpu)?,
        })
    };
    let sets = PreparedSets::new(&train, &held_out_sets, prepare)?;
    let (fitted, _, _) = fit(
        lora,
        &model,
        &block,
        &fingerprint,
        train.iter().map(|e| e.id.clone()).collect(),
        &sets,
        &Alignment {
            block: &block,
            max_chain_tokens: args.max_chain_tokens,
        },
    )?;
    let summary = AlignmentSummary {
        fitted,
        left_out_wrong,
    };
    write_summary(&lora.out, &summary)?;
    Ok(summary)
}

struct Alignment<'a> {
    block: &'a TopBlock,
    max_chain_tokens: usize,
}

impl Task for Alignment<'_> {
    type Prepared = Prepared;
    type Score = ChainScore;

    fn input(p: &Prepared) -> &[u32] {
        &p.input
    }

    fn loss(&self, x: &Tensor, terms: &LoraTerms, p: &Prepared) -> Result<Tensor, TrainError> {
        next_token_loss(&self.block.logits_from(x, terms, p.from)?, &p.targets)
    }

    fn score(
        &self,
        params: &LoraParams,
        cache: &ResidualCache,
        set: &[Prepared],
    ) -> Result<ChainScore, TrainError> {
        score(self.block, params, cache, set)
    }

    fn settings(&self) -> String {
        format!("max_chain_tokens={}", self.max_chain_tokens)
    }
}

fn score(
    block: &TopBlock,
    params: &LoraParams,
    cache: &ResidualCache,
    set: &[Prepared],
) -> Result<ChainScore, TrainError> {
    let terms = params.terms();
    let (mut loss_sum, mut agreed, mut tokens) = (0f64, 0usize, 0usize);
    for p in set {
        let logits = block.logits_from(&cache.load(&p.input)?, &terms, p.from)?;
        let n = p.targets.dim(0)?;
        loss_sum += f64::from(next_token_loss(&logits, &p.targets)?.to_scalar::<f32>()?) * n as f64;
        agreed += greedy_agreement(&logits, &p.targets)?;
        tokens += n;
    }
    let per_token = tokens.max(1) as f64;
    Ok(ChainScore {
        examples: set.len(),
        tokens,
        loss: loss_sum / per_token,
        greedy_agreement: agreed as f64 / per_token,
    })
}
