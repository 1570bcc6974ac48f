//! scot-selection: which draft (if any) a request continues from, as pure functions.
//!
//! The same code decides live (the coordinator) and offline (`scot report --replay` re-deciding stored
//! problems), so a replay gives the live decision for the same inputs.
//! - [`votes`]: each draft's answer ([`draft_answer`]) and the drafts grouped by equivalent answer
//!   ([`AnswerTally`]).
//! - [`prior`]: the target's prior over option positions ([`SelectionPrior`], the file `scot
//!   calibrate` writes and the target node loads), estimating it and dividing it out.
//! - [`policy`]: the policies `paper`, `debiased`, `vote` and `hybrid` ([`SelectionPolicy`]), their
//!   parameters ([`PolicyParams`]) and [`decide`].
//! - [`training_data`]: the training examples `scot collect` writes and `scot train` reads
//!   ([`SelectionExample`], and the draft's [`AlignmentExample`]).

pub mod policy;
pub mod prior;
pub mod training_data;
pub mod votes;

pub use policy::{
    decide, needs_target, Basis, Decision, InvalidPolicy, PolicyParams, RejectReason,
    SelectionPolicy, TargetVerdict,
};
pub use prior::{estimate_prior, rotate, PriorError, SelectionPrior, PRIOR_FORMAT};
pub use training_data::{
    read_alignment_examples, read_examples, read_selector_probs, AlignmentExample,
    SelectionExample, SelectorProbs, TrainingDataError, TrainingDraft,
};
pub use votes::{draft_answer, AnswerTally};
