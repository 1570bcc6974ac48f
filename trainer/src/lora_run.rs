//! What every LoRA training command shares: its flags ([`LoraTrainingArgs`]), the residual streams
//! cached before training, and the run itself ([`fit`], [`LoraRun`]): factors initialised or
//! restored from the checkpoint, then epochs of one example per step (a shuffled order per epoch,
//! AdamW), a checkpoint every few steps and at every epoch's end, held-out scores before training
//! and after each epoch, the PEFT adapter saved. The commands differ only in their data, the loss
//! of one example and what they score ([`Task`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use candle_core::Tensor;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use scot_engine::{LoraTerms, Model, TopBlock};
use serde::Serialize;

use crate::adamw::{AdamW, AdamWParams};
use crate::checkpoint::{Checkpoint, Progress, RunSettings};
use crate::error::TrainError;
use crate::lora_params::{LoraParams, LoraShape};
use crate::residual_cache::ResidualCache;

/// The flags of `scot train selection` and `scot train alignment`.
#[derive(Debug, Clone, clap::Args)]
pub struct LoraTrainingArgs {
    /// The model to adapt, exactly as its node serves it (the data must have been rendered by a
    /// node serving this model).
    #[arg(long)]
    pub model: PathBuf,
    /// Training data files (`scot collect`).
    #[arg(long, num_args = 1.., required = true)]
    pub data: Vec<PathBuf>,
    /// Held-out data, scored before training and after every epoch (each file apart).
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

impl LoraTrainingArgs {
    /// The residual cache of `model_fingerprint`, filled for every token sequence given (the
    /// prefills through the frozen lower blocks: the expensive part of training, done once).
    /// Returns the cache and the seconds the missing prefills took.
    pub fn residuals<'a>(
        &self,
        model: &Model,
        model_fingerprint: &str,
        sequences: impl Iterator<Item = &'a [u32]>,
    ) -> Result<(ResidualCache, f64), TrainError> {
        let dir = self
            .cache_dir
            .clone()
            .unwrap_or_else(|| self.out.join("residuals"));
        let cache = ResidualCache::new(&dir, model_fingerprint)?;
        let started = Instant::now();
        let missing: Vec<&[u32]> = sequences.filter(|t| !cache.has(t)).collect();
        for (i, tokens) in missing.iter().enumerate() {
            cache.fill(model, tokens)?;
            tracing::info!(
                done = i + 1,
                of = missing.len(),
                tokens = tokens.len(),
                "residual stream cached"
            );
        }
        Ok((cache, started.elapsed().as_secs_f64()))
    }
}

/// What a training command trains: how its prepared examples enter the last block, the loss of
/// one, and how a set of them is scored.
pub trait Task {
    type Prepared;
    type Score: Serialize + std::fmt::Debug;
    /// The tokens whose residual stream the example reads.
    fn input(p: &Self::Prepared) -> &[u32];
    /// The example's scalar loss, from its residual stream `x`.
    fn loss(&self, x: &Tensor, terms: &LoraTerms, p: &Self::Prepared)
        -> Result<Tensor, TrainError>;
    fn score(
        &self,
        params: &LoraParams,
        cache: &ResidualCache,
        set: &[Self::Prepared],
    ) -> Result<Self::Score, TrainError>;
    /// Settings of the task beyond the shared flags that change what is learnt; a checkpoint made
    /// under others is refused.
    fn settings(&self) -> String {
        String::new()
    }
}

/// What a training run did (written as `<out>/train-summary.json`).
#[derive(Debug, Clone, Serialize)]
pub struct Fitted<S> {
    pub adapter: PathBuf,
    pub examples: usize,
    pub eval_examples: usize,
    pub steps: usize,
    pub resumed_at_step: Option<usize>,
    pub residual_seconds: f64,
    pub training_seconds: f64,
    /// Scores "before" describe the run's starting point (the base model unless resumed).
    pub train_before: S,
    pub train_after: S,
    pub eval_before: BTreeMap<String, S>,
    pub epochs: Vec<EpochReport<BTreeMap<String, S>>>,
}

/// Trains `block`'s factors on `sets` for `task` and saves the adapter in `args.out`; returns what
/// the run did, the factors and the residual cache (for what a command writes besides).
pub fn fit<T: Task>(
    args: &LoraTrainingArgs,
    model: &Model,
    block: &TopBlock,
    model_fingerprint: &str,
    example_ids: Vec<String>,
    sets: &PreparedSets<T::Prepared>,
    task: &T,
) -> Result<(Fitted<T::Score>, LoraParams, ResidualCache), TrainError> {
    let (cache, residual_seconds) =
        args.residuals(model, model_fingerprint, sets.all().map(T::input))?;
    let mut run = LoraRun::start(args, block, model_fingerprint, example_ids, task.settings())?;
    let train_before = task.score(&run.params, &cache, &sets.train)?;
    let score_held_out =
        |params: &LoraParams| sets.score_held_out(|set| task.score(params, &cache, set));
    let eval_before = score_held_out(&run.params)?;
    let training = Instant::now();
    let epochs = run.train(
        sets.train.len(),
        |i, terms| {
            let p = &sets.train[i];
            task.loss(&cache.load(T::input(p))?, terms, p)
        },
        score_held_out,
    )?;
    let training_seconds = training.elapsed().as_secs_f64();
    run.params
        .save_peft(&args.out, &args.model.display().to_string(), block.layer())?;
    let fitted = Fitted {
        adapter: args.out.clone(),
        examples: sets.train.len(),
        eval_examples: sets.held_out.iter().map(|(_, set)| set.len()).sum(),
        steps: run.steps(),
        resumed_at_step: run.resumed_at_step,
        residual_seconds,
        training_seconds,
        train_before,
        train_after: task.score(&run.params, &cache, &sets.train)?,
        eval_before,
        epochs,
    };
    Ok((fitted, run.params, cache))
}

/// One epoch's training loss and held-out scores.
#[derive(Debug, Clone, Serialize)]
pub struct EpochReport<S> {
    pub epoch: usize,
    pub train_loss: f64,
    pub eval: S,
}

/// A training run: its factors, optimiser and progress (restored when a checkpoint is there).
pub struct LoraRun {
    pub params: LoraParams,
    opt: AdamW,
    checkpoint: Checkpoint,
    progress: Progress,
    epochs: usize,
    seed: u64,
    checkpoint_every: usize,
    /// The step a checkpoint put the run at, when it resumed.
    pub resumed_at_step: Option<usize>,
}

impl LoraRun {
    /// Factors for `block`'s modules, resumed from `<out>/checkpoint` when one of the same
    /// settings (model, data ids, shape, optimiser, seed) is there.
    pub fn start(
        args: &LoraTrainingArgs,
        block: &TopBlock,
        model_fingerprint: &str,
        example_ids: Vec<String>,
        task: String,
    ) -> Result<Self, TrainError> {
        let shape = LoraShape {
            r: args.r,
            alpha: args.alpha,
            modules: args.modules.clone(),
        };
        let params = LoraParams::init(block, &shape, args.seed)?;
        let optimizer = AdamWParams::with_lr(args.lr);
        let mut opt = AdamW::new(params.vars(), optimizer)?;
        let settings = RunSettings {
            model_fingerprint: model_fingerprint.to_string(),
            lora: shape,
            optimizer,
            seed: args.seed,
            examples: example_ids,
            task,
        };
        let checkpoint = Checkpoint::new(&args.out.join("checkpoint"));
        let resumed = checkpoint.resume(&settings, &params, &mut opt)?;
        let resumed_at_step = resumed.as_ref().map(|p| p.step);
        let progress = resumed.unwrap_or(Progress {
            settings,
            epoch: 0,
            next: 0,
            step: 0,
            epoch_losses: Vec::new(),
            loss_sum: 0.0,
        });
        Ok(Self {
            params,
            opt,
            checkpoint,
            progress,
            epochs: args.epochs,
            seed: args.seed,
            checkpoint_every: args.checkpoint_every,
            resumed_at_step,
        })
    }

    /// Steps taken (resumed ones included).
    pub fn steps(&self) -> usize {
        self.progress.step
    }

    /// Runs the remaining epochs: `loss(i, terms)` is example i's scalar loss under the current
    /// factors; `score` the held-out scores after each epoch. Returns the epochs run now.
    pub fn train<S>(
        &mut self,
        examples: usize,
        loss: impl Fn(usize, &LoraTerms) -> Result<Tensor, TrainError>,
        score: impl Fn(&LoraParams) -> Result<S, TrainError>,
    ) -> Result<Vec<EpochReport<S>>, TrainError>
    where
        S: std::fmt::Debug,
    {
        let mut reports = Vec::new();
        while self.progress.epoch < self.epochs {
            let order = epoch_order(examples, self.seed, self.progress.epoch);
            while self.progress.next < order.len() {
                let loss = loss(order[self.progress.next], &self.params.terms())?;
                self.progress.loss_sum += f64::from(loss.to_scalar::<f32>()?);
                self.opt.apply(&loss.backward()?)?;
                self.progress.next += 1;
                self.progress.step += 1;
                if self.checkpoint_every > 0
                    && self.progress.step.is_multiple_of(self.checkpoint_every)
                {
                    self.checkpoint
                        .save(&self.params, &self.opt, &self.progress)?;
                }
            }
            let train_loss = self.progress.loss_sum / examples.max(1) as f64;
            self.progress.epoch_losses.push(train_loss);
            self.progress.epoch += 1;
            self.progress.next = 0;
            self.progress.loss_sum = 0.0;
            self.checkpoint
                .save(&self.params, &self.opt, &self.progress)?;
            let eval = score(&self.params)?;
            tracing::info!(epoch = self.progress.epoch, train_loss, ?eval, "epoch done");
            reports.push(EpochReport {
                epoch: self.progress.epoch,
                train_loss,
                eval,
            });
        }
        Ok(reports)
    }
}

/// The examples' order in `epoch`: a shuffle seeded by the run's seed and the epoch, so a resumed
/// run walks the same order.
pub fn epoch_order(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = StdRng::seed_from_u64(seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    order.shuffle(&mut rng);
    order
}

/// A held-out file's name in reports: its stem.
pub fn file_stem(path: &std::path::Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// Writes a run's summary as `<out>/train-summary.json`.
pub fn write_summary(out: &std::path::Path, summary: &impl Serialize) -> Result<(), TrainError> {
    let path = out.join("train-summary.json");
    let text = serde_json::to_string_pretty(summary)
        .map_err(|e| TrainError::InvalidArgument(format!("cannot serialise the summary: {e}")))?;
    std::fs::write(&path, text).map_err(|e| TrainError::io(&path, e))
}

/// The fingerprint of `--model`, after checking every example was rendered by a node serving it.
pub fn model_fingerprint<'a>(
    args: &LoraTrainingArgs,
    examples: impl Iterator<Item = (&'a str, &'a str)>,
) -> Result<String, TrainError> {
    let fingerprint = scot_node_support::model_fingerprint(&args.model, None)?;
    for (id, rendered_for) in examples {
        if rendered_for != fingerprint {
            return Err(TrainError::InvalidArgument(format!(
                "example {id} was rendered for model {rendered_for} but --model {} is {fingerprint}: collect the data with a node serving this model",
                args.model.display()
            )));
        }
    }
    Ok(fingerprint)
}

/// A run's examples made ready for the block: the training set and each held-out file's.
pub struct PreparedSets<P> {
    pub train: Vec<P>,
    /// (file stem, examples)
    pub held_out: Vec<(String, Vec<P>)>,
}

impl<P> PreparedSets<P> {
    pub fn new<E>(
        train: &[E],
        held_out: &[(String, Vec<E>)],
        prepare: impl Fn(&E) -> Result<P, TrainError>,
    ) -> Result<Self, TrainError> {
        let train = train.iter().map(&prepare).collect::<Result<Vec<_>, _>>()?;
        let held_out = held_out
            .iter()
            .map(|(name, set)| {
                Ok((
                    name.clone(),
                    set.iter().map(&prepare).collect::<Result<Vec<_>, _>>()?,
                ))
            })
            .collect::<Result<Vec<_>, TrainError>>()?;
        Ok(Self { train, held_out })
    }

    /// Training examples, then every held-out one.
    pub fn all(&self) -> impl Iterator<Item = &P> {
        self.train
            .iter()
            .chain(self.held_out.iter().flat_map(|(_, set)| set))
    }

    /// `score` of each held-out file, by stem.
    pub fn score_held_out<S>(
        &self,
        score: impl Fn(&[P]) -> Result<S, TrainError>,
    ) -> Result<BTreeMap<String, S>, TrainError> {
        self.held_out
            .iter()
            .map(|(name, set)| Ok((name.clone(), score(set)?)))
            .collect()
    }
}

/// The examples of every file, read by `read`, in order.
pub fn read_all<E>(
    paths: &[PathBuf],
    read: impl Fn(&std::path::Path) -> Result<Vec<E>, scot_selection::TrainingDataError>,
) -> Result<Vec<E>, TrainError> {
    let mut all = Vec::new();
    for path in paths {
        all.extend(read(path)?);
    }
    Ok(all)
}

/// Each held-out file read by `read`, named by its stem.
pub fn read_held_out<E>(
    paths: &[PathBuf],
    read: impl Fn(&std::path::Path) -> Result<Vec<E>, scot_selection::TrainingDataError>,
) -> Result<Vec<(String, Vec<E>)>, TrainError> {
    paths
        .iter()
        .map(|path| Ok((file_stem(path), read(path)?)))
        .collect()
}
