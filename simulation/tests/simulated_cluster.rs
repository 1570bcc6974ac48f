//! Smoke test of the SIMULATED scale benchmark (keeps it from rotting): a tiny simulated cluster behind
//! the REAL coordinator binary (build it first: `cargo build --release -p scot-coordinator`), a few
//! requests, and the paths and draft counts the simulation predicts. No timing assertions.

use std::time::Duration;

use scot_proto::AnswerPath;
use scot_simulation::synthetic_text::accepts;
use scot_simulation::{run_scale, ScaleConfig, ScaleReport, SimulatedCostProfile};

fn tiny(draft_nodes: usize, target_nodes: usize, requests: usize) -> ScaleConfig {
    let profile = SimulatedCostProfile::gpu_paper();
    ScaleConfig {
        draft_nodes,
        target_nodes,
        profile,
        // ~2 s of model time per request -> ~20 ms.
        time_scale: 0.01,
        requests,
        concurrency: 4,
        connections: 2,
        n: 5,
        coordinator_log_filter: "warn".to_string(),
        coordinator_args: Vec::new(),
        log_dir: std::env::temp_dir().join(format!("scot-simulation-test-{}", std::process::id())),
        warmup_requests: target_nodes.max(1),
        draft_node_capacity: 16,
        target_node_capacity: 16,
        direct_baseline: false,
    }
}

async fn run(config: &ScaleConfig) -> ScaleReport {
    match run_scale(config).await {
        Ok(report) => report,
        Err(e) => panic!("simulated scale run failed: {e}"),
    }
}

fn check_paths_and_drafts(report: &ScaleReport, config: &ScaleConfig) {
    assert_eq!(
        report.errors(),
        Vec::<String>::new(),
        "every request completes"
    );
    assert_eq!(report.completed(), config.requests);
    let acceptance = config.profile.workload.acceptance;
    let expected_accepted = (0..config.requests)
        .filter(|i| accepts(&format!("sim-{i}"), acceptance))
        .count();
    assert_eq!(
        report.path_count(AnswerPath::DraftAccepted),
        expected_accepted
    );
    assert_eq!(
        report.path_count(AnswerPath::TargetCorrection),
        config.requests - expected_accepted
    );
    for request in &report.requests {
        let outcome = &request.outcome;
        assert_eq!(outcome.drafts, config.n as usize, "{}", outcome.request_id);
        assert!(
            (1..=config.draft_nodes).contains(&outcome.draft_nodes),
            "{}: drafts spread over {} nodes",
            outcome.request_id,
            outcome.draft_nodes
        );
        // The answer's tokens (and the correction's thinking) were streamed through.
        assert!(
            outcome.streamed_tokens >= config.profile.workload.answer_tokens,
            "{}: {} tokens streamed",
            outcome.request_id,
            outcome.streamed_tokens
        );
        assert!(request.node_time > Duration::ZERO);
        assert!(request.node_time <= request.end_to_end);
    }
    assert!(report.drafts.decode_steps > 0 && report.targets.decode_steps > 0);
    assert!(report.coordinator_cpu > Duration::ZERO || report.completed() < 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiny_simulated_cluster_through_the_real_coordinator() {
    let config = tiny(2, 1, 12);
    let report = run(&config).await;
    check_paths_and_drafts(&report, &config);
    // Both paths occur in these 12 ids, so both code paths of the coordinator ran.
    assert!(report.path_count(AnswerPath::DraftAccepted) > 0);
    assert!(report.path_count(AnswerPath::TargetCorrection) > 0);
}

/// The no-coordinator baseline drives the same simulated nodes to the same paths.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_baseline_reaches_the_same_paths() {
    let config = ScaleConfig {
        direct_baseline: true,
        ..tiny(2, 1, 8)
    };
    let report = run(&config).await;
    check_paths_and_drafts(&report, &config);
}

/// Two targets go through etcd discovery (the coordinator's static flag takes one target).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_simulated_targets_registered_in_etcd() {
    let config = tiny(2, 2, 6);
    let report = run(&config).await;
    check_paths_and_drafts(&report, &config);
    assert!(report.targets.prefill_tokens > 0);
}
