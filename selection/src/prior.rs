//! The target's prior over option positions (PriDe: Zheng et al., "Large Language Models Are Not
//! Robust Multiple Choice Selectors", ICLR 2024), the file that carries it, and dividing it out.
//!
//! Model: the probability the target gives draft position i is its prior for that position times what
//! it thinks of the draft shown there. Scoring the same drafts under every cyclic order puts each
//! draft at each position once, so the mean log-probability of a position over the orders is its log
//! prior plus constants: a softmax over positions recovers the prior. `scot calibrate` averages that
//! over a calibration set and writes a [`SelectionPrior`]; the target node loads it and divides it out
//! of every selection with the same number of drafts (no extra prefill per request).
//!
//! Only the n draft positions are debiased: option n+1 ("all wrong") never moves, so its prior cannot
//! be told apart from its content; its probability is kept and the drafts share the rest.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The `format` of a prior file this version reads and writes.
pub const PRIOR_FORMAT: &str = "scot-selection-prior/1";

/// A calibrated prior over draft positions for one (target model, template set, n).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SelectionPrior {
    pub format: String,
    /// Fingerprint of the target's weights and adapter (what the target node reports).
    pub model: String,
    /// The model's name, for people (not checked).
    #[serde(default)]
    pub model_name: String,
    pub template_set: String,
    /// Digest of the selection prompt the template set renders for n drafts on that model.
    pub prompt_digest: String,
    /// Number of drafts (options n+1 with "all wrong").
    pub n: u32,
    /// Prior of draft positions 1..n; positive, sums to 1.
    pub prior: Vec<f64>,
    /// Calibration problems the estimate averages over.
    pub problems: u32,
    /// Where the calibration drafts came from, for people.
    #[serde(default)]
    pub source: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PriorError {
    #[error("reading selection prior {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("selection prior {path} is not a prior file ({PRIOR_FORMAT}): {message}")]
    Parse { path: PathBuf, message: String },
    #[error("selection prior {path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error(
        "selection prior {path} was calibrated for {what} {expected:?}, but this node has {actual:?}: \
         run `scot calibrate` against this node to make one for it"
    )]
    Mismatch {
        path: PathBuf,
        what: &'static str,
        expected: String,
        actual: String,
    },
    #[error("calibration needs {message}")]
    Estimate { message: String },
}

impl SelectionPrior {
    /// Reads and checks a prior file.
    pub fn load(path: &Path) -> Result<Self, PriorError> {
        let text = std::fs::read_to_string(path).map_err(|source| PriorError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let prior: SelectionPrior = serde_json::from_str(&text).map_err(|e| PriorError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        prior.check(path)?;
        Ok(prior)
    }

    /// Writes the prior as pretty JSON.
    pub fn save(&self, path: &Path) -> Result<(), PriorError> {
        self.check(path)?;
        let text = serde_json::to_string_pretty(self).map_err(|e| PriorError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        std::fs::write(path, text + "\n").map_err(|source| PriorError::Read {
            path: path.to_path_buf(),
            source,
        })
    }

    fn check(&self, path: &Path) -> Result<(), PriorError> {
        let invalid = |message: String| PriorError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        if self.format != PRIOR_FORMAT {
            return Err(PriorError::Parse {
                path: path.to_path_buf(),
                message: format!("format is {:?}, expected {PRIOR_FORMAT:?}", self.format),
            });
        }
        if self.n == 0 || self.prior.len() != self.n as usize {
            return Err(invalid(format!(
                "n = {} but the prior has {} positions",
                self.n,
                self.prior.len()
            )));
        }
        if self.prior.iter().any(|p| !p.is_finite() || *p <= 0.0) {
            return Err(invalid(
                "every position's prior must be a positive number".into(),
            ));
        }
        let total: f64 = self.prior.iter().sum();
        if (total - 1.0).abs() > 1e-3 {
            return Err(invalid(format!("the prior sums to {total}, not 1")));
        }
        Ok(())
    }

    /// Refuses a prior made for another model or selection prompt.
    pub fn check_for(
        &self,
        path: &Path,
        model: &str,
        prompt_digest: &str,
    ) -> Result<(), PriorError> {
        let mismatch = |what, expected: &str, actual: &str| PriorError::Mismatch {
            path: path.to_path_buf(),
            what,
            expected: expected.to_string(),
            actual: actual.to_string(),
        };
        if self.model != model {
            return Err(mismatch("the model", &self.model, model));
        }
        if self.prompt_digest != prompt_digest {
            return Err(mismatch(
                "the selection prompt of template set",
                &format!("{} ({})", self.template_set, self.prompt_digest),
                &format!("{} ({prompt_digest})", self.template_set),
            ));
        }
        Ok(())
    }

    /// `probs` (n drafts + "all wrong", summing to 1) with the position prior divided out of the
    /// drafts; "all wrong" keeps its probability. None when `probs` has another number of options.
    pub fn debias(&self, probs: &[f32]) -> Option<Vec<f32>> {
        let n = self.n as usize;
        if probs.len() != n + 1 {
            return None;
        }
        let none = probs[n].clamp(0.0, 1.0) as f64;
        let scaled: Vec<f64> = probs[..n]
            .iter()
            .zip(&self.prior)
            .map(|(&p, &prior)| f64::from(p.max(0.0)) / prior)
            .collect();
        let total: f64 = scaled.iter().sum();
        let mut out: Vec<f32> = if total > 0.0 {
            scaled
                .iter()
                .map(|s| (s / total * (1.0 - none)) as f32)
                .collect()
        } else {
            vec![((1.0 - none) / n as f64) as f32; n]
        };
        out.push(none as f32);
        Some(out)
    }
}

/// `items` in cyclic order `shift`: position i shows item (i + shift) mod len.
pub fn rotate<T: Clone>(items: &[T], shift: usize) -> Vec<T> {
    let len = items.len();
    (0..len)
        .map(|i| items[(i + shift) % len.max(1)].clone())
        .collect()
}

/// The prior over n draft positions from calibration problems. `problems[p][r]` holds the option
/// log-probabilities (n drafts + "all wrong", any common offset) that the target gave problem p's
/// drafts in cyclic order r (see [`rotate`]), for every r in 0..n. Per problem: the softmax over
/// positions of the mean (over orders) log-probability among the drafts; then the mean over problems.
pub fn estimate_prior(problems: &[Vec<Vec<f32>>], n: usize) -> Result<Vec<f64>, PriorError> {
    let err = |message: String| PriorError::Estimate { message };
    if n == 0 || problems.is_empty() {
        return Err(err("at least one problem with at least one draft".into()));
    }
    let mut sum = vec![0.0f64; n];
    for (p, orders) in problems.iter().enumerate() {
        if orders.len() != n {
            return Err(err(format!(
                "all {n} cyclic orders of every problem; problem {p} has {}",
                orders.len()
            )));
        }
        let mut mean_log = vec![0.0f64; n];
        for order in orders {
            if order.len() != n + 1 || order.iter().any(|lp| !lp.is_finite()) {
                return Err(err(format!(
                    "{} finite option log-probabilities per order; problem {p} has {:?}",
                    n + 1,
                    order
                )));
            }
            let drafts = &order[..n];
            let max = drafts.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
            let log_total = max
                + drafts
                    .iter()
                    .map(|&lp| (lp as f64 - max).exp())
                    .sum::<f64>()
                    .ln();
            for (m, &lp) in mean_log.iter_mut().zip(drafts) {
                *m += (lp as f64 - log_total) / n as f64;
            }
        }
        let max = mean_log.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let weights: Vec<f64> = mean_log.iter().map(|m| (m - max).exp()).collect();
        let total: f64 = weights.iter().sum();
        for (s, w) in sum.iter_mut().zip(weights) {
            *s += w / total;
        }
    }
    let total: f64 = sum.iter().sum();
    Ok(sum.into_iter().map(|s| s / total).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prior(n: u32, values: Vec<f64>) -> SelectionPrior {
        SelectionPrior {
            format: PRIOR_FORMAT.into(),
            model: "m1".into(),
            model_name: "Test".into(),
            template_set: "default".into(),
            prompt_digest: "d1".into(),
            n,
            prior: values,
            problems: 3,
            source: "test".into(),
        }
    }

    #[test]
    fn rotation_shows_item_i_plus_shift() {
        assert_eq!(rotate(&[0, 1, 2], 1), vec![1, 2, 0]);
        assert_eq!(rotate(&[0, 1, 2], 0), vec![0, 1, 2]);
        assert!(rotate::<u8>(&[], 3).is_empty());
    }

    /// A synthetic target: P(position i) ∝ prior(i) * quality(draft shown at i); the estimate
    /// recovers the prior exactly from all cyclic orders, whatever the drafts' qualities.
    #[test]
    fn the_estimate_recovers_a_known_position_prior() {
        let true_prior = [0.4, 0.1, 0.2, 0.3];
        let n = true_prior.len();
        let problems: Vec<Vec<Vec<f32>>> = [[1.0, 3.0, 0.5, 2.0], [0.2, 0.2, 5.0, 1.0]]
            .iter()
            .map(|quality| {
                (0..n)
                    .map(|shift| {
                        let shown = rotate(quality, shift);
                        let mut lps: Vec<f32> = (0..n)
                            .map(|i| ((true_prior[i] * shown[i]) as f32).ln() - 2.0)
                            .collect();
                        lps.push(-3.0);
                        lps
                    })
                    .collect()
            })
            .collect();
        let estimate = estimate_prior(&problems, n).unwrap();
        for (e, t) in estimate.iter().zip(true_prior) {
            assert!((e - t).abs() < 1e-6, "{estimate:?}");
        }
        assert!(
            estimate_prior(&problems[..1], 3).is_err(),
            "orders must match n"
        );
        assert!(estimate_prior(&[], 4).is_err());
    }

    #[test]
    fn debiasing_divides_the_prior_out_of_the_drafts_only() {
        let p = prior(2, vec![0.8, 0.2]);
        let out = p.debias(&[0.6, 0.2, 0.2]).unwrap();
        // 0.6/0.8 = 0.75 and 0.2/0.2 = 1.0 share the drafts' 0.8.
        assert!((out[0] - 0.8 * 0.75 / 1.75).abs() < 1e-6, "{out:?}");
        assert!((out[1] - 0.8 * 1.0 / 1.75).abs() < 1e-6, "{out:?}");
        assert_eq!(out[2], 0.2);
        assert!(p.debias(&[0.5, 0.5]).is_none(), "another n is not debiased");
    }

    #[test]
    fn the_file_round_trips_and_refuses_another_model_or_prompt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("prior.json");
        let p = prior(3, vec![0.5, 0.25, 0.25]);
        p.save(&path).unwrap();
        let back = SelectionPrior::load(&path).unwrap();
        assert_eq!(back, p);
        back.check_for(&path, "m1", "d1").unwrap();
        let other_model = back.check_for(&path, "m2", "d1").unwrap_err().to_string();
        assert!(
            other_model.contains("the model") && other_model.contains("m2"),
            "{other_model}"
        );
        let other_prompt = back.check_for(&path, "m1", "d9").unwrap_err().to_string();
        assert!(other_prompt.contains("selection prompt"), "{other_prompt}");
    }

    #[test]
    fn malformed_files_are_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("prior.json");
        for (text, needle) in [("{}", "not a prior file"), ("not json", "not a prior file")] {
            std::fs::write(&path, text).unwrap();
            let e = SelectionPrior::load(&path).unwrap_err().to_string();
            assert!(e.contains(needle), "{e}");
        }
        for (bad, needle) in [
            (prior(3, vec![0.5, 0.5]), "3 but the prior has 2"),
            (prior(2, vec![0.5, -0.5]), "positive"),
            (prior(2, vec![0.5, 0.4]), "sums to"),
        ] {
            std::fs::write(&path, serde_json::to_string(&bad).unwrap()).unwrap();
            let e = SelectionPrior::load(&path).unwrap_err().to_string();
            assert!(e.contains(needle), "{e}");
        }
        let missing = SelectionPrior::load(&dir.path().join("none.json")).unwrap_err();
        assert!(missing.to_string().contains("reading selection prior"));
    }
}
