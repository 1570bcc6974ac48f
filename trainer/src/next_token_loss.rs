//! Plain next-token supervised fine-tuning: the mean cross-entropy of the tokens a model should
//! write, each predicted from the positions before it (what the draft's alignment on the target's
//! chains minimises), and how often the model's own greedy pick is that token.

use candle_core::{Tensor, D};

use crate::error::TrainError;

/// `logits` `[tokens, vocab]`, row i predicting `targets[i]`: the mean cross-entropy (nats per
/// token), a scalar.
pub fn next_token_loss(logits: &Tensor, targets: &Tensor) -> Result<Tensor, TrainError> {
    let (rows, vocab) = logits.dims2()?;
    let n = targets.dim(0)?;
    if rows != n || n == 0 {
        return Err(TrainError::InvalidArgument(format!(
            "{rows} rows of logits for {n} target tokens"
        )));
    }
    if let Some(bad) = targets
        .to_vec1::<u32>()?
        .iter()
        .find(|&&t| t as usize >= vocab)
    {
        return Err(TrainError::InvalidArgument(format!(
            "target token {bad} is outside the vocabulary ({vocab})"
        )));
    }
    let logp = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    let picked = logp.gather(&targets.unsqueeze(1)?, 1)?; // [tokens, 1]
    Ok(picked.mean_all()?.neg()?)
}

/// How many rows' most probable token is the target (the model's greedy pick agrees).
pub fn greedy_agreement(logits: &Tensor, targets: &Tensor) -> Result<usize, TrainError> {
    let picks = logits.argmax(D::Minus1)?.to_vec1::<u32>()?;
    let targets = targets.to_vec1::<u32>()?;
    Ok(picks.iter().zip(&targets).filter(|(a, b)| a == b).count())
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Var};

    use super::*;

    #[test]
    fn loss_is_the_mean_negative_log_probability_of_the_targets() {
        let logits = Tensor::new(&[[2.0f64, 0.0, 1.0], [0.0, 0.0, 0.0]], &Device::Cpu).unwrap();
        let targets = Tensor::new(&[0u32, 2], &Device::Cpu).unwrap();
        let lse0 = (2f64.exp() + 1.0 + 1f64.exp()).ln();
        let expected = ((lse0 - 2.0) + 3f64.ln()) / 2.0;
        let got = next_token_loss(&logits, &targets)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        assert!((got - expected).abs() < 1e-12, "{got} vs {expected}");
        assert_eq!(greedy_agreement(&logits, &targets).unwrap(), 1);
        let short = Tensor::new(&[0u32], &Device::Cpu).unwrap();
        assert!(next_token_loss(&logits, &short).is_err());
        let outside = Tensor::new(&[0u32, 3], &Device::Cpu).unwrap();
        assert!(next_token_loss(&logits, &outside).is_err());
    }

    #[test]
    fn the_gradient_is_softmax_minus_the_target_over_the_rows() {
        let v = Var::new(&[[0.5f64, 0.0, 1.0], [1.0, -1.0, 0.0]], &Device::Cpu).unwrap();
        let targets = Tensor::new(&[2u32, 0], &Device::Cpu).unwrap();
        let g: Vec<Vec<f64>> = next_token_loss(v.as_tensor(), &targets)
            .unwrap()
            .backward()
            .unwrap()
            .get(v.as_tensor())
            .unwrap()
            .to_vec2()
            .unwrap();
        for (row, (z, t)) in [([0.5f64, 0.0, 1.0], 2), ([1.0, -1.0, 0.0], 0)]
            .iter()
            .enumerate()
        {
            let sum: f64 = z.iter().map(|x| x.exp()).sum();
            for i in 0..3 {
                let expected = (z[i].exp() / sum - f64::from(i == *t)) / 2.0;
                assert!((g[row][i] - expected).abs() < 1e-12, "{g:?}");
            }
        }
    }
}
