//! The coordinator against in-process fake draft and target nodes (no models): spreading drafts over
//! two nodes, straggler cut-off cancelling the rest on the node, the threshold, drop-capped drafts,
//! node-side rejections and the fallback when no draft node answers.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use futures::StreamExt;
use scot_coordinator::{build_service, CoordinatorConfig};
use scot_proto::coordinator_service_client::CoordinatorServiceClient;
use scot_proto::coordinator_service_server::CoordinatorServiceServer;
use scot_proto::draft_service_server::{DraftService, DraftServiceServer};
use scot_proto::target_service_server::{TargetService, TargetServiceServer};
use scot_proto::*;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status};

/// Draft i takes (i + 1) x 40 ms and (i + 1) x 10 tokens; draft 1 hits the cap (LENGTH).
#[derive(Default)]
struct FakeDraft {
    calls: Mutex<Vec<Vec<u32>>>,
    cancelled: Arc<AtomicUsize>,
}

/// Newtypes: the service traits are foreign, so they cannot be implemented on `Arc<_>` directly.
struct DraftHandle(Arc<FakeDraft>);
struct TargetHandle(Arc<FakeTarget>);

#[tonic::async_trait]
impl DraftService for DraftHandle {
    type DraftStream = ReceiverStream<Result<DraftEvent, Status>>;

    async fn draft(
        &self,
        request: Request<DraftRequest>,
    ) -> Result<Response<Self::DraftStream>, Status> {
        let request = request.into_inner();
        let node = &self.0;
        if request.template == "missing" {
            return Err(Status::invalid_argument("unknown template set `missing`"));
        }
        node.calls
            .lock()
            .unwrap()
            .push(request.draft_indices.clone());
        let (tx, rx) = mpsc::channel(16);
        let cancelled = node.cancelled.clone();
        tokio::spawn(async move {
            let mut indices = request.draft_indices.clone();
            indices.sort_unstable();
            let mut elapsed = 0u64;
            for index in indices {
                let finish_at = (u64::from(index) + 1) * 40;
                while elapsed < finish_at {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    elapsed += 10;
                    let progress = DraftEvent {
                        event: Some(draft_event::Event::Progress(DraftProgress {
                            index,
                            tokens: elapsed as u32,
                        })),
                    };
                    if tx.send(Ok(progress)).await.is_err() {
                        cancelled.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                }
                let finish = if index == 1 {
                    FinishReason::Length
                } else {
                    FinishReason::ThinkEnd
                };
                let draft = DraftEvent {
                    event: Some(draft_event::Event::Draft(Draft {
                        index,
                        text: format!("draft {index} says 5"),
                        token_count: (index + 1) * 10,
                        finish_reason: finish as i32,
                        elapsed_ms: elapsed as f64,
                    })),
                };
                if tx.send(Ok(draft)).await.is_err() {
                    cancelled.fetch_add(1, Ordering::SeqCst);
                    return;
                }
            }
            let summary = DraftEvent {
                event: Some(draft_event::Event::Summary(DraftSummary {
                    model: "fake-draft".into(),
                    ..Default::default()
                })),
            };
            let _ = tx.send(Ok(summary)).await;
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// Picks option 1 with probability 0.7 of however many drafts it gets.
#[derive(Default)]
struct FakeTarget {
    selects: Mutex<Vec<Vec<String>>>,
}

#[tonic::async_trait]
impl TargetService for TargetHandle {
    async fn select(
        &self,
        request: Request<SelectRequest>,
    ) -> Result<Response<SelectResponse>, Status> {
        let drafts = request.into_inner().drafts;
        let options = drafts.len() + 1;
        self.0.selects.lock().unwrap().push(drafts);
        let mut probs = vec![0.3 / (options - 1) as f32; options];
        probs[0] = 0.7;
        Ok(Response::new(SelectResponse {
            chosen: 1,
            none_correct: false,
            option_logprobs: probs.iter().map(|p| p.ln()).collect(),
            option_probs: probs,
            prompt_tokens: 100,
            elapsed_ms: 1.0,
        }))
    }

    type GenerateStream = ReceiverStream<Result<GenerateEvent, Status>>;

    async fn generate(
        &self,
        request: Request<GenerateRequest>,
    ) -> Result<Response<Self::GenerateStream>, Status> {
        let request = request.into_inner();
        let (tx, rx) = mpsc::channel(4);
        let thinks = request.accepted_draft.is_none();
        tokio::spawn(async move {
            let token = GenerateEvent {
                event: Some(generate_event::Event::Token(GenerateToken {
                    text: "\\boxed{5}".into(),
                    phase: GeneratePhase::Answer as i32,
                })),
            };
            let _ = tx.send(Ok(token)).await;
            let result = GenerateEvent {
                event: Some(generate_event::Event::Result(GenerateResult {
                    thinking: if thinks {
                        "target thinking".into()
                    } else {
                        String::new()
                    },
                    answer: "\\boxed{5}".into(),
                    thinking_tokens: if thinks { 30 } else { 0 },
                    answer_tokens: 5,
                    thinking_ms: if thinks { 3.0 } else { 0.0 },
                    answer_ms: 1.0,
                    model: "fake-target".into(),
                    ..Default::default()
                })),
            };
            let _ = tx.send(Ok(result)).await;
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    config: CoordinatorConfig,
}

async fn listen() -> (String, TcpListenerStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    (address, TcpListenerStream::new(listener))
}

async fn start_draft(node: Arc<FakeDraft>) -> String {
    let (address, incoming) = listen().await;
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_service_status("scot.v1.DraftService", tonic_health::ServingStatus::Serving)
        .await;
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(health_service)
            .add_service(DraftServiceServer::new(DraftHandle(node)))
            .serve_with_incoming(incoming),
    );
    address
}

async fn start_target(node: Arc<FakeTarget>) -> String {
    let (address, incoming) = listen().await;
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TargetServiceServer::new(TargetHandle(node)))
            .serve_with_incoming(incoming),
    );
    address
}

async fn start_coordinator(drafts: Vec<String>, target: String) -> String {
    let config = Cli::parse_from([
        "coordinator".to_string(),
        "--target-node".into(),
        target,
        "--draft-nodes".into(),
        drafts.join(","),
        "--health-timeout-ms".into(),
        "500".into(),
        "--request-timeout-secs".into(),
        "30".into(),
    ])
    .config;
    let service = build_service(&config, None).unwrap();
    let (address, incoming) = listen().await;
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(CoordinatorServiceServer::new(service))
            .serve_with_incoming(incoming),
    );
    format!("http://{address}")
}

async fn solve(
    url: &str,
    options: SolveOptions,
) -> Result<(Vec<solve_event::Event>, SolveResult), Status> {
    let mut client = CoordinatorServiceClient::connect(url.to_string())
        .await
        .unwrap();
    let request = SolveRequest {
        request_id: "req-1".into(),
        problem: "What is 2 + 3?".into(),
        options: Some(options),
    };
    let mut stream = client.solve(request).await?.into_inner();
    let mut events = Vec::new();
    while let Some(event) = stream.next().await {
        match event?.event {
            Some(solve_event::Event::Result(result)) => return Ok((events, result)),
            Some(other) => events.push(other),
            None => {}
        }
    }
    panic!("stream ended without a result");
}

#[tokio::test]
async fn drafts_spread_over_two_nodes_and_the_accepted_draft_is_answered() {
    let (a, b) = (
        Arc::new(FakeDraft::default()),
        Arc::new(FakeDraft::default()),
    );
    let target = Arc::new(FakeTarget::default());
    let drafts = vec![start_draft(a.clone()).await, start_draft(b.clone()).await];
    let url = start_coordinator(drafts.clone(), start_target(target.clone()).await).await;

    let (events, result) = solve(
        &url,
        SolveOptions {
            n: Some(4),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let stats = result.stats.unwrap();
    assert_eq!(result.request_id, "req-1");
    assert_eq!(*a.calls.lock().unwrap(), vec![vec![0, 2]]);
    assert_eq!(*b.calls.lock().unwrap(), vec![vec![1, 3]]);
    match &events[0] {
        solve_event::Event::DraftingStarted(started) => {
            assert_eq!(started.n, 4);
            assert_eq!(started.nodes, drafts);
        }
        other => panic!("first event {other:?}"),
    }
    assert_eq!(stats.path, AnswerPath::DraftAccepted as i32);
    assert_eq!(stats.chosen, 1);
    assert_eq!(stats.chosen_draft, Some(0));
    assert!(stats.answer_from_draft);
    assert_eq!(result.reasoning, "draft 0 says 5");
    assert_eq!(stats.drafts.len(), 4);
    assert!(stats.drafts.iter().all(|d| d.offered));
    assert_eq!(stats.draft_tokens, 10 + 20 + 30 + 40);
    assert_eq!(stats.target_model, "fake-target");
    assert_eq!(stats.draft_model, "fake-draft");
}

#[tokio::test]
async fn select_after_k_cancels_the_rest_on_the_node() {
    let node = Arc::new(FakeDraft::default());
    let target = Arc::new(FakeTarget::default());
    let url = start_coordinator(
        vec![start_draft(node.clone()).await],
        start_target(target.clone()).await,
    )
    .await;
    let options = SolveOptions {
        n: Some(3),
        select_after_k: Some(1),
        ..Default::default()
    };
    let (_, result) = solve(&url, options).await.unwrap();
    let stats = result.stats.unwrap();
    assert_eq!(
        target.selects.lock().unwrap()[0],
        vec!["draft 0 says 5".to_string()]
    );
    let cancelled: Vec<u32> = stats
        .drafts
        .iter()
        .filter(|d| d.finish_reason == FinishReason::Cancelled as i32)
        .map(|d| d.index)
        .collect();
    assert_eq!(cancelled, vec![1, 2]);
    assert!(
        stats.fallback_reason.contains("after 1 finished drafts"),
        "{}",
        stats.fallback_reason
    );
    // The node notices the dropped stream on its next send.
    for _ in 0..100 {
        if node.cancelled.load(Ordering::SeqCst) > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the draft node never saw the stream dropped");
}

#[tokio::test]
async fn capped_drafts_are_left_out_and_the_threshold_forces_correction() {
    let node = Arc::new(FakeDraft::default());
    let target = Arc::new(FakeTarget::default());
    let url = start_coordinator(
        vec![start_draft(node).await],
        start_target(target.clone()).await,
    )
    .await;
    let options = SolveOptions {
        n: Some(3),
        drop_capped_drafts: true,
        accept_threshold: Some(0.8),
        ..Default::default()
    };
    let (events, result) = solve(&url, options).await.unwrap();
    let stats = result.stats.unwrap();
    // Draft 1 hit the cap: only drafts 0 and 2 are offered.
    assert_eq!(
        target.selects.lock().unwrap()[0],
        vec!["draft 0 says 5".to_string(), "draft 2 says 5".to_string()]
    );
    assert_eq!(stats.drafts.iter().filter(|d| d.offered).count(), 2);
    assert_eq!(stats.path, AnswerPath::TargetCorrection as i32);
    assert_eq!(stats.chosen_draft, None);
    assert_eq!(result.reasoning, "target thinking");
    assert_eq!(stats.target_thinking_tokens, 30);
    assert!(events
        .iter()
        .any(|e| matches!(e, solve_event::Event::Selection(s) if s.none_correct)));
}

#[tokio::test]
async fn node_rejections_reach_the_client_and_dead_pools_fall_back() {
    let node = Arc::new(FakeDraft::default());
    let target = Arc::new(FakeTarget::default());
    let url = start_coordinator(
        vec![start_draft(node).await],
        start_target(target.clone()).await,
    )
    .await;
    let status = solve(
        &url,
        SolveOptions {
            template: "missing".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().contains("unknown template set"),
        "{}",
        status.message()
    );

    // Nothing listens on the draft address: target alone, and the response says why.
    let dead = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let url = start_coordinator(vec![dead.clone()], start_target(target).await).await;
    let (_, result) = solve(&url, SolveOptions::default()).await.unwrap();
    let stats = result.stats.unwrap();
    assert_eq!(stats.path, AnswerPath::TargetFallback as i32);
    assert!(stats.fallback_reason.contains("no draft node reachable"));
    assert!(stats.fallback_reason.contains(&dead));
    assert_eq!(result.answer, "\\boxed{5}");
}
