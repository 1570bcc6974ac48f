//! End to end through real processes on loopback: a coordinator, a draft node and a target node with
//! real models. The cluster starts ONCE and the scenarios run in order (CI has two cores):
//! bad input (INVALID_ARGUMENT, nodes stay healthy), a graded-correct SCoT solve with plausible stats,
//! the forced correction path, the `vote` policy accepting agreeing drafts without the target and
//! sending disagreeing ones to correction (run through `scot eval`, then replayed offline to the same
//! decisions), and the target-only fallback once the draft node is gone (also through the `scot solve`
//! command line).
//!
//! Models: Qwen2.5-Coder-0.5B serves as BOTH draft and target here. It answers the easy arithmetic
//! below correctly and keeps the test within the CI budget; the 1.5B default target only makes each
//! step ~3x slower. Caps are small (n = 2, 128-token drafts) for the same reason.

use std::path::{Path, PathBuf};
use std::time::Duration;

use scot::cluster::{health_status, ClusterSpec, LocalCluster};
use scot_proto::{AnswerPath, SolveOptions, SolveRequest, SolveResult, SolveStats};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

const PROBLEM: &str = "What is 2 + 3?";
const GOLD: &str = "5";
/// Per-request deadline: generous, CI machines are slow and shared.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(1500);

fn model(file: &str) -> PathBuf {
    let path = scot::models::model_dir().join(file);
    assert!(
        path.is_file(),
        "model {} is missing: run scripts/fetch-models.sh first",
        path.display()
    );
    path
}

async fn solve(
    cluster: &LocalCluster,
    problem: &str,
    options: SolveOptions,
) -> Result<SolveResult, tonic::Status> {
    let request = SolveRequest {
        request_id: String::new(),
        problem: problem.to_string(),
        options: Some(options),
    };
    scot_client::SolveClient::connect(cluster.coordinator_url(), cluster.client_tls())
        .await?
        .solve(request, Some(REQUEST_TIMEOUT), |_| {})
        .await
}

fn small_options() -> SolveOptions {
    SolveOptions {
        n: Some(2),
        draft_max_tokens: Some(128),
        thinking_max_tokens: Some(128),
        answer_max_tokens: Some(64),
        seed: Some(7),
        ..Default::default()
    }
}

fn stats(result: &SolveResult) -> &SolveStats {
    result.stats.as_ref().expect("every result carries stats")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_scenarios() {
    let small = model(scot::models::DRAFT_MODEL_FILE);
    let mut spec = ClusterSpec::beside(Path::new(env!("CARGO_BIN_EXE_scot")), small.clone(), small);
    // A short context makes "problem longer than the context" cheap to provoke.
    spec.max_context = Some(2048);
    let mut cluster = LocalCluster::start(&spec)
        .await
        .unwrap_or_else(|e| panic!("cluster did not start: {e}"));

    bad_input_is_rejected_and_nodes_stay_healthy(&mut cluster).await;
    scot_solve_is_correct_with_plausible_stats(&cluster).await;
    threshold_one_forces_the_correction_path(&cluster).await;
    vote_follows_agreement_and_replays_to_the_same_decisions(&cluster).await;
    collect_selection_writes_graded_examples_and_resumes(&cluster).await;
    collect_alignment_writes_the_targets_chains_and_resumes(&cluster).await;
    no_draft_node_means_target_fallback(&mut cluster).await;
}

/// Two easy problems as a data set file.
fn write_two_problems(path: &Path) {
    std::fs::write(
        path,
        "{\"id\":\"a\",\"problem\":\"What is 2 + 3?\",\"answer\":\"5\"}\n\
         {\"id\":\"b\",\"problem\":\"What is 4 + 4?\",\"answer\":\"8\"}\n",
    )
    .unwrap();
}

/// Runs `scot collect <args>` with the cluster's client certificates; its JSON summary.
async fn scot_collect(cluster: &LocalCluster, args: &[&str]) -> serde_json::Value {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_scot"))
        .arg("collect")
        .args(args)
        .args(cluster.client_tls_args().to_args())
        .output()
        .await
        .expect("scot collect runs");
    assert!(
        output.status.success(),
        "scot collect failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice::<serde_json::Value>(&output.stdout).unwrap()
}

/// `scot collect alignment` through the cluster's nodes: per problem the target's chain, its
/// graded answer and the draft prompt as the draft node renders it; a rerun adds nothing.
async fn collect_alignment_writes_the_targets_chains_and_resumes(cluster: &LocalCluster) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data.jsonl");
    write_two_problems(&data);
    let out = dir.path().join("alignment.jsonl");
    let args = [
        "alignment",
        "--target-node",
        &cluster.targets[0].url,
        "--draft-node",
        &cluster.drafts[0].url,
        "--data",
        data.to_str().unwrap(),
        "--thinking-max-tokens",
        "64",
        "--answer-max-tokens",
        "32",
        "--out",
        out.to_str().unwrap(),
    ];
    let first = scot_collect(cluster, &args).await;
    assert_eq!(first["written"], 2, "{first}");
    let examples = scot_selection::read_alignment_examples(&out).expect("valid alignment data");
    assert_eq!(examples.len(), 2);
    for e in &examples {
        assert!(e.prompt_text.contains(&e.problem), "{}", e.prompt_text);
        assert!(e.prompt_token_ids.len() > 10);
        assert!(
            !e.chain.trim().is_empty() && !e.chain.contains("</think>"),
            "{e:?}"
        );
        assert_eq!(e.think_end, "</think>");
        let right = scot_answers::extract_answer(&e.answer)
            .is_some_and(|a| scot_answers::answers_equal(&a, &e.gold));
        assert_eq!(e.correct, right, "{e:?}");
        assert!(!e.model_fingerprint.is_empty() && !e.target_model.is_empty());
    }
    assert_eq!(
        first["correct"],
        examples.iter().filter(|e| e.correct).count()
    );
    let again = scot_collect(cluster, &args).await;
    assert_eq!(
        (again["written"].clone(), again["already_there"].clone()),
        (0.into(), 2.into()),
        "{again}"
    );
}

/// `scot collect selection` through the cluster's nodes: one graded example per problem with the
/// prompt as the target node renders it; a rerun adds nothing.
async fn collect_selection_writes_graded_examples_and_resumes(cluster: &LocalCluster) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data.jsonl");
    write_two_problems(&data);
    let out = dir.path().join("selection.jsonl");
    let args = [
        "selection",
        "--target-node",
        &cluster.targets[0].url,
        "--draft-node",
        &cluster.drafts[0].url,
        "--data",
        data.to_str().unwrap(),
        "--n",
        "2",
        "--draft-max-tokens",
        "64",
        "--seed",
        "3",
        "--out",
        out.to_str().unwrap(),
    ];
    let collect = || scot_collect(cluster, &args);
    let first = collect().await;
    assert_eq!(first["written"], 2, "{first}");
    let examples = scot_selection::read_examples(&out).expect("valid selection data");
    assert_eq!(examples.len(), 2);
    for e in &examples {
        assert_eq!(e.drafts.len(), 2);
        assert_eq!(e.option_token_ids.len(), 3);
        assert!(e.prompt_text.contains(&e.problem), "{}", e.prompt_text);
        assert!(e.prompt_token_ids.len() > 20);
        for d in &e.drafts {
            let right = d
                .answer
                .as_deref()
                .is_some_and(|a| scot_answers::answers_equal(a, &e.gold));
            assert_eq!(d.correct, right, "{d:?}");
        }
    }
    let again = collect().await;
    assert_eq!(
        (again["written"].clone(), again["already_there"].clone()),
        (0.into(), 2.into()),
        "{again}"
    );
}

async fn bad_input_is_rejected_and_nodes_stay_healthy(cluster: &mut LocalCluster) {
    let long_problem = "Add up all of these numbers: ".to_string() + &"17 + ".repeat(2000) + "1.";
    let cases: Vec<(&str, String, SolveOptions, &str)> = vec![
        (
            "empty problem",
            "   ".into(),
            small_options(),
            "problem is empty",
        ),
        (
            "n = 0",
            PROBLEM.into(),
            SolveOptions {
                n: Some(0),
                ..small_options()
            },
            "options.n",
        ),
        (
            "n = 65",
            PROBLEM.into(),
            SolveOptions {
                n: Some(65),
                ..small_options()
            },
            "options.n",
        ),
        (
            "negative temperature",
            PROBLEM.into(),
            SolveOptions {
                draft_temperature: Some(-1.0),
                ..small_options()
            },
            "draft_temperature",
        ),
        (
            "NaN temperature",
            PROBLEM.into(),
            SolveOptions {
                draft_temperature: Some(f32::NAN),
                ..small_options()
            },
            "draft_temperature",
        ),
        (
            "max tokens 0",
            PROBLEM.into(),
            SolveOptions {
                draft_max_tokens: Some(0),
                ..small_options()
            },
            "draft_max_tokens",
        ),
        (
            "answer cap 0",
            PROBLEM.into(),
            SolveOptions {
                answer_max_tokens: Some(0),
                ..small_options()
            },
            "answer_max_tokens",
        ),
        (
            "problem longer than the context",
            long_problem,
            small_options(),
            "too long",
        ),
        (
            "unknown template",
            PROBLEM.into(),
            SolveOptions {
                template: "no-such-set".into(),
                ..small_options()
            },
            "unknown template set",
        ),
    ];
    for (name, problem, options, hint) in cases {
        let status = solve(cluster, &problem, options)
            .await
            .expect_err(&format!("{name}: should be rejected"));
        assert_eq!(status.code(), Code::InvalidArgument, "{name}: {status:?}");
        assert!(
            status.message().contains(hint),
            "{name}: message {:?} should say {hint:?}",
            status.message()
        );
    }
    assert!(cluster.all_running(), "a node died on bad input");
    for (url, service) in [
        (cluster.coordinator.url.clone(), cluster.coordinator.service),
        (cluster.targets[0].url.clone(), cluster.targets[0].service),
        (cluster.drafts[0].url.clone(), cluster.drafts[0].service),
    ] {
        assert_eq!(
            health_status(&url, service, cluster.client_tls()).await,
            Some(ServingStatus::Serving),
            "{service} at {url} is not SERVING after bad input"
        );
        // mTLS: without the cluster's client certificate nothing answers.
        assert_eq!(
            health_status(&url, service, None).await,
            None,
            "{service} at {url} answered a client without a certificate"
        );
    }
}

async fn scot_solve_is_correct_with_plausible_stats(cluster: &LocalCluster) {
    // The paper's read-out always runs the selection prefill, so every stat below is filled.
    let options = SolveOptions {
        selection_policy: "paper".into(),
        ..small_options()
    };
    let result = solve(cluster, PROBLEM, options)
        .await
        .expect("a good request after bad ones still works");
    let s = stats(&result);
    eprintln!("{}", scot::report::render(&result));
    assert!(
        scot_answers::is_correct(&result.answer, GOLD),
        "answer {:?} is not graded {GOLD}",
        result.answer
    );
    assert!(!result.request_id.is_empty());
    let path = AnswerPath::try_from(s.path).unwrap();
    assert!(
        matches!(
            path,
            AnswerPath::DraftAccepted | AnswerPath::TargetCorrection
        ),
        "path {path:?}"
    );
    assert_eq!(s.drafts.len(), 2, "both drafts reported");
    assert!(s.drafts.iter().all(|d| d.token_count > 0), "{:?}", s.drafts);
    assert!(s.draft_tokens > 0);
    assert!((1..=3).contains(&s.chosen), "chosen {}", s.chosen);
    assert_eq!(s.option_probs.len(), 3);
    let sum: f32 = s.option_probs.iter().sum();
    assert!(
        (sum - 1.0).abs() < 1e-3,
        "option probabilities sum to {sum}"
    );
    assert!(s.draft_ms > 0.0 && s.select_ms > 0.0 && s.answer_ms > 0.0 && s.total_ms > 0.0);
    assert!(s.total_ms >= s.draft_ms + s.select_ms);
    assert!(s.answer_tokens > 0 && s.target_tokens >= u64::from(s.answer_tokens));
    assert!(!s.draft_model.is_empty() && !s.target_model.is_empty());
    match path {
        AnswerPath::DraftAccepted => {
            assert!(s.answer_from_draft);
            let chosen = s.chosen_draft.expect("accepted draft index") as usize;
            assert!(chosen < 2);
            assert_eq!(s.target_thinking_tokens, 0);
        }
        _ => {
            assert!(!s.answer_from_draft);
            assert_eq!(s.chosen, 3, "correction follows option n+1");
            assert!(s.target_thinking_tokens > 0 && s.target_thinking_ms > 0.0);
        }
    }
}

async fn threshold_one_forces_the_correction_path(cluster: &LocalCluster) {
    let options = SolveOptions {
        n: Some(1),
        draft_max_tokens: Some(48),
        thinking_max_tokens: Some(96),
        answer_max_tokens: Some(48),
        accept_threshold: Some(1.0),
        selection_policy: "paper".into(),
        ..small_options()
    };
    let result = solve(cluster, PROBLEM, options)
        .await
        .expect("correction solve");
    let s = stats(&result);
    assert_eq!(s.path, AnswerPath::TargetCorrection as i32, "{s:?}");
    assert!(!s.answer_from_draft);
    assert_eq!(s.chosen_draft, None);
    assert!((1..=2).contains(&s.chosen));
    assert!(s.target_thinking_tokens > 0, "the target thought itself");
    assert!(s.target_thinking_ms > 0.0);
    assert!(
        !result.reasoning.is_empty(),
        "the target's own thinking is the reasoning"
    );
    assert!(!result.answer.is_empty());
    assert!(
        s.fallback_reason.contains("accept_threshold"),
        "{:?}",
        s.fallback_reason
    );
}

/// Two problems through `scot eval` under `vote` (3 drafts, all must agree, the target's own pick
/// never taken): the easy sum drafted greedily (three identical drafts) agrees and one is accepted
/// without a selection prefill; "pick a random number" drafted hot (temperature 1.2, seeded) gives
/// drafts that disagree or run to the cap without an answer, and the target thinks. The stored lines
/// then replay to exactly the live decisions.
async fn vote_follows_agreement_and_replays_to_the_same_decisions(cluster: &LocalCluster) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("toy-scot.jsonl");
    let problems = [
        (
            r#"{"id": "agree", "problem": "What is 2 + 3?", "answer": "5"}"#,
            0.0,
        ),
        (
            r#"{"id": "split", "problem": "Pick a random whole number from 1 to 1000 and write it as the answer.", "answer": "1"}"#,
            1.2,
        ),
    ];
    for (i, (problem, temperature)) in problems.into_iter().enumerate() {
        let data = dir.path().join(format!("toy-{i}.jsonl"));
        std::fs::write(&data, format!("{problem}\n")).unwrap();
        let args = scot_eval::EvalArgs {
            data,
            coordinator: cluster.coordinator_url().to_string(),
            tls: cluster.client_tls_args(),
            out: Some(out.clone()),
            dataset_name: Some("toy".into()),
            limit: None,
            offset: 0,
            concurrency: 1,
            seed: VOTE_SEED,
            timeout_secs: REQUEST_TIMEOUT.as_secs(),
            knobs: scot_client::SolveKnobs {
                mode: scot_client::Mode::Scot,
                n: Some(3),
                draft_temperature: Some(temperature),
                draft_max_tokens: Some(96),
                thinking_max_tokens: Some(64),
                answer_max_tokens: Some(32),
                selection_policy: Some("vote".into()),
                min_votes: Some(3),
                accept_threshold: Some(1.0),
                ..Default::default()
            },
            no_progress: true,
        };
        let summary = scot_eval::run_eval(args).await.expect("scot eval runs");
        assert_eq!((summary.attempted, summary.errors), (1, 0), "{summary:?}");
    }
    let lines = scot_eval::results::read_lines(&out).unwrap();
    let line = |id: &str| {
        lines
            .iter()
            .find(|l| l.id == id)
            .expect("a line per problem")
    };
    let agree = line("agree");
    assert_eq!(agree.path, "draft_accepted", "{agree:?}");
    assert_eq!((agree.votes, agree.accept_basis.as_str()), (3, "votes"));
    assert!(!agree.target_scored && agree.option_probs.is_empty() && agree.select_ms == 0.0);
    assert!(agree.correct, "{:?}", agree.answer_text);
    assert!(agree
        .drafts
        .iter()
        .all(|d| d.answer.as_deref() == Some("5")));
    assert!(
        agree.drafts.iter().all(|d| !d.text.is_empty()),
        "eval keeps the texts"
    );
    let split = line("split");
    assert_eq!(split.path, "target_correction", "{split:?}");
    assert!(
        split.votes < 3 && !split.target_scored,
        "tau = 1: no prefill; {split:?}"
    );
    assert_eq!(split.chosen, 4, "n + 1");

    let groups = scot_eval::results::latest_successful(lines.clone());
    let setting: scot_eval::replay::ReplaySetting = "vote:min_votes=3:tau=1".parse().unwrap();
    let rows = scot_eval::replay::replay(&groups, &[setting], &[], None);
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].problems, rows[0].same_as_live), (2, 2), "{rows:?}");
    assert_eq!(rows[0].acceptance, 0.5);
}

/// The seed of the vote scenario's hot drafts.
const VOTE_SEED: u64 = 7;

async fn no_draft_node_means_target_fallback(cluster: &mut LocalCluster) {
    cluster.kill_draft_nodes();
    let options = SolveOptions {
        thinking_max_tokens: Some(96),
        answer_max_tokens: Some(48),
        ..small_options()
    };
    let result = solve(cluster, PROBLEM, options)
        .await
        .expect("fallback solve");
    let s = stats(&result);
    assert_eq!(s.path, AnswerPath::TargetFallback as i32, "{s:?}");
    // Which words depend on timing: a fresh connection is refused ("no draft node reachable"), a
    // pooled one to the killed node breaks mid-call ("no draft came back"). Both name the node.
    assert!(
        s.fallback_reason.contains("no draft node reachable")
            || s.fallback_reason.contains("no draft came back"),
        "{:?}",
        s.fallback_reason
    );
    assert!(s.drafts.is_empty() && s.chosen == 0 && !s.answer_from_draft);
    assert!(s.target_tokens > 0);
    assert!(!result.answer.is_empty());

    // The same through the command line, target-only mode with tiny caps.
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_scot"))
        .args([
            "solve",
            "--coordinator",
            cluster.coordinator_url(),
            "--quiet",
        ])
        .args(cluster.client_tls_args().to_args())
        .args(["--mode", "target-only", "--thinking-max-tokens", "16"])
        .args(["--answer-max-tokens", "16", PROBLEM])
        .output()
        .await
        .expect("scot solve runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "scot solve failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("=== answer ==="), "{stdout}");
    assert!(stdout.contains("path: target only"), "{stdout}");
}
