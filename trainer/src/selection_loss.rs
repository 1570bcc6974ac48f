//! The paper's selection loss and the decision it trains: at the prompt's last position, the
//! cross-entropy of each correct option, and the smallest of them (any correct draft will do; "all
//! wrong" is the only label when no draft is right). The softmax runs over the option tokens, the
//! probabilities the target node renormalises and decides from (the paper's runs over the whole
//! vocabulary; the choice between options is the same).

use candle_core::Tensor;

use crate::error::TrainError;

/// `option_logits` `[n + 1]`, `labels` 1-based options: a scalar loss.
pub fn selection_loss(option_logits: &Tensor, labels: &[u32]) -> Result<Tensor, TrainError> {
    let options = option_logits.dim(0)?;
    if labels.is_empty() || labels.iter().any(|&l| l == 0 || l as usize > options) {
        return Err(TrainError::InvalidArgument(format!(
            "labels {labels:?} are not options 1..={options}"
        )));
    }
    let logp = candle_nn::ops::log_softmax(option_logits, 0)?;
    let at: Vec<u32> = labels.iter().map(|l| l - 1).collect();
    let at = Tensor::new(at.as_slice(), option_logits.device())?;
    Ok(logp.index_select(&at, 0)?.neg()?.min(0)?)
}

/// The option (1-based) the selector picks: the most probable, the first on ties.
pub fn chosen_option(option_logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in option_logits.iter().enumerate() {
        if l > option_logits[best] {
            best = i;
        }
    }
    best as u32 + 1
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Var};

    use super::*;

    #[test]
    fn loss_is_the_smallest_cross_entropy_of_the_correct_options() {
        let logits = Tensor::new(&[2.0f64, 0.0, 1.0, -1.0], &Device::Cpu).unwrap();
        let lse = (2f64.exp() + 1.0 + 1f64.exp() + (-1f64).exp()).ln();
        let one = selection_loss(&logits, &[3])
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        assert!((one - (lse - 1.0)).abs() < 1e-12);
        let best = selection_loss(&logits, &[2, 3])
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        assert!(
            (best - (lse - 1.0)).abs() < 1e-12,
            "min over labels 2 and 3"
        );
        assert!(selection_loss(&logits, &[5]).is_err());
        assert!(selection_loss(&logits, &[]).is_err());
    }

    #[test]
    fn the_gradient_reaches_only_the_best_label_and_the_softmax() {
        let v = Var::new(&[0.5f64, 0.0, 1.0], &Device::Cpu).unwrap();
        let loss = selection_loss(v.as_tensor(), &[1, 3]).unwrap();
        let g: Vec<f64> = loss
            .backward()
            .unwrap()
            .get(v.as_tensor())
            .unwrap()
            .to_vec1()
            .unwrap();
        // d(-logp_3)/dz = softmax - onehot(3)
        let z = [0.5f64, 0.0, 1.0];
        let sum: f64 = z.iter().map(|x| x.exp()).sum();
        let expected: Vec<f64> = z
            .iter()
            .enumerate()
            .map(|(i, x)| x.exp() / sum - f64::from(i == 2))
            .collect();
        for (a, b) in g.iter().zip(&expected) {
            assert!((a - b).abs() < 1e-12, "{g:?} vs {expected:?}");
        }
    }

    #[test]
    fn ties_choose_the_first_option() {
        assert_eq!(chosen_option(&[1.0, 3.0, 3.0]), 2);
        assert_eq!(chosen_option(&[0.0]), 1);
    }
}
