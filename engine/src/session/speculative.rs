//! Token-level speculative decoding (Leviathan et al., ICML 2023; Chen et al., 2023): a small draft
//! model of the same tokenizer proposes up to k tokens, the target scores them all in one forward
//! pass, and each is kept with probability min(1, p/q); the first one refused is replaced by a draw
//! from the residual max(0, p - q). The output is distributed exactly as the target's own sampling;
//! greedy output is the plain greedy output token for token, because the verification pass computes
//! every position bit-identical to a single decoding step (`Rows::Steps`).

use std::sync::Arc;

use candle_core::Tensor;

use super::Session;
use crate::error::{EngineError, Result};
use crate::generation::{
    CancelToken, FinishReason, SamplingParams, SequenceOutput, StopCriteria, TokenEvent,
};
use crate::linear::Rows;
use crate::model::Model;
use crate::sampling::{pick, Sampler};

/// Most tokens a draft may propose per round.
pub const MAX_SPECULATIVE_TOKENS: usize = 16;

/// Offsets the draft's sampling seed from the target's, so their streams are independent.
const DRAFT_SEED_OFFSET: u64 = 0x9E37_79B9_7F4A_7C15;

/// A draft model checked against its target (same token under every id they share), and how many
/// tokens it proposes per round.
#[derive(Debug, Clone)]
pub struct Speculator {
    draft: Arc<Model>,
    tokens: usize,
}

impl Speculator {
    /// Refuses a draft whose tokenizer maps any id differently from the target's (its proposals
    /// would mean other text), or a `tokens` outside 1..=[`MAX_SPECULATIVE_TOKENS`].
    pub fn new(target: &Model, draft: Arc<Model>, tokens: usize) -> Result<Self> {
        if !(1..=MAX_SPECULATIVE_TOKENS).contains(&tokens) {
            return Err(EngineError::InvalidRequest(format!(
                "speculative tokens must be in 1..={MAX_SPECULATIVE_TOKENS}, not {tokens}"
            )));
        }
        let (t, d) = (target.tokenizer(), draft.tokenizer());
        let (tv, dv) = (target.info().vocab_size, draft.info().vocab_size);
        let shared = t.vocab_size().min(d.vocab_size());
        let differs = (0..shared as u32).find(|&id| t.id_to_token(id) != d.id_to_token(id));
        if dv > tv || t.vocab_size() != d.vocab_size() || differs.is_some() {
            let at = differs.map_or(String::new(), |id| {
                format!(
                    "; token {id} is {:?} in the target and {:?} in the draft",
                    t.id_to_token(id),
                    d.id_to_token(id)
                )
            });
            return Err(EngineError::InvalidRequest(format!(
                "draft model {} cannot speculate for {}: their tokenizers differ (vocabularies \
                 {} and {} tokens, model rows {dv} and {tv}{at})",
                draft.path().display(),
                target.path().display(),
                d.vocab_size(),
                t.vocab_size(),
            )));
        }
        Ok(Self { draft, tokens })
    }

    pub fn draft(&self) -> &Model {
        &self.draft
    }

    pub fn tokens(&self) -> usize {
        self.tokens
    }
}

/// What speculation did in one session so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpeculationStats {
    /// Verification passes of the target.
    pub rounds: u64,
    /// Tokens the draft proposed.
    pub proposed: u64,
    /// Proposed tokens the target kept.
    pub accepted: u64,
    /// Rounds that ended at a refused proposal. Each judged proposal is one trial, so the
    /// per-token acceptance rate is `accepted / (accepted + rejected)`.
    pub rejected: u64,
}

impl SpeculationStats {
    /// The per-token acceptance rate (Leviathan et al.'s alpha); None before any judgement.
    pub fn acceptance_rate(&self) -> Option<f64> {
        let trials = self.accepted + self.rejected;
        (trials > 0).then(|| self.accepted as f64 / trials as f64)
    }
}

/// The draft's side of a speculative session: its own session on the draft model, holding the
/// target's tokens except `pending` (given to the target, not yet to the draft).
#[derive(Debug)]
pub(crate) struct Drafter<'m> {
    session: Session<'m>,
    tokens: usize,
    pending: Vec<u32>,
}

impl<'m> Drafter<'m> {
    pub fn new(speculator: &'m Speculator) -> Result<Self> {
        Ok(Self {
            session: speculator.draft.session()?,
            tokens: speculator.tokens,
            pending: Vec::new(),
        })
    }

    /// The target took `tokens` (a prompt, or text after generation): the draft reads them too.
    pub fn follow(&mut self, tokens: &[u32], cancel: &CancelToken) -> Result<()> {
        self.pending.extend_from_slice(tokens);
        self.session
            .extend_cancellable(&std::mem::take(&mut self.pending), cancel)
    }

    pub fn fork(&self) -> Result<Self> {
        Ok(Self {
            session: self.session.fork()?,
            tokens: self.tokens,
            pending: self.pending.clone(),
        })
    }

    /// Positions the draft can still propose from a target of `target_len` positions.
    fn room(&self, target_len: usize) -> usize {
        self.session.context_limit().saturating_sub(target_len)
    }

    /// Reads `pending` and `token`, then proposes `k` tokens, each drawn from the draft's
    /// distribution under `sampling`, which it returns with them (None when greedy: one-hot).
    fn propose(&mut self, token: u32, k: usize, sampler: &mut Sampler) -> Result<Vec<Proposal>> {
        self.pending.push(token);
        self.session.extend(&std::mem::take(&mut self.pending))?;
        let mut proposals = Vec::with_capacity(k);
        for i in 0..k {
            let logits = self.session.last_logits()?;
            let proposal = if sampler.is_greedy() {
                Proposal {
                    token: crate::sampling::argmax(&logits),
                    q: None,
                }
            } else {
                let q = sampler.probabilities(&logits)?;
                let token = pick(&q, sampler.uniform())
                    .ok_or_else(|| EngineError::InvalidRequest("draft has no mass".into()))?;
                Proposal { token, q: Some(q) }
            };
            // The last proposal is read only if the target keeps it (see `keep`).
            if i + 1 < k {
                self.session.extend(&[proposal.token])?;
            }
            proposals.push(proposal);
        }
        Ok(proposals)
    }

    /// After a round from a target of `base` positions: the target kept `kept` of the tokens the
    /// draft read or proposed (the round's first token and then the proposals).
    fn keep(&mut self, base: usize, kept: usize, proposals: &[Proposal]) {
        let read = self.session.len();
        if base + kept <= read {
            self.session.truncate(base + kept);
        } else if let Some(last) = proposals.last() {
            // Every proposal was kept: the draft has not read the last one yet.
            self.pending.push(last.token);
        }
    }
}

#[derive(Debug)]
struct Proposal {
    token: u32,
    /// The draft distribution it was drawn from (None: greedy).
    q: Option<Vec<f64>>,
}

/// The target's verdict on one proposed token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Keep,
    /// Refused; this token, drawn from the residual distribution, goes in its place.
    Replace(u32),
}

/// The acceptance rule: keep `x` (drawn from `q`) when `u < p(x) / q(x)`; otherwise draw from
/// max(0, p - q) normalised, with `u_residual`. `p` and `q` are the target's and the draft's
/// sampling distributions (`q` may be shorter: a smaller draft vocabulary).
pub(crate) fn judge(p: &[f64], q: &[f64], x: u32, u: f64, u_residual: f64) -> Verdict {
    let px = p.get(x as usize).copied().unwrap_or(0.0);
    let qx = q.get(x as usize).copied().unwrap_or(0.0);
    if qx > 0.0 && u < px / qx {
        return Verdict::Keep;
    }
    let residual: Vec<f64> = p
        .iter()
        .enumerate()
        .map(|(i, &pi)| (pi - q.get(i).copied().unwrap_or(0.0)).max(0.0))
        .collect();
    // p == q up to rounding leaves no residual mass: then p itself.
    let token = pick(&residual, u_residual).or_else(|| pick(p, u_residual));
    Verdict::Replace(token.unwrap_or(x))
}

/// `Session::generate` with a drafter: same contract (every returned token left in the cache).
pub(crate) fn generate(
    session: &mut Session<'_>,
    sampling: &SamplingParams,
    stop: &StopCriteria,
    on_token: &mut dyn FnMut(&TokenEvent),
    cancel: &CancelToken,
) -> Result<SequenceOutput> {
    let mut sampler = Sampler::new(sampling)?;
    let mut draft_sampler = Sampler::new(&SamplingParams {
        seed: sampling.seed.wrapping_add(DRAFT_SEED_OFFSET),
        ..sampling.clone()
    })?;
    let mut run = session.sequence_run(stop);
    if run.exhausted() {
        return run.finish(FinishReason::Length);
    }
    let mut logits = session.last_logits()?;
    // A token already streamed but not yet in the target's cache (a replacement).
    let mut streamed: Option<u32> = None;
    loop {
        if cancel.is_cancelled() {
            if let Some(token) = streamed {
                session.step(token)?;
            }
            return run.finish(FinishReason::Cancelled);
        }
        let token = match streamed.take() {
            Some(token) => token,
            None => {
                if session.len() >= session.context_limit() {
                    return run.finish(FinishReason::Length);
                }
                let token = sampler.sample(&logits)?;
                let (event, finished) = run.accept(token)?;
                on_token(&event);
                if let Some(reason) = finished {
                    session.step(token)?;
                    return run.finish(reason);
                }
                token
            }
        };
        let base = session.len();
        let budget = stop.max_new_tokens.saturating_sub(run.generated());
        let room = session.context_limit().saturating_sub(base + 1);
        let k = match session.drafter_mut() {
            Some(d) => d.tokens.min(budget).min(room).min(d.room(base)),
            None => 0,
        };
        let proposals = match (k, session.drafter_mut()) {
            (0, _) | (_, None) => None,
            (_, Some(drafter)) => match drafter.propose(token, k, &mut draft_sampler) {
                Ok(p) => Some(p),
                // The draft's context is full (its model's is shorter): plain decoding from here.
                Err(EngineError::ContextOverflow { .. }) => {
                    session.drop_drafter();
                    None
                }
                Err(e) => return Err(e),
            },
        };
        let Some(proposals) = proposals else {
            logits = session.step(token)?;
            continue;
        };
        let mut ids = Vec::with_capacity(k + 1);
        ids.push(token);
        ids.extend(proposals.iter().map(|p| p.token));
        let rows = session.verify(&ids)?;
        let mut kept = 0;
        let mut verdict = Verdict::Keep;
        // The logits the refused proposal was judged by: those after the last kept token.
        let mut refused_at = Vec::new();
        for (j, proposal) in proposals.iter().enumerate() {
            let p_logits = row(&rows, j)?;
            verdict = match &proposal.q {
                None => match crate::sampling::argmax(&p_logits) {
                    best if best == proposal.token => Verdict::Keep,
                    best => Verdict::Replace(best),
                },
                Some(q) => {
                    let p = sampler.probabilities(&p_logits)?;
                    let (u, u_residual) = (sampler.uniform(), sampler.uniform());
                    judge(&p, q, proposal.token, u, u_residual)
                }
            };
            if verdict != Verdict::Keep {
                refused_at = p_logits;
                break;
            }
            kept += 1;
            let (event, finished) = run.accept(proposal.token)?;
            on_token(&event);
            if let Some(reason) = finished {
                session.count_round(k, kept, false);
                session.keep(base, 1 + kept, &proposals, row(&rows, kept)?);
                return run.finish(reason);
            }
        }
        session.count_round(k, kept, verdict != Verdict::Keep);
        match verdict {
            Verdict::Keep => {
                logits = row(&rows, k)?;
                session.keep(base, 1 + k, &proposals, logits.clone());
            }
            Verdict::Replace(replacement) => {
                session.keep(base, 1 + kept, &proposals, refused_at);
                let (event, finished) = run.accept(replacement)?;
                on_token(&event);
                if let Some(reason) = finished {
                    session.step(replacement)?;
                    return run.finish(reason);
                }
                streamed = Some(replacement);
            }
        }
    }
}

fn row(rows: &Tensor, i: usize) -> Result<Vec<f32>> {
    Ok(rows.get(i)?.to_vec1::<f32>()?)
}

impl<'m> Session<'m> {
    /// Target side of a round: drops the verified tokens past `base + kept`, lets the draft follow,
    /// and records the logits after the last kept token.
    fn keep(&mut self, base: usize, kept: usize, proposals: &[Proposal], logits: Vec<f32>) {
        self.truncate(base + kept);
        self.set_logits(logits);
        if let Some(drafter) = self.drafter_mut() {
            drafter.keep(base, kept, proposals);
        }
    }

    fn count_round(&mut self, proposed: usize, accepted: usize, rejected: bool) {
        if let Some(stats) = self.speculation_mut() {
            stats.rounds += 1;
            stats.proposed += proposed as u64;
            stats.accepted += accepted as u64;
            stats.rejected += u64::from(rejected);
        }
    }

    /// Scores `ids` as consecutive decoding steps: their logits, one row each.
    fn verify(&mut self, ids: &[u32]) -> Result<Tensor> {
        self.forward_rows(ids, Rows::Steps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// The rule's output is distributed as p whatever q is: the guarantee that makes speculative
    /// sampling exact. Checked empirically on a few (p, q) pairs, including q missing p's mode and
    /// q shorter than p.
    #[test]
    fn judged_tokens_follow_the_target_distribution() {
        let cases: Vec<(Vec<f64>, Vec<f64>)> = vec![
            (vec![0.5, 0.3, 0.2], vec![0.2, 0.3, 0.5]),
            (vec![0.7, 0.2, 0.1, 0.0], vec![0.0, 0.1, 0.1, 0.8]),
            (vec![0.25, 0.25, 0.25, 0.25], vec![0.25, 0.25, 0.25, 0.25]),
            (vec![0.1, 0.1, 0.8], vec![0.6, 0.4]),
        ];
        let mut rng = StdRng::seed_from_u64(7);
        let trials = 200_000;
        for (p, q) in cases {
            let mut counts = vec![0usize; p.len()];
            for _ in 0..trials {
                let x = pick(&q, rng.random()).unwrap();
                let token = match judge(&p, &q, x, rng.random(), rng.random()) {
                    Verdict::Keep => x,
                    Verdict::Replace(t) => t,
                };
                counts[token as usize] += 1;
            }
            for (i, (&c, &pi)) in counts.iter().zip(&p).enumerate() {
                let seen = c as f64 / trials as f64;
                // 5 standard deviations of a binomial proportion, at least 0.002.
                let tol = (5.0 * (pi * (1.0 - pi) / trials as f64).sqrt()).max(0.002);
                assert!(
                    (seen - pi).abs() < tol,
                    "p={p:?} q={q:?}: token {i} seen {seen:.4}, expected {pi}"
                );
            }
        }
    }

    #[test]
    fn one_hot_distributions_keep_only_the_target_choice() {
        let p = [0.0, 1.0, 0.0];
        assert_eq!(judge(&p, &[0.0, 1.0, 0.0], 1, 0.99, 0.5), Verdict::Keep);
        assert_eq!(
            judge(&p, &[1.0, 0.0, 0.0], 0, 0.0, 0.5),
            Verdict::Replace(1)
        );
    }
}
