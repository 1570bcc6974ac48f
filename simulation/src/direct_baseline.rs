//! The no-coordinator baseline: the load driver plays a minimal coordinator itself (drafts spread
//! round-robin over the draft nodes, Select and Generate on one target chosen round-robin) straight
//! against the SIMULATED nodes. Its "latency added" is what gRPC, loopback and the client cost without
//! a coordinator; the coordinator's own share is the difference.

use std::collections::BTreeMap;
use std::time::Instant;

use futures::StreamExt;
use scot_proto::draft_event::Event as DraftEventKind;
use scot_proto::draft_service_client::DraftServiceClient;
use scot_proto::generate_event::Event as GenerateEventKind;
use scot_proto::target_service_client::TargetServiceClient;
// The knobs the coordinator would send: the paper's defaults.
use scot_client::status_text;
use scot_proto::limits::{DEFAULT_STREAM_CHUNK_MS, DEFAULT_STREAM_CHUNK_TOKENS};
use scot_proto::paper_defaults as paper;
use scot_proto::{AnswerPath, DraftRequest, GenerateRequest, SelectRequest, StreamChunking};
use tonic::transport::Channel;
use tonic::Status;

use crate::solve_outcome::SolveOutcome;
use crate::synthetic_text::token_count;

/// One request straight against the nodes: request `i` of the run.
pub async fn solve_direct(
    drafts: &[Channel],
    targets: &[Channel],
    i: usize,
    request_id: String,
    problem: String,
    n: u32,
) -> SolveOutcome {
    let mut outcome = SolveOutcome::started(request_id.clone());
    let run = run_direct(drafts, targets, i, &request_id, &problem, n, &mut outcome).await;
    outcome.result = run.map_err(|status| status_text(&status));
    outcome.end = Instant::now();
    outcome
}

async fn run_direct(
    drafts: &[Channel],
    targets: &[Channel],
    i: usize,
    request_id: &str,
    problem: &str,
    n: u32,
    outcome: &mut SolveOutcome,
) -> Result<(), Status> {
    if drafts.is_empty() || targets.is_empty() {
        return Err(Status::failed_precondition("no nodes"));
    }
    // Spread: draft d of request i goes to node (i * n + d) mod K.
    let mut groups: BTreeMap<usize, Vec<u32>> = BTreeMap::new();
    for d in 0..n {
        groups
            .entry((i * n as usize + d as usize) % drafts.len())
            .or_default()
            .push(d);
    }
    outcome.draft_nodes = groups.len();
    let calls = groups.into_iter().map(|(node, indices)| {
        let mut client = DraftServiceClient::new(drafts[node].clone());
        let request = DraftRequest {
            request_id: request_id.to_string(),
            problem: problem.to_string(),
            draft_indices: indices,
            temperature: paper::DRAFT_TEMPERATURE,
            top_p: paper::DRAFT_TOP_P,
            top_k: paper::DRAFT_TOP_K,
            max_tokens: paper::DRAFT_MAX_TOKENS,
            seed: paper::SEED,
            template: String::new(),
            think_end: String::new(),
            include_answer: false,
            render_only: false,
        };
        async move {
            let mut stream = client.draft(request).await?.into_inner();
            let mut texts = Vec::new();
            while let Some(event) = stream.next().await {
                if let Some(DraftEventKind::Draft(draft)) = event?.event {
                    texts.push((draft.index, draft.text));
                }
            }
            Ok::<_, Status>(texts)
        }
    });
    let mut texts: Vec<(u32, String)> = Vec::new();
    for result in futures::future::join_all(calls).await {
        texts.extend(result?);
    }
    texts.sort_by_key(|(index, _)| *index);
    outcome.drafts = texts.len();
    let options: Vec<String> = texts.into_iter().map(|(_, text)| text).collect();

    let target = targets[i % targets.len()].clone();
    let mut client = TargetServiceClient::new(target);
    let selection = client
        .select(SelectRequest {
            request_id: request_id.to_string(),
            problem: problem.to_string(),
            drafts: options.clone(),
            template: String::new(),
            permutations: 0,
            render_only: false,
        })
        .await?
        .into_inner();
    let accepted = (selection.chosen >= 1)
        .then(|| options.get(selection.chosen as usize - 1).cloned())
        .flatten();
    outcome.path = if accepted.is_some() {
        AnswerPath::DraftAccepted as i32
    } else {
        AnswerPath::TargetCorrection as i32
    };
    let mut stream = client
        .generate(GenerateRequest {
            request_id: request_id.to_string(),
            problem: problem.to_string(),
            accepted_draft: accepted,
            max_thinking_tokens: paper::THINKING_MAX_TOKENS,
            max_answer_tokens: paper::ANSWER_MAX_TOKENS,
            temperature: 0.0,
            seed: paper::SEED,
            template: String::new(),
            think_end: String::new(),
            resume: None,
            // As the coordinator asks by default.
            chunking: Some(StreamChunking {
                max_tokens: DEFAULT_STREAM_CHUNK_TOKENS,
                max_ms: DEFAULT_STREAM_CHUNK_MS,
            }),
        })
        .await?
        .into_inner();
    while let Some(event) = stream.next().await {
        match event?.event {
            Some(GenerateEventKind::Token(token)) => {
                outcome.streamed_tokens += token_count(&token.text)
            }
            Some(GenerateEventKind::Result(_)) => return Ok(()),
            None => {}
        }
    }
    Err(Status::unavailable(
        "generate stream ended without a result",
    ))
}
