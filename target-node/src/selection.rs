//! Reading the target's choice from the log-probabilities of the valid option numbers only, so a model
//! that would write anything else cannot break selection.
//!
//! Each option number is tokenized (Qwen and Llama-3 style tokenizers write digits as their own
//! tokens) and the options form a trie over token sequences. The probability of a first token is
//! read from the single prefill; where a valid option extends another ("1" and "10".."19" once there
//! are 10+ options), the session is forked, the first token appended, and the next token's
//! log-probabilities read: the mass of "1" is split between the options "1x" (by P(x | "1")) and the
//! option "1" itself (the rest: the model stops after "1" or writes something that is not an option).
//! With up to 9 options this is exactly the paper's single-prefill read-out. The per-option values
//! are then renormalised over the options.

/// Log-probabilities of candidate tokens after the prompt followed by `prefix`.
pub trait OptionScorer {
    type Error;
    fn logprobs_after(
        &mut self,
        prefix: &[u32],
        candidates: &[u32],
    ) -> Result<Vec<f32>, Self::Error>;
}

#[derive(Debug, Clone, PartialEq)]
pub struct OptionScores {
    /// Per option: log of its (unnormalised) probability under the full-vocabulary softmax.
    pub logprobs: Vec<f32>,
    /// Per option: probability renormalised over the options (sums to 1).
    pub probs: Vec<f32>,
    /// 1-based index of the most likely option (ties: the lower number).
    pub chosen: u32,
}

/// Scores `options` (each a non-empty token sequence, option k at position k-1).
pub fn score_options<S: OptionScorer>(
    options: &[Vec<u32>],
    scorer: &mut S,
) -> Result<OptionScores, S::Error> {
    let mut out = vec![f64::NEG_INFINITY; options.len()];
    visit(&[], 0.0, options, scorer, &mut out)?;
    let max = out.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let probs: Vec<f32> = if max.is_finite() {
        let weights: Vec<f64> = out.iter().map(|&lp| (lp - max).exp()).collect();
        let total: f64 = weights.iter().sum();
        weights.iter().map(|w| (w / total) as f32).collect()
    } else {
        vec![1.0 / options.len().max(1) as f32; options.len()]
    };
    let mut chosen = 0usize;
    for (i, &lp) in out.iter().enumerate() {
        if lp > out[chosen] {
            chosen = i;
        }
    }
    Ok(OptionScores {
        logprobs: out.iter().map(|&lp| lp as f32).collect(),
        probs,
        chosen: chosen as u32 + 1,
    })
}

fn visit<S: OptionScorer>(
    prefix: &[u32],
    log_p_prefix: f64,
    options: &[Vec<u32>],
    scorer: &mut S,
    out: &mut [f64],
) -> Result<(), S::Error> {
    let mut next: Vec<u32> = Vec::new();
    let mut complete = None;
    for (i, option) in options.iter().enumerate() {
        if !option.starts_with(prefix) {
            continue;
        }
        match option.get(prefix.len()) {
            None => complete = complete.or(Some(i)),
            Some(&token) => {
                if !next.contains(&token) {
                    next.push(token);
                }
            }
        }
    }
    if next.is_empty() {
        if let Some(i) = complete {
            out[i] = log_p_prefix;
        }
        return Ok(());
    }
    let logprobs = scorer.logprobs_after(prefix, &next)?;
    let mut extended_mass = 0.0f64;
    for (&token, &lp) in next.iter().zip(&logprobs) {
        let lp = f64::from(lp);
        extended_mass += lp.exp();
        let mut longer = prefix.to_vec();
        longer.push(token);
        visit(&longer, log_p_prefix + lp, options, scorer, out)?;
    }
    if let Some(i) = complete {
        out[i] = log_p_prefix + (1.0 - extended_mass).max(1e-30).ln();
    }
    Ok(())
}

/// The option numbers 1..=count as text.
pub fn option_labels(count: usize) -> Vec<String> {
    (1..=count).map(|k| k.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A fake model: a table of next-token probabilities per prefix.
    struct Table(HashMap<Vec<u32>, HashMap<u32, f32>>, Vec<Vec<u32>>);

    impl OptionScorer for Table {
        type Error = String;
        fn logprobs_after(
            &mut self,
            prefix: &[u32],
            candidates: &[u32],
        ) -> Result<Vec<f32>, String> {
            self.1.push(prefix.to_vec());
            let row = self.0.get(prefix).ok_or("unknown prefix")?;
            Ok(candidates
                .iter()
                .map(|c| row.get(c).copied().unwrap_or(1e-9).ln())
                .collect())
        }
    }

    // Token ids: digit d -> 100 + d.
    fn digits(text: &str) -> Vec<u32> {
        text.bytes().map(|b| 100 + u32::from(b - b'0')).collect()
    }

    #[test]
    fn single_digit_options_need_one_read() {
        let options: Vec<Vec<u32>> = option_labels(3).iter().map(|s| digits(s)).collect();
        let mut table = Table(
            HashMap::from([(vec![], HashMap::from([(101, 0.2), (102, 0.5), (103, 0.1)]))]),
            Vec::new(),
        );
        let scores = score_options(&options, &mut table).unwrap();
        assert_eq!(scores.chosen, 2);
        assert_eq!(table.1, vec![Vec::<u32>::new()], "one read, no forks");
        let sum: f32 = scores.probs.iter().sum();
        assert!((sum - 1.0).abs() < 1e-5);
        assert!((scores.probs[1] - 0.625).abs() < 1e-5);
        assert!((scores.logprobs[0] - 0.2f32.ln()).abs() < 1e-5);
    }

    #[test]
    fn multi_digit_options_split_the_first_digits_mass() {
        // 11 options: "1" is a prefix of "10" and "11".
        let options: Vec<Vec<u32>> = option_labels(11).iter().map(|s| digits(s)).collect();
        let mut root = HashMap::new();
        for d in 1..=9 {
            root.insert(100 + d, 0.01);
        }
        root.insert(101, 0.8);
        let after_one = HashMap::from([(100, 0.5), (101, 0.25)]);
        let mut table = Table(
            HashMap::from([(vec![], root), (vec![101], after_one)]),
            Vec::new(),
        );
        let scores = score_options(&options, &mut table).unwrap();
        // P("10") = 0.8 * 0.5 = 0.4 is the largest; P("1") = 0.8 * 0.25; P("11") = 0.8 * 0.25.
        assert_eq!(scores.chosen, 10);
        assert!((scores.logprobs[9] - 0.4f32.ln()).abs() < 1e-4);
        assert!((scores.logprobs[0] - 0.2f32.ln()).abs() < 1e-4);
        assert!((scores.logprobs[10] - 0.2f32.ln()).abs() < 1e-4);
        assert_eq!(table.1.len(), 2, "one fork for the digit with extensions");
        let sum: f32 = scores.probs.iter().sum();
        assert!((sum - 1.0).abs() < 1e-5);
    }

    #[test]
    fn ties_go_to_the_lower_option() {
        let options: Vec<Vec<u32>> = option_labels(2).iter().map(|s| digits(s)).collect();
        let mut table = Table(
            HashMap::from([(vec![], HashMap::from([(101, 0.3), (102, 0.3)]))]),
            Vec::new(),
        );
        assert_eq!(score_options(&options, &mut table).unwrap().chosen, 1);
    }
}
