//! Per-token costs the SIMULATED nodes charge (no model runs): prefill per prompt token and one decode
//! step as a function of the batch size, for the draft and the target model, plus the workload shape
//! (prompt, draft, thinking and answer lengths, acceptance rate). Two named profiles: the measured
//! CPU pair and the paper's GPU setting from docs/cost-model.md.

use std::time::Duration;

/// Costs of one model on one simulated node (milliseconds of model time).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimulatedModelCost {
    /// Prefill cost per prompt token.
    pub prefill_ms_per_token: f64,
    /// One decode step with one sequence.
    pub decode_step_ms_batch1: f64,
    /// One decode step with `batch_n` sequences decoding together.
    pub decode_step_ms_batch_n: f64,
    pub batch_n: usize,
    /// Most sequences a node decodes at once; more wait for a free slot.
    pub max_batch: usize,
}

impl SimulatedModelCost {
    /// Step time at batch `b`: linear through (1, batch 1) and (n, batch n), extrapolated past n.
    pub fn decode_step_ms(&self, batch: usize) -> f64 {
        if batch == 0 {
            return 0.0;
        }
        let span = (self.batch_n.max(2) - 1) as f64;
        let slope = (self.decode_step_ms_batch_n - self.decode_step_ms_batch1) / span;
        self.decode_step_ms_batch1 + slope.max(0.0) * (batch - 1) as f64
    }

    pub fn prefill_ms(&self, tokens: usize) -> f64 {
        self.prefill_ms_per_token * tokens as f64
    }
}

/// The shape of the simulated requests (means; lengths are drawn per request and draft).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimulatedWorkload {
    /// Problem tokens (the problem text is this many words).
    pub problem_tokens: usize,
    /// Fixed template tokens of the draft prompt.
    pub draft_template_tokens: usize,
    /// Fixed template tokens of the selection prompt (instructions, option labels).
    pub select_template_tokens: usize,
    /// Mean draft length in tokens; lengths are log-normal with this mean and `draft_length_sigma`.
    pub draft_tokens_mean: f64,
    pub draft_length_sigma: f64,
    /// The target's own thinking on the correction path (mean; log-normal, sigma 0.3).
    pub thinking_tokens_mean: f64,
    pub answer_tokens: usize,
    /// Share of requests whose selection accepts a draft.
    pub acceptance: f64,
}

/// A named pair of model costs and a workload.
#[derive(Debug, Clone, PartialEq)]
pub struct SimulatedCostProfile {
    pub name: &'static str,
    /// Where the numbers come from, printed with every result.
    pub source: &'static str,
    pub draft: SimulatedModelCost,
    pub target: SimulatedModelCost,
    pub workload: SimulatedWorkload,
}

impl SimulatedCostProfile {
    /// The project's CPU pair, measured: BENCHMARKS.md "Quiet-machine run" (engine, 2 threads):
    /// 0.5B draft prefill 87.6 tok/s, decode 40.7 tok/s at batch 1 and 46.6 tok/s at batch 5;
    /// 1.5B target prefill 134.4 tok/s, decode 16.1 / 29.5 tok/s. Workload from docs/cost-model.md's
    /// CPU section (drafts ~250 tokens, log-normal sigma 0.9 so the longest of 5 is ~500; target thinking 300; acceptance 0.85).
    pub fn cpu_measured() -> Self {
        Self {
            name: "cpu-measured",
            source: "BENCHMARKS.md quiet-machine engine run: 0.5B draft 87.6 prefill / 40.7 b1 / 46.6 b5 tok/s, \
                     1.5B target 134.4 / 16.1 / 29.5 tok/s; workload docs/cost-model.md CPU section",
            draft: SimulatedModelCost {
                prefill_ms_per_token: 1000.0 / 87.6,
                decode_step_ms_batch1: 1000.0 / 40.7,
                decode_step_ms_batch_n: 5.0 * 1000.0 / 46.6,
                batch_n: 5,
                max_batch: 64,
            },
            target: SimulatedModelCost {
                prefill_ms_per_token: 1000.0 / 134.4,
                decode_step_ms_batch1: 1000.0 / 16.1,
                decode_step_ms_batch_n: 5.0 * 1000.0 / 29.5,
                batch_n: 5,
                max_batch: 64,
            },
            workload: SimulatedWorkload {
                problem_tokens: 100,
                draft_template_tokens: 30,
                select_template_tokens: 60,
                draft_tokens_mean: 250.0,
                draft_length_sigma: 0.9,
                thinking_tokens_mean: 300.0,
                answer_tokens: 60,
                acceptance: 0.85,
            },
        }
    }

    /// The paper's GPU setting as calibrated in docs/cost-model.md (1.5B draft, 32B target, fp16, A100,
    /// HF eager): draft prefill 0.05 ms/token, decode 8.5 ms at batch 1 and 9 ms at batch 5; target
    /// prefill 0.61 ms/token, decode 45 ms at batch 1. The target's batch-5 step (47 ms) is an
    /// assumption of this profile (decode of a 32B model is memory-bound). Drafts 193 tokens mean,
    /// log-normal (sigma 0.9: longest of 5 ~2x the mean; the paper's fitted 4x is not reproduced), thinking 589, answer 60, acceptance 0.85.
    pub fn gpu_paper() -> Self {
        Self {
            name: "gpu-paper",
            source: "docs/cost-model.md calibration (A100, HF eager): draft 0.05 ms/tok prefill, 8.5/9 ms step b1/b5; \
                     target 0.61 ms/tok prefill, 45 ms step b1, 47 ms at b5 (assumed)",
            draft: SimulatedModelCost {
                prefill_ms_per_token: 0.05,
                decode_step_ms_batch1: 8.5,
                decode_step_ms_batch_n: 9.0,
                batch_n: 5,
                max_batch: 256,
            },
            target: SimulatedModelCost {
                prefill_ms_per_token: 0.61,
                decode_step_ms_batch1: 45.0,
                decode_step_ms_batch_n: 47.0,
                batch_n: 5,
                max_batch: 256,
            },
            workload: SimulatedWorkload {
                problem_tokens: 100,
                draft_template_tokens: 30,
                select_template_tokens: 60,
                draft_tokens_mean: 193.0,
                draft_length_sigma: 0.9,
                thinking_tokens_mean: 589.0,
                answer_tokens: 60,
                acceptance: 0.85,
            },
        }
    }

    pub fn by_name(name: &str) -> Option<Self> {
        match name {
            "cpu-measured" | "cpu" => Some(Self::cpu_measured()),
            "gpu-paper" | "gpu" => Some(Self::gpu_paper()),
            _ => None,
        }
    }
}

/// Model time -> wall time: `time_scale` 0.01 runs a 100 s simulated job in 1 s.
pub fn scaled(model_ms: f64, time_scale: f64) -> Duration {
    Duration::from_secs_f64((model_ms * time_scale / 1000.0).max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_time_is_linear_in_the_batch() {
        let cost = SimulatedCostProfile::cpu_measured().draft;
        assert!((cost.decode_step_ms(1) - 24.57).abs() < 0.01);
        assert!((cost.decode_step_ms(5) - 107.30).abs() < 0.01);
        assert!(cost.decode_step_ms(3) > cost.decode_step_ms(2));
        assert_eq!(cost.decode_step_ms(0), 0.0);
    }

    #[test]
    fn profiles_by_name() {
        assert_eq!(
            SimulatedCostProfile::by_name("gpu").unwrap().name,
            "gpu-paper"
        );
        assert!(SimulatedCostProfile::by_name("tpu").is_none());
    }
}
