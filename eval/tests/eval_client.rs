//! `run_eval` against an in-process CoordinatorService that answers `add A B` problems: checks the
//! client, the JSONL lines, resume (skip done ids, retry failed ones), per-request deadlines and the
//! mode sent. The real cluster is exercised by the root package's end-to-end tests and BENCHMARKS.md.

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use scot_client::{Mode, SolveKnobs};
use scot_eval::results::read_lines;
use scot_eval::{run_eval, EvalArgs};
use scot_proto::coordinator_service_server::{CoordinatorService, CoordinatorServiceServer};
use scot_proto::{
    solve_event, AnswerPath, DraftInfo, SolveEvent, SolveMode, SolveRequest, SolveResult,
    SolveStats,
};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

#[derive(Default)]
struct AddingCoordinator {
    calls: AtomicUsize,
    /// `flaky` problems fail on the first call only.
    flaky_failed: AtomicUsize,
}

/// The service handle; the test keeps another to count calls.
struct Shared(Arc<AddingCoordinator>);

type EventStream = Pin<Box<dyn Stream<Item = Result<SolveEvent, Status>> + Send>>;

#[tonic::async_trait]
impl CoordinatorService for Shared {
    type SolveStream = EventStream;

    async fn solve(&self, request: Request<SolveRequest>) -> Result<Response<EventStream>, Status> {
        self.0.calls.fetch_add(1, Ordering::SeqCst);
        let req = request.into_inner();
        let options = req.options.unwrap_or_default();
        if req.problem.contains("flaky") && self.0.flaky_failed.fetch_add(1, Ordering::SeqCst) == 0
        {
            return Err(Status::unavailable("no target node"));
        }
        if req.problem.contains("slow") {
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        let sum: i64 = req
            .problem
            .split_whitespace()
            .filter_map(|w| w.parse::<i64>().ok())
            .sum();
        let mode = SolveMode::try_from(options.mode).unwrap_or(SolveMode::Unspecified);
        let path = match mode {
            SolveMode::TargetOnly => AnswerPath::TargetOnly,
            SolveMode::DraftOnly => AnswerPath::DraftOnly,
            _ if sum % 2 == 0 => AnswerPath::DraftAccepted,
            _ => AnswerPath::TargetCorrection,
        };
        let stats = SolveStats {
            total_ms: 100.0 + sum as f64,
            draft_ms: 60.0,
            select_ms: 10.0,
            answer_ms: 20.0,
            target_thinking_ms: if path == AnswerPath::TargetCorrection {
                10.0
            } else {
                0.0
            },
            drafts: vec![DraftInfo {
                index: 0,
                token_count: 42,
                offered: true,
                ..Default::default()
            }],
            chosen: 1,
            option_probs: vec![0.9, 0.1],
            draft_tokens: 42,
            target_tokens: 7,
            path: path as i32,
            ..Default::default()
        };
        let result = SolveEvent {
            event: Some(solve_event::Event::Result(SolveResult {
                request_id: req.request_id,
                reasoning: format!("adding gives {sum}"),
                answer: format!("The answer is \\boxed{{{sum}}}."),
                stats: Some(stats),
            })),
        };
        let stream: EventStream = Box::pin(tokio_stream::iter(vec![Ok(result)]));
        Ok(Response::new(stream))
    }
}

async fn start() -> (String, Arc<AddingCoordinator>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = Arc::new(AddingCoordinator::default());
    let server = CoordinatorServiceServer::new(Shared(service.clone()));
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(server)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
            .unwrap();
    });
    (format!("http://{addr}"), service)
}

fn args(data: &std::path::Path, out: &std::path::Path, endpoint: &str, mode: Mode) -> EvalArgs {
    EvalArgs {
        data: data.to_path_buf(),
        coordinator: endpoint.to_string(),
        out: Some(out.to_path_buf()),
        dataset_name: None,
        limit: None,
        offset: 0,
        concurrency: 3,
        seed: 7,
        timeout_secs: 1,
        knobs: SolveKnobs {
            mode,
            n: Some(5),
            ..SolveKnobs::default()
        },
        no_progress: true,
        tls: Default::default(),
    }
}

#[tokio::test]
async fn eval_appends_graded_lines_and_resumes() {
    let (endpoint, service) = start().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("adds.jsonl");
    let rows = [
        ("p1", "add 2 2", "4"),
        ("p2", "add 2 3", "5"),
        ("p3", "add 1 1", "3"), // the gold is wrong on purpose: graded incorrect
        ("p4", "flaky add 5 5", "10"),
        ("p5", "slow add 1 2", "3"),
    ];
    let text: String = rows
        .iter()
        .map(|(id, p, a)| format!("{{\"id\":\"{id}\",\"problem\":\"{p}\",\"answer\":\"{a}\"}}\n"))
        .collect();
    std::fs::write(&data, text).unwrap();
    let out = dir.path().join("results/adds-scot.jsonl");

    let first = run_eval(args(&data, &out, &endpoint, Mode::Scot))
        .await
        .unwrap();
    assert_eq!(
        (first.selected, first.attempted, first.errors, first.correct),
        (5, 5, 2, 2)
    );
    assert_eq!(first.dataset, "adds");
    let lines = read_lines(&out).unwrap();
    assert_eq!(lines.len(), 5);
    let p1 = lines.iter().find(|l| l.id == "p1").unwrap();
    assert!(p1.correct && p1.error.is_none());
    assert_eq!(p1.prediction.as_deref(), Some("4"));
    assert_eq!(p1.path, "draft_accepted");
    assert_eq!(
        (p1.total_ms, p1.draft_ms, p1.draft_tokens, p1.seed),
        (104.0, 60.0, 42, 7)
    );
    assert_eq!(p1.drafts[0].tokens, 42);
    assert_eq!(p1.option_probs, vec![0.9, 0.1]);
    assert_eq!(
        lines.iter().find(|l| l.id == "p2").unwrap().path,
        "target_correction"
    );
    assert!(!lines.iter().find(|l| l.id == "p3").unwrap().correct);
    let flaky = lines.iter().find(|l| l.id == "p4").unwrap();
    assert!(
        flaky.error.as_deref().unwrap().contains("no target node"),
        "{flaky:?}"
    );
    let slow = lines.iter().find(|l| l.id == "p5").unwrap();
    assert!(
        slow.error.as_deref().unwrap().contains("deadline"),
        "{slow:?}"
    );

    // Rerun: the three answered ids are skipped, the two failed ones are retried.
    let calls_before = service.calls.load(Ordering::SeqCst);
    let second = run_eval(args(&data, &out, &endpoint, Mode::Scot))
        .await
        .unwrap();
    assert_eq!((second.skipped, second.attempted), (3, 2));
    assert_eq!(service.calls.load(Ordering::SeqCst) - calls_before, 2);
    assert_eq!(second.errors, 1, "flaky succeeds now, slow still times out");
    let lines = read_lines(&out).unwrap();
    assert_eq!(lines.len(), 7);
    assert!(lines.iter().any(|l| l.id == "p4" && l.correct));
}

#[tokio::test]
async fn mode_limit_and_offset_reach_the_server() {
    let (endpoint, _service) = start().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("gsm.jsonl");
    let text: String = (0..6)
        .map(|i| {
            format!(
                "{{\"id\":\"q{i}\",\"problem\":\"add {i} 1\",\"answer\":\"{}\"}}\n",
                i + 1
            )
        })
        .collect();
    std::fs::write(&data, text).unwrap();
    let out = dir.path().join("t.jsonl");
    let mut a = args(&data, &out, &endpoint, Mode::TargetOnly);
    a.offset = 2;
    a.limit = Some(3);
    let summary = run_eval(a).await.unwrap();
    assert_eq!(
        (summary.selected, summary.correct, summary.mode.as_str()),
        (3, 3, "target-only")
    );
    let lines = read_lines(&out).unwrap();
    let mut ids: Vec<_> = lines.iter().map(|l| l.id.as_str()).collect();
    ids.sort();
    assert_eq!(ids, ["q2", "q3", "q4"]);
    assert!(lines
        .iter()
        .all(|l| l.path == "target_only" && l.mode == "target-only"));
}

#[tokio::test]
async fn unreachable_coordinator_and_empty_window_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("one.jsonl");
    std::fs::write(
        &data,
        "{\"id\":\"a\",\"problem\":\"add 1 1\",\"answer\":\"2\"}\n",
    )
    .unwrap();
    let out = dir.path().join("o.jsonl");
    let err = run_eval(args(&data, &out, "http://127.0.0.1:1", Mode::Scot))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("cannot connect"), "{err}");
    let mut a = args(&data, &out, "http://127.0.0.1:1", Mode::Scot);
    a.offset = 5;
    let err = run_eval(a).await.unwrap_err();
    assert!(err.to_string().contains("no problems"), "{err}");
}
