//! Next-token choice from logits: greedy, or temperature + top-k + top-p with a per-sequence seeded RNG.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::error::{EngineError, Result};
use crate::generation::SamplingParams;

pub(crate) struct Sampler {
    params: SamplingParams,
    rng: StdRng,
    /// The candidates of the last draw, kept so each step does not allocate a vocabulary's worth.
    scratch: Vec<(u32, f64)>,
}

impl Sampler {
    pub fn new(params: &SamplingParams) -> Result<Self> {
        let p = params;
        if !p.temperature.is_finite() {
            return Err(EngineError::InvalidRequest(format!(
                "temperature {} is not finite",
                p.temperature
            )));
        }
        if !(p.top_p > 0.0 && p.top_p <= 1.0) {
            return Err(EngineError::InvalidRequest(format!(
                "top_p {} must be in (0, 1]",
                p.top_p
            )));
        }
        Ok(Self {
            params: params.clone(),
            rng: StdRng::seed_from_u64(params.seed),
            scratch: Vec::new(),
        })
    }

    pub fn is_greedy(&self) -> bool {
        self.params.is_greedy()
    }

    pub fn sample(&mut self, logits: &[f32]) -> Result<u32> {
        if logits.is_empty() {
            return Err(EngineError::InvalidRequest("empty logits".into()));
        }
        if self.params.is_greedy() {
            return Ok(argmax(logits));
        }
        let mut cands = std::mem::take(&mut self.scratch);
        self.candidates_into(logits, &mut cands);
        let token = self.draw(&cands).unwrap_or_else(|| argmax(logits));
        self.scratch = cands;
        Ok(token)
    }

    /// A token drawn from candidates in proportion to their weights; None when they hold none.
    fn draw(&mut self, cands: &[(u32, f64)]) -> Option<u32> {
        let total: f64 = cands.iter().map(|c| c.1).sum();
        if cands.is_empty() || !total.is_finite() || total <= 0.0 {
            return None;
        }
        let r = self.rng.random::<f64>() * total;
        let mut acc = 0.0;
        for &(tok, p) in cands {
            acc += p;
            if r < acc {
                return Some(tok);
            }
        }
        cands.last().map(|c| c.0)
    }

    /// The distribution `sample` draws from, over the whole vocabulary (sums to 1): one-hot at the
    /// argmax when greedy. Speculative decoding compares the target's and the draft's.
    pub fn probabilities(&self, logits: &[f32]) -> Result<Vec<f64>> {
        if logits.is_empty() {
            return Err(EngineError::InvalidRequest("empty logits".into()));
        }
        let mut probs = vec![0.0; logits.len()];
        let mut cands = Vec::new();
        if !self.params.is_greedy() {
            self.candidates_into(logits, &mut cands);
        }
        let total: f64 = cands.iter().map(|c| c.1).sum();
        if cands.is_empty() || !total.is_finite() || total <= 0.0 {
            probs[argmax(logits) as usize] = 1.0;
            return Ok(probs);
        }
        for (tok, p) in cands {
            probs[tok as usize] = p / total;
        }
        Ok(probs)
    }

    /// A uniform draw in [0, 1) from this sampler's own stream.
    pub fn uniform(&mut self) -> f64 {
        self.rng.random::<f64>()
    }

    /// Candidates (token, unnormalised probability) after temperature, top-k and top-p, most likely
    /// first when filtering needed an order.
    fn candidates_into(&self, logits: &[f32], cands: &mut Vec<(u32, f64)>) {
        let temp = self.params.temperature as f64;
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        cands.clear();
        cands.extend(
            logits
                .iter()
                .enumerate()
                .map(|(i, &l)| (i as u32, ((l as f64 - max) / temp).exp()))
                .filter(|&(_, p)| p > 0.0),
        );
        let top_k = self.params.top_k;
        if top_k > 0 && top_k < cands.len() {
            cands.select_nth_unstable_by(top_k - 1, |a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            cands.truncate(top_k);
        }
        if self.params.top_p < 1.0 {
            cands.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            let total: f64 = cands.iter().map(|c| c.1).sum();
            let target = self.params.top_p as f64 * total;
            let mut acc = 0.0;
            let mut keep = cands.len();
            for (i, c) in cands.iter().enumerate() {
                acc += c.1;
                if acc >= target {
                    keep = i + 1;
                    break;
                }
            }
            cands.truncate(keep);
        }
    }
}

/// The token a uniform draw `u` in [0, 1) picks from `probs` (not necessarily normalised); None
/// when they hold no mass.
pub(crate) fn pick(probs: &[f64], u: f64) -> Option<u32> {
    let total: f64 = probs.iter().sum();
    if !total.is_finite() || total <= 0.0 {
        return None;
    }
    let r = u * total;
    let mut acc = 0.0;
    let mut last = None;
    for (tok, &p) in probs.iter().enumerate() {
        if p <= 0.0 {
            continue;
        }
        acc += p;
        last = Some(tok as u32);
        if r < acc {
            return last;
        }
    }
    last
}

/// Index of the largest logit (the lowest index on ties; NaNs never win).
pub(crate) fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0usize;
    let mut best_v = f32::NEG_INFINITY;
    for (i, &v) in logits.iter().enumerate() {
        if v > best_v {
            best = i;
            best_v = v;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_argmax() {
        let mut s = Sampler::new(&SamplingParams::greedy()).unwrap();
        assert_eq!(s.sample(&[0.1, 3.0, -1.0, 2.9]).unwrap(), 1);
    }

    #[test]
    fn same_seed_same_draws_and_top_k_one_is_greedy() {
        let logits: Vec<f32> = (0..100).map(|i| ((i * 37) % 11) as f32 * 0.3).collect();
        let p = SamplingParams::with_temperature(0.8, 7);
        let mut a = Sampler::new(&p).unwrap();
        let mut b = Sampler::new(&p).unwrap();
        let da: Vec<u32> = (0..50).map(|_| a.sample(&logits).unwrap()).collect();
        let db: Vec<u32> = (0..50).map(|_| b.sample(&logits).unwrap()).collect();
        assert_eq!(da, db);
        assert!(da.iter().collect::<std::collections::HashSet<_>>().len() > 1);
        let mut k1 = Sampler::new(&SamplingParams { top_k: 1, ..p }).unwrap();
        assert_eq!(k1.sample(&logits).unwrap(), argmax(&logits));
    }

    #[test]
    fn top_p_keeps_only_the_nucleus() {
        // token 2 holds almost all mass; top_p 0.5 must always pick it.
        let logits = [0.0f32, 0.0, 10.0, 0.0];
        let mut s = Sampler::new(&SamplingParams {
            temperature: 1.0,
            top_p: 0.5,
            top_k: 0,
            seed: 1,
        })
        .unwrap();
        for _ in 0..20 {
            assert_eq!(s.sample(&logits).unwrap(), 2);
        }
    }
}
