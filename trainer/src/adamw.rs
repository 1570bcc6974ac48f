//! AdamW (Loshchilov and Hutter) over named variables, with its moments in the open so a checkpoint
//! can save and restore them (candle-nn's keeps them private).

use std::collections::BTreeMap;

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};

use crate::error::TrainError;

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdamWParams {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl AdamWParams {
    /// PyTorch's defaults (the paper's trainer), no weight decay.
    pub fn with_lr(lr: f64) -> Self {
        Self {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

pub struct AdamW {
    params: AdamWParams,
    /// Steps taken.
    pub step: usize,
    /// name -> (variable, first moment, second moment)
    state: BTreeMap<String, (Var, Tensor, Tensor)>,
}

impl AdamW {
    pub fn new(vars: Vec<(String, Var)>, params: AdamWParams) -> Result<Self, TrainError> {
        let mut state = BTreeMap::new();
        for (name, var) in vars {
            let zeros = var.as_tensor().zeros_like()?;
            state.insert(name, (var, zeros.clone(), zeros));
        }
        Ok(Self {
            params,
            step: 0,
            state,
        })
    }

    /// One update from the gradients of a backward pass (variables without one are left alone).
    pub fn apply(&mut self, grads: &GradStore) -> Result<(), TrainError> {
        self.step += 1;
        let p = self.params;
        let t = self.step as i32;
        let (c1, c2) = (1.0 - p.beta1.powi(t), 1.0 - p.beta2.powi(t));
        for (var, m, v) in self.state.values_mut() {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            *m = ((&*m * p.beta1)? + (g * (1.0 - p.beta1))?)?;
            *v = ((&*v * p.beta2)? + (g.sqr()? * (1.0 - p.beta2))?)?;
            let m_hat = (&*m / c1)?;
            let v_hat = (&*v / c2)?;
            let update = (m_hat / (v_hat.sqrt()? + p.eps)?)?;
            let theta = var.as_tensor();
            let decayed = (theta * (1.0 - p.lr * p.weight_decay))?;
            var.set(&(decayed - (update * p.lr)?)?)?;
        }
        Ok(())
    }

    /// The moments by name (`<var>.m`, `<var>.v`), for a checkpoint.
    pub fn moments(&self) -> Vec<(String, Tensor)> {
        self.state
            .iter()
            .flat_map(|(name, (_, m, v))| {
                [
                    (format!("{name}.m"), m.clone()),
                    (format!("{name}.v"), v.clone()),
                ]
            })
            .collect()
    }

    /// Restores moments saved by [`AdamW::moments`] after `step` steps.
    pub fn restore(
        &mut self,
        step: usize,
        moments: &std::collections::HashMap<String, Tensor>,
    ) -> Result<(), String> {
        for (name, (var, m, v)) in self.state.iter_mut() {
            let get = |key: String| {
                moments
                    .get(&key)
                    .cloned()
                    .ok_or_else(|| format!("no `{key}`"))
            };
            let (saved_m, saved_v) = (get(format!("{name}.m"))?, get(format!("{name}.v"))?);
            if saved_m.shape() != var.as_tensor().shape()
                || saved_v.shape() != var.as_tensor().shape()
            {
                return Err(format!("`{name}` moments have another shape"));
            }
            *m = saved_m;
            *v = saved_v;
        }
        self.step = step;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    /// Minimises (x - 3)^2 from 0: AdamW moves about lr per step at first and converges.
    #[test]
    fn descends_a_quadratic() {
        let x = Var::new(&[0.0f64], &Device::Cpu).unwrap();
        let mut opt = AdamW::new(vec![("x".into(), x.clone())], AdamWParams::with_lr(0.1)).unwrap();
        for _ in 0..500 {
            let loss = (x.as_tensor() - 3.0)
                .unwrap()
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap();
            opt.apply(&loss.backward().unwrap()).unwrap();
        }
        let value: Vec<f64> = x.as_tensor().to_vec1().unwrap();
        assert!((value[0] - 3.0).abs() < 1e-2, "{value:?}");
        assert_eq!(opt.step, 500);
    }
}
