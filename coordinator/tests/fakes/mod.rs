//! In-process fake draft and target nodes (no models) on loopback gRPC, with gRPC health, and a
//! coordinator in front of them. For routing tests; the real-model tests live elsewhere.

#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use futures::StreamExt;
use scot_coordinator::{Coordinator as Built, CoordinatorConfig, Solver};
use scot_proto::coordinator_service_client::CoordinatorServiceClient;
use scot_proto::draft_service_server::{DraftService, DraftServiceServer};
use scot_proto::target_service_server::{TargetService, TargetServiceServer};
use scot_proto::*;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status, Streaming};
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

pub const DRAFT_SERVICE: &str = "scot.v1.DraftService";
pub const TARGET_SERVICE: &str = "scot.v1.TargetService";
pub const COORDINATOR_SERVICE: &str = "scot.v1.CoordinatorService";

/// Draft i takes (i + 1) x 40 ms and (i + 1) x 10 tokens; draft 1 hits the cap (LENGTH).
pub struct FakeDraft {
    pub calls: Mutex<Vec<Vec<u32>>>,
    pub cancelled: Arc<AtomicUsize>,
    /// Drafts being written now, and the most ever at once.
    pub in_flight: Arc<AtomicUsize>,
    pub max_in_flight: Arc<AtomicUsize>,
    /// While false, drafts wait before they start (a node that is busy for as long as a test needs).
    open: watch::Sender<bool>,
    /// Every Draft call fails UNAVAILABLE (a node going away).
    pub unavailable: AtomicBool,
    /// Draft i answers 5 + i (no two agree) instead of all answering 5.
    pub disagree: AtomicBool,
    /// Each stream sends one progress event, then fails UNAVAILABLE (a node dying mid-stream).
    pub dies_mid_stream: AtomicBool,
}

impl Default for FakeDraft {
    fn default() -> Self {
        Self {
            calls: Mutex::default(),
            cancelled: Arc::default(),
            in_flight: Arc::default(),
            max_in_flight: Arc::default(),
            open: watch::channel(true).0,
            unavailable: AtomicBool::new(false),
            disagree: AtomicBool::new(false),
            dies_mid_stream: AtomicBool::new(false),
        }
    }
}

impl FakeDraft {
    pub fn paused() -> Self {
        let node = Self::default();
        node.pause();
        node
    }

    pub fn pause(&self) {
        self.open.send_replace(false);
    }

    pub fn resume(&self) {
        self.open.send_replace(true);
    }

    pub fn call_count(&self) -> usize {
        self.calls.lock().unwrap().len()
    }

    pub fn drafts_written(&self) -> usize {
        self.calls.lock().unwrap().iter().map(Vec::len).sum()
    }
}

/// Newtypes: the service traits are foreign, so they cannot be implemented on `Arc<_>` directly.
struct DraftHandle(Arc<FakeDraft>);
struct TargetHandle(Arc<FakeTarget>);

/// Counts drafts in flight on the node until dropped.
struct InFlight {
    count: Arc<AtomicUsize>,
    drafts: usize,
}

impl InFlight {
    fn new(node: &FakeDraft, drafts: usize) -> Self {
        let now = node.in_flight.fetch_add(drafts, Ordering::SeqCst) + drafts;
        node.max_in_flight.fetch_max(now, Ordering::SeqCst);
        Self {
            count: node.in_flight.clone(),
            drafts,
        }
    }

    fn finish_one(&mut self) {
        self.drafts -= 1;
        self.count.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.count.fetch_sub(self.drafts, Ordering::SeqCst);
    }
}

#[tonic::async_trait]
impl DraftService for DraftHandle {
    type DraftStream = ReceiverStream<Result<DraftEvent, Status>>;

    async fn draft(
        &self,
        request: Request<DraftRequest>,
    ) -> Result<Response<Self::DraftStream>, Status> {
        let request = request.into_inner();
        let node = &self.0;
        if node.unavailable.load(Ordering::SeqCst) {
            node.calls
                .lock()
                .unwrap()
                .push(request.draft_indices.clone());
            return Err(Status::unavailable("fake draft node is going away"));
        }
        if request.template == "missing" {
            return Err(Status::invalid_argument("unknown template set `missing`"));
        }
        node.calls
            .lock()
            .unwrap()
            .push(request.draft_indices.clone());
        let (tx, rx) = mpsc::channel(16);
        let cancelled = node.cancelled.clone();
        let disagree = node.disagree.load(Ordering::SeqCst);
        let dies = node.dies_mid_stream.load(Ordering::SeqCst);
        let mut open = node.open.subscribe();
        let mut in_flight = InFlight::new(node, request.draft_indices.len());
        tokio::spawn(async move {
            if open.wait_for(|open| *open).await.is_err() {
                return;
            }
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
                    if dies {
                        let _ = tx.send(Err(Status::unavailable("node died"))).await;
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
                        text: format!(
                            "draft {index} says {}",
                            if disagree { 5 + index } else { 5 }
                        ),
                        token_count: (index + 1) * 10,
                        finish_reason: finish as i32,
                        elapsed_ms: elapsed as f64,
                    })),
                };
                in_flight.finish_one();
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
pub struct FakeTarget {
    pub selects: Mutex<Vec<Vec<String>>>,
    pub generates: AtomicUsize,
    /// Every call fails UNAVAILABLE (a node going away).
    pub unavailable: AtomicBool,
    /// Generate streams one answer token, then fails UNAVAILABLE (a node dying mid-answer).
    pub dies_mid_answer: AtomicBool,
    /// Every call fails RESOURCE_EXHAUSTED (a node whose line is full).
    pub full: AtomicBool,
    /// The `resume` of each Generate call (None: a fresh call).
    pub resumes: Mutex<Vec<Option<GenerateResume>>>,
}

/// The fake answer, token by token (text, id): "\boxed{5}".
pub const FAKE_ANSWER: [(&str, u32); 2] = [("\\boxed{", 11), ("5}", 12)];

#[tonic::async_trait]
impl TargetService for TargetHandle {
    async fn select(
        &self,
        request: Request<SelectRequest>,
    ) -> Result<Response<SelectResponse>, Status> {
        if self.0.unavailable.load(Ordering::SeqCst) {
            return Err(Status::unavailable("going away"));
        }
        if self.0.full.load(Ordering::SeqCst) {
            return Err(Status::resource_exhausted("node is full"));
        }
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
            ..Default::default()
        }))
    }

    type GenerateStream = ReceiverStream<Result<GenerateEvent, Status>>;

    async fn generate(
        &self,
        request: Request<GenerateRequest>,
    ) -> Result<Response<Self::GenerateStream>, Status> {
        if self.0.unavailable.load(Ordering::SeqCst) {
            return Err(Status::unavailable("going away"));
        }
        if self.0.full.load(Ordering::SeqCst) {
            return Err(Status::resource_exhausted("node is full"));
        }
        self.0.generates.fetch_add(1, Ordering::SeqCst);
        let request = request.into_inner();
        self.0.resumes.lock().unwrap().push(request.resume.clone());
        let (tx, rx) = mpsc::channel(4);
        let thinks = request.accepted_draft.is_none();
        let dies = self.0.dies_mid_answer.load(Ordering::SeqCst);
        // A migrated call goes on after the tokens already streamed.
        let done = request.resume.map_or(0, |r| r.answer_tokens.len());
        tokio::spawn(async move {
            for (sent, (text, id)) in FAKE_ANSWER.iter().enumerate().skip(done) {
                let token = GenerateEvent {
                    event: Some(generate_event::Event::Token(GenerateToken {
                        text: text.to_string(),
                        phase: GeneratePhase::Answer as i32,
                        token_ids: vec![*id],
                    })),
                };
                let _ = tx.send(Ok(token)).await;
                if dies && sent == done {
                    let _ = tx.send(Err(Status::unavailable("node died"))).await;
                    return;
                }
            }
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

/// A coordinator configuration from command-line arguments (after the program name).
pub fn config(args: &[&str]) -> CoordinatorConfig {
    Cli::parse_from(std::iter::once("coordinator").chain(args.iter().copied())).config
}

/// The gRPC health of `service` at `url` ("" is the whole server); None when it cannot be asked.
pub async fn health_of(
    url: &str,
    service: &str,
) -> Option<tonic_health::pb::health_check_response::ServingStatus> {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;
    let channel = tonic::transport::Endpoint::from_shared(url.to_string())
        .ok()?
        .connect()
        .await
        .ok()?;
    let mut client = HealthClient::new(channel);
    let response = client
        .check(HealthCheckRequest {
            service: service.to_string(),
        })
        .await
        .ok()?;
    ServingStatus::try_from(response.into_inner().status).ok()
}

async fn listen() -> (String, TcpListenerStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    (address, TcpListenerStream::new(listener))
}

/// A served fake node: its address and the switch of its gRPC health.
pub struct Served {
    pub address: String,
    health: HealthReporter,
    service: &'static str,
}

impl Served {
    pub async fn set_serving(&self, serving: bool) {
        let status = if serving {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        self.health.set_service_status(self.service, status).await;
    }
}

async fn health(
    service: &'static str,
) -> (
    HealthReporter,
    tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health>,
) {
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_service_status(service, ServingStatus::Serving)
        .await;
    (health, health_service)
}

pub async fn serve_draft(node: Arc<FakeDraft>) -> Served {
    let (address, incoming) = listen().await;
    serve_draft_on(node, address, incoming, None).await
}

/// A draft node that serves mTLS with `tls`'s certificate (clients need one from its CA).
pub async fn serve_draft_tls(node: Arc<FakeDraft>, tls: &scot_tls::Tls) -> Served {
    let (address, incoming) = listen().await;
    serve_draft_on(node, address, incoming, Some(tls)).await
}

/// A draft node on a given loopback address (one that nothing listened on a moment ago).
pub async fn serve_draft_at(node: Arc<FakeDraft>, address: &str) -> Served {
    let listener = TcpListener::bind(address).await.unwrap();
    serve_draft_on(
        node,
        address.to_string(),
        TcpListenerStream::new(listener),
        None,
    )
    .await
}

fn server(tls: Option<&scot_tls::Tls>) -> tonic::transport::Server {
    let builder = tonic::transport::Server::builder();
    match tls {
        Some(tls) => builder.tls_config(tls.server()).unwrap(),
        None => builder,
    }
}

async fn serve_draft_on(
    node: Arc<FakeDraft>,
    address: String,
    incoming: TcpListenerStream,
    tls: Option<&scot_tls::Tls>,
) -> Served {
    let (health, health_service) = health(DRAFT_SERVICE).await;
    tokio::spawn(
        server(tls)
            .add_service(health_service)
            .add_service(DraftServiceServer::new(DraftHandle(node)))
            .serve_with_incoming(incoming),
    );
    Served {
        address,
        health,
        service: DRAFT_SERVICE,
    }
}

pub async fn start_draft(node: Arc<FakeDraft>) -> String {
    serve_draft(node).await.address
}

pub async fn serve_target(node: Arc<FakeTarget>) -> Served {
    serve_target_tls(node, None).await
}

/// A target node, serving mTLS with `tls`'s certificate when set.
pub async fn serve_target_tls(node: Arc<FakeTarget>, tls: Option<&scot_tls::Tls>) -> Served {
    let (address, incoming) = listen().await;
    let (health, health_service) = health(TARGET_SERVICE).await;
    tokio::spawn(
        server(tls)
            .add_service(health_service)
            .add_service(TargetServiceServer::new(TargetHandle(node)))
            .serve_with_incoming(incoming),
    );
    Served {
        address,
        health,
        service: TARGET_SERVICE,
    }
}

/// A target without a health service (its health check is UNIMPLEMENTED).
pub async fn start_target(node: Arc<FakeTarget>) -> String {
    let (address, incoming) = listen().await;
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TargetServiceServer::new(TargetHandle(node)))
            .serve_with_incoming(incoming),
    );
    address
}

/// A coordinator in this process: its gRPC URL and its Solver (to look at the pools).
pub struct Coordinator {
    pub url: String,
    pub solver: Arc<Solver>,
}

/// Serves a coordinator over `drafts` and `target` (comma-separated targets work too: use
/// `--target-node` in `extra` only when `target` is empty).
pub async fn serve_coordinator(drafts: &[String], target: &str, extra: &[&str]) -> Coordinator {
    let mut args = vec![
        "coordinator".to_string(),
        "--target-node".into(),
        target.to_string(),
        "--draft-nodes".into(),
        drafts.join(","),
        "--health-timeout-ms".into(),
        "500".into(),
        "--request-timeout-secs".into(),
        "30".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let config = Cli::parse_from(args).config;
    serve_built(Built::build(&config).unwrap()).await
}

/// A coordinator whose target pool is `targets`, read through a discovery (as etcd's would be).
pub async fn serve_coordinator_with_targets(
    drafts: &[String],
    targets: &[String],
    extra: &[&str],
) -> Coordinator {
    let mut args = vec![
        "coordinator".to_string(),
        "--draft-nodes".into(),
        drafts.join(","),
        "--health-timeout-ms".into(),
        "500".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let config = Cli::parse_from(args).config;
    let discovery = scot_discovery::StaticDiscovery::from_addresses(&[], targets);
    serve_built(Built::build_with_discovery(&config, Arc::new(discovery)).unwrap()).await
}

/// Serves a built coordinator's gRPC door on a fresh loopback port (mTLS when it has certificates).
pub async fn serve_built(built: Built) -> Coordinator {
    let solver = built.solver().clone();
    let (address, incoming) = listen().await;
    tokio::spawn(
        server(built.tls())
            .add_service(built.grpc_service())
            .serve_with_incoming(incoming),
    );
    Coordinator {
        url: scot_tls::endpoint_url(&address, built.tls().is_some()),
        solver,
    }
}

pub async fn start_coordinator(drafts: Vec<String>, target: String) -> String {
    serve_coordinator(&drafts, &target, &[]).await.url
}

pub fn request(n: u32) -> SolveRequest {
    SolveRequest {
        request_id: "req-1".into(),
        problem: "What is 2 + 3?".into(),
        options: Some(SolveOptions {
            n: Some(n),
            // The paper's read-out: the fake target's pick decides, so the routing under test, not
            // the drafts' answers, decides whether a draft is accepted.
            selection_policy: "paper".into(),
            ..Default::default()
        }),
    }
}

/// Opens a Solve stream (the request runs from here on).
pub async fn open(url: &str, request: SolveRequest) -> Result<Streaming<SolveEvent>, Status> {
    let mut client = CoordinatorServiceClient::connect(url.to_string())
        .await
        .unwrap();
    Ok(client.solve(request).await?.into_inner())
}

/// Reads a Solve stream to its result.
pub async fn finish(
    mut stream: Streaming<SolveEvent>,
) -> Result<(Vec<solve_event::Event>, SolveResult), Status> {
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

pub async fn solve(
    url: &str,
    options: SolveOptions,
) -> Result<(Vec<solve_event::Event>, SolveResult), Status> {
    let request = SolveRequest {
        request_id: "req-1".into(),
        problem: "What is 2 + 3?".into(),
        options: Some(options),
    };
    finish(open(url, request).await?).await
}

/// Waits (polling, bounded) until `condition` holds; panics with `what` if it never does.
pub async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..500 {
        if condition().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("never happened: {what}");
}

/// A TCP proxy in front of `upstream` that can freeze: while frozen it passes no byte either way and
/// closes nothing, as a SIGSTOP'd or partitioned node looks from the other end.
pub struct FreezableProxy {
    pub address: String,
    frozen: watch::Sender<bool>,
}

impl FreezableProxy {
    pub async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let frozen = watch::channel(false).0;
        let watch = frozen.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                    continue;
                };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(pipe(client_read, server_write, watch.subscribe()));
                tokio::spawn(pipe(server_read, client_write, watch.subscribe()));
            }
        });
        Self { address, frozen }
    }

    pub fn freeze(&self) {
        self.frozen.send_replace(true);
    }
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut frozen: watch::Receiver<bool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let read = tokio::select! {
            read = from.read(&mut buffer) => Some(read),
            _ = frozen.changed() => None,
        };
        if *frozen.borrow() {
            // Frozen: both halves stay open (no FIN, no RST) and silent for good.
            std::future::pending::<()>().await;
        }
        match read {
            Some(Ok(n)) if n > 0 => {
                let Ok(()) = to.write_all(&buffer[..n]).await else {
                    return;
                };
            }
            Some(_) => return,
            None => {}
        }
    }
}
