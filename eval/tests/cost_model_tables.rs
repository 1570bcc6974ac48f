//! Prints the cost model's what-if tables for the paper's GSM8K setting (docs/cost-model.md quotes
//! them; run with `-- --nocapture`) and checks the headline claims made there.

use scot_eval::cost_model::{paper_what_ifs, scenarios_markdown};

#[test]
fn paper_what_if_tables() {
    for (ratio, accept) in [(2.0, 0.85), (2.0, 0.83), (1.5, 0.80), (3.0, 0.85)] {
        let rows = paper_what_ifs(ratio, accept);
        println!(
            "straggler ratio {ratio}, acceptance with cut {accept}\n{}",
            scenarios_markdown(&rows)
        );
    }
    // With the straggler cut at 2x the mean draft length and acceptance kept, r passes 3.
    let rows = paper_what_ifs(2.0, 0.85);
    assert!(rows[4].prediction.speedup_cot >= 3.0, "{:?}", rows[4]);
    // Without the cut the other two choices stay under 3.
    assert!(rows[1].prediction.speedup_cot < 3.0 && rows[2].prediction.speedup_cot < 3.0);
}

/// This project's 2-core CPU pair (Qwen2.5-Coder 0.5B draft, 1.5B target, candle, target-cpu=native):
/// per-token costs from DESIGN-NOTES "candle facts"; batch-5 draft decode assumed 2x batch-1.
#[test]
fn cpu_pair_table() {
    use scot_eval::cost_model::{predict, Deployment, ModelCosts, Workload};
    let draft = ModelCosts {
        prefill_s_per_token: 1.0 / 39.0,
        decode_s_batch1: 1.0 / 14.0,
        decode_s_batch_n: 2.0 / 14.0,
        batch_n: 5,
    };
    let target = ModelCosts {
        prefill_s_per_token: 1.0 / 90.0,
        decode_s_batch1: 1.0 / 14.7,
        decode_s_batch_n: 2.0 / 14.7,
        batch_n: 5,
    };
    let w = Workload {
        n: 5,
        problem_tokens: 100.0,
        selection_overhead_tokens: 60.0,
        draft_tokens_mean: 250.0,
        draft_tokens_longest: 500.0,
        target_thinking_tokens: 300.0,
        answer_tokens: 30.0,
        accept_rate: 0.85,
        selection_share: 1.0,
    };
    let all = Deployment {
        shared_prefill: true,
        straggler_ratio: Some(1.5),
        draft_nodes: 5,
    };
    for (name, d) in [("paper", Deployment::PAPER), ("all three", all)] {
        let p = predict(&draft, &target, &w, &d);
        println!(
            "cpu {name}: draft {:.1} s, select {:.1} s, correction {:.1} s, t_SCoT {:.1} s, t_target {:.1} s, r {:.2} (e2e {:.2})",
            p.draft_s, p.select_s, p.correction_s, p.scot_cot_s, p.target_cot_s, p.speedup_cot, p.speedup_e2e
        );
        // The draft decodes no faster than the target here: SCoT cannot win on this machine.
        assert!(p.speedup_cot < 1.0, "{p:?}");
    }
}
