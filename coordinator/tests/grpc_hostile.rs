//! Malformed and hostile gRPC requests against the three servers, called directly: the coordinator's
//! Solve, a draft node's Draft and a target node's Select and Generate (real nodes on the smallest
//! model, in this process, on loopback). Each request is sent as raw bytes (so undecodable ones can be
//! too) and gets its expected status; every server is still SERVING afterwards.

mod common;
mod fakes;

use std::net::SocketAddr;
use std::time::Duration;

use prost::Message;
use scot_proto::*;
use tonic::Code;

#[path = "../../proto/tests/shared/raw_codec.rs"]
mod raw_codec;

/// Answers are read and dropped.
type RawCodec = raw_codec::RawCodec<()>;

/// Calls `path` with `body`; the status the call ends with (OK when a unary answer or the whole
/// stream came back without error).
async fn call(
    addr: SocketAddr,
    path: &'static str,
    body: Vec<u8>,
    streaming: bool,
) -> tonic::Status {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel).max_encoding_message_size(64 << 20);
    grpc.ready().await.unwrap();
    let path = http::uri::PathAndQuery::from_static(path);
    let mut request = tonic::Request::new(body);
    request.set_timeout(Duration::from_secs(60));
    let outcome = if streaming {
        match grpc
            .server_streaming(request, path, RawCodec::default())
            .await
        {
            Err(status) => Err(status),
            Ok(response) => {
                let mut stream = response.into_inner();
                loop {
                    match stream.message().await {
                        Ok(Some(())) => continue,
                        Ok(None) => break Ok(()),
                        Err(status) => break Err(status),
                    }
                }
            }
        }
    } else {
        grpc.unary(request, path, RawCodec::default())
            .await
            .map(|_| ())
    };
    outcome.err().unwrap_or_else(|| tonic::Status::ok(""))
}

fn not_utf8(message: Vec<u8>, marker: &[u8]) -> Vec<u8> {
    let mut bytes = message;
    let at = bytes
        .windows(marker.len())
        .position(|w| w == marker)
        .expect("marker in the message");
    bytes[at..at + 2].copy_from_slice(&[0xff, 0xfe]);
    bytes
}

fn truncated(message: Vec<u8>) -> Vec<u8> {
    message[..message.len() - 2].to_vec()
}

/// (name, server, method path, message bytes, server-streaming, expected code).
type Case<'a> = (&'a str, SocketAddr, &'static str, Vec<u8>, bool, Code);

const SOLVE: &str = "/scot.v1.CoordinatorService/Solve";
const DRAFT: &str = "/scot.v1.DraftService/Draft";
const SELECT: &str = "/scot.v1.TargetService/Select";
const GENERATE: &str = "/scot.v1.TargetService/Generate";

fn solve(problem: &str, options: SolveOptions) -> Vec<u8> {
    SolveRequest {
        request_id: String::new(),
        problem: problem.into(),
        options: Some(options),
    }
    .encode_to_vec()
}

fn draft(change: impl FnOnce(&mut DraftRequest)) -> Vec<u8> {
    let mut request = DraftRequest {
        problem: "What is 2 + 3?".into(),
        draft_indices: vec![0],
        temperature: 0.6,
        top_p: 1.0,
        max_tokens: 4,
        ..Default::default()
    };
    change(&mut request);
    request.encode_to_vec()
}

fn select(change: impl FnOnce(&mut SelectRequest)) -> Vec<u8> {
    let mut request = SelectRequest {
        problem: "What is 2 + 3?".into(),
        drafts: vec!["2 + 3 = 5".into(), "2 + 3 = 6".into()],
        ..Default::default()
    };
    change(&mut request);
    request.encode_to_vec()
}

fn generate(change: impl FnOnce(&mut GenerateRequest)) -> Vec<u8> {
    let mut request = GenerateRequest {
        problem: "What is 2 + 3?".into(),
        accepted_draft: Some("2 + 3 = 5".into()),
        max_thinking_tokens: 4,
        max_answer_tokens: 4,
        ..Default::default()
    };
    change(&mut request);
    request.encode_to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_grpc_requests_get_their_status_and_every_server_stays_serving() {
    let cluster = common::start_smol_nodes().await;
    let coordinator = common::serve_coordinator_grpc(&[
        "--target-node",
        &cluster.target.to_string(),
        "--draft-nodes",
        &cluster.draft.to_string(),
    ])
    .await;
    let (c, d, t) = (coordinator, cluster.draft, cluster.target);
    let huge = "x".repeat((1 << 20) + 1);
    // Past the nodes' 4096-token context.
    let long_for_context = "seven ".repeat(6000);
    let opts = SolveOptions::default;
    let cases: Vec<Case> = vec![
        (
            "solve: empty problem",
            c,
            SOLVE,
            solve("", opts()),
            true,
            Code::InvalidArgument,
        ),
        (
            "solve: blank problem",
            c,
            SOLVE,
            solve(" \n\t", opts()),
            true,
            Code::InvalidArgument,
        ),
        (
            "solve: problem over 1 MiB",
            c,
            SOLVE,
            solve(&huge, opts()),
            true,
            Code::InvalidArgument,
        ),
        (
            "solve: n = 0",
            c,
            SOLVE,
            solve(
                "What is 2 + 3?",
                SolveOptions {
                    n: Some(0),
                    ..opts()
                },
            ),
            true,
            Code::InvalidArgument,
        ),
        (
            "solve: n = 10000",
            c,
            SOLVE,
            solve(
                "What is 2 + 3?",
                SolveOptions {
                    n: Some(10_000),
                    ..opts()
                },
            ),
            true,
            Code::InvalidArgument,
        ),
        (
            "solve: temperature NaN",
            c,
            SOLVE,
            solve(
                "What is 2 + 3?",
                SolveOptions {
                    draft_temperature: Some(f32::NAN),
                    ..opts()
                },
            ),
            true,
            Code::InvalidArgument,
        ),
        (
            "solve: temperature negative",
            c,
            SOLVE,
            solve(
                "What is 2 + 3?",
                SolveOptions {
                    draft_temperature: Some(-1.0),
                    ..opts()
                },
            ),
            true,
            Code::InvalidArgument,
        ),
        (
            "solve: top_p 1.5",
            c,
            SOLVE,
            solve(
                "What is 2 + 3?",
                SolveOptions {
                    draft_top_p: Some(1.5),
                    ..opts()
                },
            ),
            true,
            Code::InvalidArgument,
        ),
        (
            "solve: accept threshold 2",
            c,
            SOLVE,
            solve(
                "What is 2 + 3?",
                SolveOptions {
                    accept_threshold: Some(2.0),
                    ..opts()
                },
            ),
            true,
            Code::InvalidArgument,
        ),
        (
            "solve: unknown policy",
            c,
            SOLVE,
            solve(
                "What is 2 + 3?",
                SolveOptions {
                    selection_policy: "coin".into(),
                    ..opts()
                },
            ),
            true,
            Code::InvalidArgument,
        ),
        (
            "solve: unknown mode",
            c,
            SOLVE,
            solve("What is 2 + 3?", SolveOptions { mode: 99, ..opts() }),
            true,
            Code::InvalidArgument,
        ),
        (
            "solve: 1000 permutations",
            c,
            SOLVE,
            solve(
                "What is 2 + 3?",
                SolveOptions {
                    select_permutations: Some(1000),
                    ..opts()
                },
            ),
            true,
            Code::InvalidArgument,
        ),
        (
            "solve: unknown template",
            c,
            SOLVE,
            solve(
                "What is 2 + 3?",
                SolveOptions {
                    template: "nope".into(),
                    n: Some(1),
                    draft_max_tokens: Some(4),
                    ..opts()
                },
            ),
            true,
            Code::InvalidArgument,
        ),
        (
            "solve: problem too long for the draft model",
            c,
            SOLVE,
            solve(
                &long_for_context,
                SolveOptions {
                    n: Some(1),
                    ..opts()
                },
            ),
            true,
            Code::InvalidArgument,
        ),
        (
            "solve: not UTF-8",
            c,
            SOLVE,
            not_utf8(solve("ABCD", opts()), b"ABCD"),
            true,
            Code::InvalidArgument,
        ),
        (
            "solve: truncated",
            c,
            SOLVE,
            truncated(solve("ABCD", opts())),
            true,
            Code::InvalidArgument,
        ),
        // tonic's code for a message over the server's decoding limit.
        (
            "solve: over the message limit",
            c,
            SOLVE,
            solve(&"x".repeat(5 << 20), opts()),
            true,
            Code::OutOfRange,
        ),
        (
            "draft: no indices",
            d,
            DRAFT,
            draft(|r| r.draft_indices.clear()),
            true,
            Code::InvalidArgument,
        ),
        (
            "draft: duplicate indices",
            d,
            DRAFT,
            draft(|r| r.draft_indices = vec![1, 1]),
            true,
            Code::InvalidArgument,
        ),
        (
            "draft: index 100000",
            d,
            DRAFT,
            draft(|r| r.draft_indices = vec![100_000]),
            true,
            Code::InvalidArgument,
        ),
        (
            "draft: temperature NaN",
            d,
            DRAFT,
            draft(|r| r.temperature = f32::NAN),
            true,
            Code::InvalidArgument,
        ),
        (
            "draft: top_p 0",
            d,
            DRAFT,
            draft(|r| r.top_p = -0.5),
            true,
            Code::InvalidArgument,
        ),
        (
            "draft: empty problem",
            d,
            DRAFT,
            draft(|r| r.problem.clear()),
            true,
            Code::InvalidArgument,
        ),
        (
            "draft: unknown template",
            d,
            DRAFT,
            draft(|r| r.template = "nope".into()),
            true,
            Code::InvalidArgument,
        ),
        (
            "draft: problem too long",
            d,
            DRAFT,
            draft(|r| r.problem = long_for_context.clone()),
            true,
            Code::InvalidArgument,
        ),
        (
            "draft: not UTF-8",
            d,
            DRAFT,
            not_utf8(draft(|r| r.problem = "ABCD".into()), b"ABCD"),
            true,
            Code::InvalidArgument,
        ),
        (
            "draft: truncated",
            d,
            DRAFT,
            truncated(draft(|_| {})),
            true,
            Code::InvalidArgument,
        ),
        (
            "select: no drafts",
            t,
            SELECT,
            select(|r| r.drafts.clear()),
            false,
            Code::InvalidArgument,
        ),
        (
            "select: 1000 drafts",
            t,
            SELECT,
            select(|r| r.drafts = vec!["x".into(); 1000]),
            false,
            Code::InvalidArgument,
        ),
        (
            "select: 1000 permutations",
            t,
            SELECT,
            select(|r| r.permutations = 1000),
            false,
            Code::InvalidArgument,
        ),
        (
            "select: empty problem",
            t,
            SELECT,
            select(|r| r.problem.clear()),
            false,
            Code::InvalidArgument,
        ),
        (
            "select: unknown template",
            t,
            SELECT,
            select(|r| r.template = "nope".into()),
            false,
            Code::InvalidArgument,
        ),
        (
            "select: drafts too long",
            t,
            SELECT,
            select(|r| r.drafts = vec![long_for_context.clone(); 2]),
            false,
            Code::InvalidArgument,
        ),
        (
            "select: draft not UTF-8",
            t,
            SELECT,
            not_utf8(select(|r| r.drafts = vec!["ABCD".into()]), b"ABCD"),
            false,
            Code::InvalidArgument,
        ),
        (
            "generate: temperature NaN",
            t,
            GENERATE,
            generate(|r| r.temperature = f32::NAN),
            true,
            Code::InvalidArgument,
        ),
        (
            "generate: empty problem",
            t,
            GENERATE,
            generate(|r| r.problem.clear()),
            true,
            Code::InvalidArgument,
        ),
        (
            "generate: unknown template",
            t,
            GENERATE,
            generate(|r| r.template = "nope".into()),
            true,
            Code::InvalidArgument,
        ),
        (
            "generate: problem too long",
            t,
            GENERATE,
            generate(|r| r.problem = long_for_context.clone()),
            true,
            Code::InvalidArgument,
        ),
        (
            "generate: resume with an id past the vocabulary",
            t,
            GENERATE,
            generate(|r| {
                r.resume = Some(GenerateResume {
                    thinking_tokens: vec![u32::MAX],
                    ..Default::default()
                })
            }),
            true,
            Code::InvalidArgument,
        ),
        (
            "generate: not UTF-8",
            t,
            GENERATE,
            not_utf8(generate(|r| r.problem = "ABCD".into()), b"ABCD"),
            true,
            Code::InvalidArgument,
        ),
        (
            "generate: truncated",
            t,
            GENERATE,
            truncated(generate(|_| {})),
            true,
            Code::InvalidArgument,
        ),
    ];
    assert!(cases.len() >= 40, "{} cases", cases.len());
    let mut wrong = Vec::new();
    for (name, addr, path, body, streaming, expected) in cases {
        let status = call(addr, path, body, streaming).await;
        if status.code() != expected {
            wrong.push(format!("{name}: {:?} {}", status.code(), status.message()));
        }
    }
    assert!(
        wrong.is_empty(),
        "unexpected answers:\n{}",
        wrong.join("\n")
    );
    for (addr, service) in [
        (c, "scot.v1.CoordinatorService"),
        (d, "scot.v1.DraftService"),
        (t, "scot.v1.TargetService"),
    ] {
        assert_eq!(
            fakes::health_of(&format!("http://{addr}"), service).await,
            Some(tonic_health::pb::health_check_response::ServingStatus::Serving),
            "{service} is not SERVING after the hostile requests"
        );
    }
    cluster.stop.cancel();
}
