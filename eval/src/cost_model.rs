//! Predicts SCoT's speed-up from per-token costs of the two models, the acceptance rate and the
//! draft lengths (docs/cost-model.md explains the formulas, the inputs and their sources).
//!
//! t_SCoT (chain of thought, the paper's t) = drafting + selection + (1 - accept) * correction:
//! - drafting  = draft prefill of the problem + longest chain * decode step at the per-node batch
//! - selection = target prefill of (problem + selection instructions + n drafts)
//! - correction = target prefill of the problem + target thinking at batch-1 decode
//!
//! t_target = target prefill of the problem + target thinking at batch-1 decode.
//! End-to-end adds the final answer to both (after an accepted draft the target first prefills it).

use serde::{Deserialize, Serialize};

/// Measured (or published) per-token costs of one model on one machine, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ModelCosts {
    /// Seconds per prompt token of a batch-1 prefill.
    pub prefill_s_per_token: f64,
    /// Seconds per decode step at batch 1.
    pub decode_s_batch1: f64,
    /// Seconds per decode step when `batch_n` sequences advance one token each.
    pub decode_s_batch_n: f64,
    pub batch_n: usize,
}

impl ModelCosts {
    /// Decode step cost at `batch` sequences: linear between the two measured points.
    pub fn decode_step(&self, batch: usize) -> f64 {
        if self.batch_n <= 1 || batch <= 1 {
            return self.decode_s_batch1;
        }
        let slope = (self.decode_s_batch_n - self.decode_s_batch1) / (self.batch_n - 1) as f64;
        self.decode_s_batch1 + slope * (batch - 1) as f64
    }
}

/// What one problem asks of the models (token counts are means over a data set).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Workload {
    /// Drafts per problem.
    pub n: usize,
    /// Tokens of the templated problem prompt.
    pub problem_tokens: f64,
    /// Selection prompt tokens beyond the problem and the drafts (instructions, numbering).
    pub selection_overhead_tokens: f64,
    /// Mean draft length: what selection has to read.
    pub draft_tokens_mean: f64,
    /// Mean over problems of the longest of the n chains: what drafting waits for.
    pub draft_tokens_longest: f64,
    /// The target's own chain of thought.
    pub target_thinking_tokens: f64,
    /// The final answer after `</think>`.
    pub answer_tokens: f64,
    /// Share of problems where selection accepts a draft.
    pub accept_rate: f64,
    /// Share of problems whose drafts the target scores in a selection prefill (1 in the paper;
    /// the `vote` policy skips it when the drafts agree).
    pub selection_share: f64,
}

/// Choices beyond the paper's reference code.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Deployment {
    /// Prefill the problem once and fork the cache to the n chains (the paper repeats the prompt n
    /// times in one batch).
    pub shared_prefill: bool,
    /// Straggler control: drafting stops once the unfinished chains pass this multiple of the mean
    /// draft length (None: wait for the longest chain).
    pub straggler_ratio: Option<f64>,
    /// Draft nodes the n chains are spread over; each decodes ceil(n / nodes) chains as a batch.
    pub draft_nodes: usize,
}

impl Deployment {
    /// The paper's reference code: one batch of n repeated prompts, wait for the longest chain.
    pub const PAPER: Deployment = Deployment {
        shared_prefill: false,
        straggler_ratio: None,
        draft_nodes: 1,
    };
}

/// Predicted latencies (seconds) and speed-ups.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Prediction {
    pub draft_s: f64,
    pub select_s: f64,
    /// Expected correction time: (1 - accept) * the target's own thinking.
    pub correction_s: f64,
    /// Expected final-answer time of SCoT.
    pub answer_s: f64,
    /// Chain-of-thought latency (the paper's t): drafting + selection + correction.
    pub scot_cot_s: f64,
    pub scot_e2e_s: f64,
    pub target_cot_s: f64,
    pub target_e2e_s: f64,
    /// r = t_target / t_SCoT on chain-of-thought latency (the paper's definition).
    pub speedup_cot: f64,
    pub speedup_e2e: f64,
}

impl Prediction {
    /// Shares of the chain-of-thought latency: (drafting, selection, target correction).
    pub fn split(&self) -> (f64, f64, f64) {
        let t = self.scot_cot_s.max(f64::MIN_POSITIVE);
        (self.draft_s / t, self.select_s / t, self.correction_s / t)
    }
}

/// The chain length drafting waits for under `deployment`.
pub fn waited_draft_tokens(w: &Workload, d: &Deployment) -> f64 {
    match d.straggler_ratio {
        Some(ratio) => w.draft_tokens_longest.min(ratio * w.draft_tokens_mean),
        None => w.draft_tokens_longest,
    }
}

/// Predicts SCoT and target-only latency for one workload.
pub fn predict(
    draft: &ModelCosts,
    target: &ModelCosts,
    w: &Workload,
    d: &Deployment,
) -> Prediction {
    let nodes = d.draft_nodes.max(1);
    let per_node = w.n.div_ceil(nodes).max(1);
    let prefill_copies = if d.shared_prefill {
        1.0
    } else {
        per_node as f64
    };
    let draft_s = prefill_copies * w.problem_tokens * draft.prefill_s_per_token
        + waited_draft_tokens(w, d) * draft.decode_step(per_node);
    let select_tokens =
        w.problem_tokens + w.selection_overhead_tokens + w.n as f64 * w.draft_tokens_mean;
    let select_s = w.selection_share.clamp(0.0, 1.0) * select_tokens * target.prefill_s_per_token;
    let target_think_s = w.problem_tokens * target.prefill_s_per_token
        + w.target_thinking_tokens * target.decode_s_batch1;
    let reject = (1.0 - w.accept_rate).clamp(0.0, 1.0);
    let correction_s = reject * target_think_s;
    let answer_decode_s = w.answer_tokens * target.decode_s_batch1;
    // After an accepted draft the target prefills problem + draft; after a correction its cache
    // already holds the thinking.
    let answer_s =
        (1.0 - reject) * (w.problem_tokens + w.draft_tokens_mean) * target.prefill_s_per_token
            + answer_decode_s;
    let scot_cot_s = draft_s + select_s + correction_s;
    let scot_e2e_s = scot_cot_s + answer_s;
    let target_e2e_s = target_think_s + answer_decode_s;
    Prediction {
        draft_s,
        select_s,
        correction_s,
        answer_s,
        scot_cot_s,
        scot_e2e_s,
        target_cot_s: target_think_s,
        target_e2e_s,
        speedup_cot: target_think_s / scot_cot_s,
        speedup_e2e: target_e2e_s / scot_e2e_s,
    }
}

/// Expected SCoT accuracy: accepted problems score the accuracy of accepted drafts, the others the
/// target's.
pub fn expected_accuracy(
    accept_rate: f64,
    accepted_draft_accuracy: f64,
    target_accuracy: f64,
) -> f64 {
    accept_rate * accepted_draft_accuracy + (1.0 - accept_rate) * target_accuracy
}

/// The paper's GSM8K setting (DeepSeek-R1-Distill-Qwen 1.5B draft, 32B target, fp16 on A100s,
/// HF transformers). Sources and the fit are in docs/cost-model.md:
/// - target decode 45 ms/token (22 tok/s): HF fp16 32B on A100 with layers spread over GPUs;
///   the A100-80GB bandwidth bound is 65.5 GB / 2.04 TB/s = 32 ms.
/// - draft decode 9 ms/step at batch 5: the paper's "draft ~5x the target's tokens/s".
/// - target thinking 26.5 s / 45 ms = 589 tokens (Table 1: target-only 26.5 s).
/// - longest chain 777 tokens, target prefill 0.61 ms/token, accept 0.85: fitted so drafting,
///   selection and correction take 60.2%, 5.9% and 33.9% of 11.7 s (the paper's split).
pub fn paper_gsm8k() -> (ModelCosts, ModelCosts, Workload) {
    let draft = ModelCosts {
        prefill_s_per_token: 0.05e-3,
        decode_s_batch1: 8.5e-3,
        decode_s_batch_n: 9.0e-3,
        batch_n: 5,
    };
    let target = ModelCosts {
        prefill_s_per_token: 0.61e-3,
        decode_s_batch1: 45e-3,
        decode_s_batch_n: 47e-3,
        batch_n: 5,
    };
    let workload = Workload {
        n: 5,
        problem_tokens: 100.0,
        selection_overhead_tokens: 60.0,
        draft_tokens_mean: 193.0,
        draft_tokens_longest: 777.0,
        target_thinking_tokens: 589.0,
        answer_tokens: 60.0,
        accept_rate: 0.85,
        selection_share: 1.0,
    };
    (draft, target, workload)
}

/// A named what-if row.
#[derive(Debug, Clone, Serialize)]
pub struct Scenario {
    pub name: String,
    pub deployment: Deployment,
    pub accept_rate: f64,
    pub prediction: Prediction,
}

/// The paper's GSM8K setting under each choice beyond the paper, one at a time and together.
/// `accept_with_cut`: the acceptance rate assumed once straggler control drops chains (cut chains
/// that would have been accepted now go to correction).
pub fn paper_what_ifs(straggler_ratio: f64, accept_with_cut: f64) -> Vec<Scenario> {
    let (draft, target, workload) = paper_gsm8k();
    let cut = Some(straggler_ratio);
    let rows: [(&str, Deployment, f64); 6] = [
        (
            "paper (reference code)",
            Deployment::PAPER,
            workload.accept_rate,
        ),
        (
            "+ shared prefill",
            Deployment {
                shared_prefill: true,
                ..Deployment::PAPER
            },
            workload.accept_rate,
        ),
        (
            "+ drafts over 5 nodes (batch 1 each)",
            Deployment {
                draft_nodes: 5,
                ..Deployment::PAPER
            },
            workload.accept_rate,
        ),
        (
            "+ straggler cut",
            Deployment {
                straggler_ratio: cut,
                ..Deployment::PAPER
            },
            accept_with_cut,
        ),
        (
            "all three",
            Deployment {
                shared_prefill: true,
                straggler_ratio: cut,
                draft_nodes: 5,
            },
            accept_with_cut,
        ),
        (
            "all three, acceptance unchanged",
            Deployment {
                shared_prefill: true,
                straggler_ratio: cut,
                draft_nodes: 5,
            },
            workload.accept_rate,
        ),
    ];
    rows.into_iter()
        .map(|(name, deployment, accept_rate)| {
            let w = Workload {
                accept_rate,
                ..workload
            };
            Scenario {
                name: name.to_string(),
                deployment,
                accept_rate,
                prediction: predict(&draft, &target, &w, &deployment),
            }
        })
        .collect()
}

/// Markdown table of scenarios.
pub fn scenarios_markdown(scenarios: &[Scenario]) -> String {
    let mut out = String::from(
        "| scenario | accept | drafting s | selection s | correction s | t_SCoT s | t_target s | r (CoT) | r (end-to-end) |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for s in scenarios {
        let p = &s.prediction;
        out.push_str(&format!(
            "| {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |\n",
            s.name,
            s.accept_rate,
            p.draft_s,
            p.select_s,
            p.correction_s,
            p.scot_cot_s,
            p.target_cot_s,
            p.speedup_cot,
            p.speedup_e2e
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    /// Round numbers checked by hand.
    #[test]
    fn arithmetic_on_a_hand_computed_case() {
        let draft = ModelCosts {
            prefill_s_per_token: 0.001,
            decode_s_batch1: 0.01,
            decode_s_batch_n: 0.02,
            batch_n: 5,
        };
        let target = ModelCosts {
            prefill_s_per_token: 0.002,
            decode_s_batch1: 0.1,
            decode_s_batch_n: 0.1,
            batch_n: 5,
        };
        let w = Workload {
            n: 5,
            problem_tokens: 100.0,
            selection_overhead_tokens: 50.0,
            draft_tokens_mean: 200.0,
            draft_tokens_longest: 600.0,
            target_thinking_tokens: 500.0,
            answer_tokens: 20.0,
            accept_rate: 0.8,
            selection_share: 1.0,
        };
        // Paper: 5 prompt copies 5*100*0.001 = 0.5 s, 600 steps * 0.02 = 12 s -> 12.5 s.
        // Selection: (100 + 50 + 5*200) * 0.002 = 2.3 s.
        // Target thinking: 100*0.002 + 500*0.1 = 50.2 s; correction 0.2 * 50.2 = 10.04 s.
        let p = predict(&draft, &target, &w, &Deployment::PAPER);
        assert!(close(p.draft_s, 12.5, 1e-9), "{p:?}");
        assert!(close(p.select_s, 2.3, 1e-9));
        assert!(close(p.correction_s, 10.04, 1e-9));
        assert!(close(p.scot_cot_s, 24.84, 1e-9));
        assert!(close(p.target_cot_s, 50.2, 1e-9));
        assert!(close(p.speedup_cot, 50.2 / 24.84, 1e-12));
        // Answer: 0.8 * (100 + 200) * 0.002 = 0.48 s prefill + 20 * 0.1 = 2 s.
        assert!(close(p.answer_s, 2.48, 1e-9));
        assert!(close(p.speedup_e2e, 52.2 / 27.32, 1e-12));

        // Shared prefill: 0.1 s instead of 0.5 s. Straggler cut at 1.5x mean: 300 steps.
        // Five nodes: batch 1 per node, 0.01 s per step.
        let all = Deployment {
            shared_prefill: true,
            straggler_ratio: Some(1.5),
            draft_nodes: 5,
        };
        let q = predict(&draft, &target, &w, &all);
        assert!(close(q.draft_s, 0.1 + 300.0 * 0.01, 1e-9), "{q:?}");
        // Two nodes: ceil(5/2) = 3 chains each, step 0.01 + 0.0025 * 2 = 0.015.
        let two = Deployment {
            draft_nodes: 2,
            ..Deployment::PAPER
        };
        assert!(close(
            predict(&draft, &target, &w, &two).draft_s,
            3.0 * 0.1 + 600.0 * 0.015,
            1e-9
        ));
        assert!(close(expected_accuracy(0.8, 0.9, 0.85), 0.89, 1e-12));
    }

    /// The calibrated paper setting reproduces Table 1 (11.7 s, r = 2.26) and the 60.2 / 5.9 / 33.9
    /// split within a point or two.
    #[test]
    fn reproduces_the_papers_gsm8k_split() {
        let (draft, target, w) = paper_gsm8k();
        let p = predict(&draft, &target, &w, &Deployment::PAPER);
        assert!(close(p.target_cot_s, 26.5, 0.3), "{p:?}");
        assert!(close(p.scot_cot_s, 11.7, 0.4), "{p:?}");
        assert!(close(p.speedup_cot, 2.26, 0.08), "{p:?}");
        let (d, s, c) = p.split();
        assert!(
            close(d, 0.602, 0.02) && close(s, 0.059, 0.01) && close(c, 0.339, 0.02),
            "{d} {s} {c}"
        );
    }

    #[test]
    fn each_choice_helps_and_straggler_cut_dominates() {
        let rows = paper_what_ifs(2.0, 0.83);
        let r: Vec<f64> = rows.iter().map(|s| s.prediction.speedup_cot).collect();
        let paper = r[0];
        assert!(r[1] >= paper && r[2] >= paper && r[3] > paper, "{r:?}");
        assert!(
            r[3] - paper > r[1] - paper && r[3] - paper > r[2] - paper,
            "{r:?}"
        );
        assert!(r[4] >= r[3], "{r:?}");
        assert!(scenarios_markdown(&rows).contains("| all three |"));
    }
}
