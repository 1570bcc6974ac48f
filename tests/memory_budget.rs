//! A node's KV-cache budget, end to end (real processes on loopback, the smallest model): the nodes
//! report their budget and context over the load service; the coordinator refuses a request whose
//! caps exceed the target's budget (or its context) before anything is drafted, naming the numbers,
//! and serves one within it.

use std::path::Path;
use std::time::Duration;

use scot::cluster::{ClusterSpec, LocalCluster};
use scot_proto::node_load_service_client::NodeLoadServiceClient;
use scot_proto::{LoadReport, LoadRequest, SolveMode, SolveOptions, SolveRequest, SolveResult};
use tonic::Code;

/// SmolLM2-135M: 30 layers x 2 (K, V) x 3 KV heads x 64 x 4 bytes = 46,080 bytes per position;
/// 60 MiB = 1,365 positions.
const BUDGET_MIB: &str = "60";
const BUDGET_POSITIONS: u64 = 60 * 1024 * 1024 / 46_080;
const CONTEXT: usize = 2048;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(900);

/// The result, or the error and how many events (drafting started, progress...) came before it.
async fn solve(
    cluster: &LocalCluster,
    options: SolveOptions,
) -> Result<SolveResult, (tonic::Status, usize)> {
    let request = SolveRequest {
        request_id: String::new(),
        problem: "What is 2 + 3?".to_string(),
        options: Some(options),
    };
    let mut events = 0;
    let client = scot_client::SolveClient::connect(cluster.coordinator_url(), cluster.client_tls())
        .await
        .expect("connect to the coordinator");
    client
        .solve(request, Some(REQUEST_TIMEOUT), |_| events += 1)
        .await
        .map_err(|status| (status, events))
}

async fn load_report(url: &str, tls: Option<&scot_tls::Tls>) -> LoadReport {
    let channel = scot_tls::endpoint(url, tls, None)
        .expect("endpoint")
        .connect()
        .await
        .expect("connect to the node");
    NodeLoadServiceClient::new(channel)
        .load(LoadRequest {})
        .await
        .expect("load report")
        .into_inner()
}

/// Refused as INVALID_ARGUMENT before any event (nothing was drafted).
fn refused_at_once(outcome: Result<SolveResult, (tonic::Status, usize)>) -> tonic::Status {
    let (status, events) = outcome.expect_err("refused");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(
        events, 0,
        "events before the refusal: work was started ({status:?})"
    );
    status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caps_beyond_the_kv_budget_are_refused_before_drafting() {
    let model = scot::models::model_dir().join(scot::models::SMALL_MODEL_FILE);
    assert!(
        model.is_file(),
        "model {} is missing: run scripts/fetch-models.sh first",
        model.display()
    );
    let mut spec = ClusterSpec::beside(Path::new(env!("CARGO_BIN_EXE_scot")), model.clone(), model);
    spec.max_context = Some(CONTEXT);
    spec.node_args = vec!["--kv-budget-mib".into(), BUDGET_MIB.into()];
    let cluster = LocalCluster::start(&spec)
        .await
        .unwrap_or_else(|e| panic!("cluster did not start: {e}"));

    // Each node reports what its gate holds.
    for node in cluster.targets.iter().chain(&cluster.drafts) {
        let report = load_report(&node.url, cluster.client_tls()).await;
        assert_eq!(
            report.kv_budget_tokens, BUDGET_POSITIONS,
            "{}: {report:?}",
            node.name
        );
        assert_eq!(report.kv_free_tokens, BUDGET_POSITIONS, "idle: all free");
        assert_eq!(report.kv_bytes_per_token, 46_080);
        assert_eq!(report.context_length as usize, CONTEXT);
        assert_eq!(
            (report.running, report.waiting, report.max_running),
            (0, 0, scot_node_support::DEFAULT_MAX_CONCURRENT as u32)
        );
    }

    // Within the budget: served (and it brings both pools' reports to the coordinator).
    let within = SolveOptions {
        n: Some(2),
        draft_max_tokens: Some(48),
        thinking_max_tokens: Some(32),
        answer_max_tokens: Some(16),
        seed: Some(1),
        ..Default::default()
    };
    let result = solve(&cluster, within.clone())
        .await
        .unwrap_or_else(|(status, _)| panic!("not served within the budget: {status:?}"));
    let drafted = result.stats.as_ref().map_or(0, |s| s.drafts.len());
    assert_eq!(drafted, 2, "{result:?}");

    // Thinking + answer beyond the target's budget (but inside its context): refused at once, before
    // any draft, with the numbers.
    let status = refused_at_once(
        solve(
            &cluster,
            SolveOptions {
                thinking_max_tokens: Some(1500),
                answer_max_tokens: Some(100),
                ..within.clone()
            },
        )
        .await,
    );
    let message = status.message();
    assert!(
        message.contains("options.thinking_max_tokens")
            && message.contains("thinking_max_tokens 1500 + answer_max_tokens 100 = 1600 tokens")
            && message.contains(&format!("({BUDGET_POSITIONS} positions")),
        "{message}"
    );
    // The same for the target alone, and drafts whose selection prompt cannot fit the context.
    refused_at_once(
        solve(
            &cluster,
            SolveOptions {
                mode: SolveMode::TargetOnly as i32,
                thinking_max_tokens: Some(1500),
                answer_max_tokens: Some(100),
                ..within.clone()
            },
        )
        .await,
    );
    let status = refused_at_once(
        solve(
            &cluster,
            SolveOptions {
                n: Some(3),
                draft_max_tokens: Some(700),
                ..within.clone()
            },
        )
        .await,
    );
    assert!(
        status.message().contains(
            "3 drafts of up to draft_max_tokens 700 = 2100 tokens do not fit the target model's context of 2048"
        ),
        "{status:?}"
    );
    // The nodes are idle again, their whole budget free (a job gives its KV back just after its
    // last message, so a busy machine may show it for a moment).
    for node in cluster.targets.iter().chain(&cluster.drafts) {
        let idle = (0, 0, BUDGET_POSITIONS);
        let mut seen = None;
        for _ in 0..100 {
            let report = load_report(&node.url, cluster.client_tls()).await;
            seen = Some((report.running, report.waiting, report.kv_free_tokens));
            if seen == Some(idle) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(seen, Some(idle), "{} not idle after 10 s", node.name);
    }
}
