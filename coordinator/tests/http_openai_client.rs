//! The HTTP API against real models, driven by the real `openai` Python client (installed by
//! scripts/install-py-test-deps.sh): non-streaming and streaming completions with reasoning_content,
//! content, usage and the scot stats; then /ready and /metrics reflect what was served.

mod common;

use std::path::PathBuf;

use common::{http_request, start_cluster};

fn venv_python() -> PathBuf {
    let venv = std::env::var_os("SCOT_PY_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/scot/py-venv")
        });
    let python = venv.join("bin/python");
    assert!(
        python.is_file(),
        "{} is missing: run scripts/install-py-test-deps.sh (installs the openai client)",
        python.display()
    );
    python
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_client_streaming_and_not() {
    let python = venv_python();
    // The paper's read-out runs the selection prefill on every request, which the metrics count.
    let cluster = start_cluster(&[
        "--served-model-name",
        "scot-qwen",
        "--default-selection-policy",
        "paper",
    ])
    .await;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/openai_client_check.py");
    let output = tokio::process::Command::new(&python)
        .arg(&script)
        .arg(format!("http://{}/v1", cluster.http))
        .arg("scot-qwen")
        .output()
        .await
        .expect("running the openai client");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "openai client checks failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let summary: serde_json::Value = serde_json::from_str(stdout.trim().lines().last().unwrap())
        .unwrap_or_else(|e| panic!("{e}: {stdout}"));
    eprintln!("openai client summary: {summary}");

    let (status, _, body) = http_request(cluster.http, "GET", "/ready", &[], "").await;
    assert_eq!(status, 200, "{body}");
    // Nodes by id: their addresses are not the API's to show.
    assert!(body.contains(r#""reachable":["draft-0"]"#), "{body}");
    assert!(!body.contains(&cluster.draft.to_string()), "{body}");

    let (status, _, metrics) = http_request(cluster.http, "GET", "/metrics", &[], "").await;
    assert_eq!(status, 200);
    for expected in [
        "scot_requests_total{api=\"http\",outcome=\"ok\"} 2",
        "scot_requests_total{api=\"http\",outcome=\"invalid\"} 2",
        "scot_selections_total 2",
        "scot_drafts_per_request_count 2",
        "scot_phase_duration_seconds_count{phase=\"select\"} 2",
        "scot_generated_tokens_total{role=\"draft\",model=",
        "scot_generation_seconds_total{role=\"target\",model=",
        "scot_requests_in_flight{api=\"http\"} 0",
        "scot_draft_pool_nodes{state=\"reachable\"} 1",
        "scot_grpc_server_calls_total{method=\"/scot.v1.DraftService/Draft\",code=\"OK\"} 2",
        "scot_grpc_server_calls_total{method=\"/scot.v1.TargetService/Select\",code=\"OK\"} 2",
    ] {
        assert!(
            metrics.contains(expected),
            "/metrics lacks {expected}:\n{metrics}"
        );
    }
    let accepted = metrics
        .lines()
        .find_map(|l| l.strip_prefix("scot_drafts_accepted_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .expect("scot_drafts_accepted_total");
    let paths = ["non_streaming", "streaming"]
        .iter()
        .filter(|k| summary[**k]["path"] == "draft_accepted")
        .count();
    assert_eq!(accepted as usize, paths, "accepted drafts match the paths");
    cluster.stop.cancel();
}
