//! The pools' routing against in-process fake nodes (no models) on loopback gRPC: health checks taking
//! nodes out of routing and back, a node failing UNAVAILABLE dropped at once, spreading when idle and
//! packing under load, per-node in-flight limits with the queue and its timeout (no draft room: the
//! target answers alone; no target room: RESOURCE_EXHAUSTED, HTTP 429), the gRPC front door's admission limit, a target lost before any output replaced by
//! another (after output, the client's error), a stalled node's calls failed by keepalive, readiness
//! following the target pool, and the drain on shutdown.

mod common;
mod fakes;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use fakes::{
    eventually, finish, open, request, serve_coordinator, serve_draft, serve_target, FakeDraft,
    FakeTarget,
};
use scot_proto::{solve_event, AnswerPath, SolveMode};
use tokio_util::sync::CancellationToken;
use tonic::Code;

/// Whether `address` is in routing in the coordinator's draft pool.
async fn draft_up(coordinator: &fakes::Coordinator, address: &str) -> bool {
    let (up, _) = coordinator.solver.draft_pool().reachable().await;
    up.iter().any(|n| n.address == address)
}

async fn target_up(coordinator: &fakes::Coordinator, address: &str) -> bool {
    let (up, _) = coordinator.solver.target_pool().reachable().await;
    up.iter().any(|n| n.address == address)
}

fn nodes_used(events: &[solve_event::Event]) -> Vec<String> {
    events
        .iter()
        .find_map(|e| match e {
            solve_event::Event::DraftingStarted(started) => Some(started.nodes.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draft_node_not_serving_gets_no_work_until_it_serves_again() {
    let (a, b) = (
        Arc::new(FakeDraft::default()),
        Arc::new(FakeDraft::default()),
    );
    let target = serve_target(Arc::new(FakeTarget::default())).await;
    let (served_a, served_b) = (serve_draft(a.clone()).await, serve_draft(b.clone()).await);
    let drafts = vec![served_a.address.clone(), served_b.address.clone()];
    let coordinator =
        serve_coordinator(&drafts, &target.address, &["--health-interval-ms", "50"]).await;

    let (events, _) = finish(open(&coordinator.url, request(2)).await.unwrap())
        .await
        .unwrap();
    // Clients see a flag's nodes by position (draft-0, draft-1), never their addresses.
    assert_eq!(
        nodes_used(&events),
        ["draft-0", "draft-1"],
        "an idle pool spreads"
    );

    served_a.set_serving(false).await;
    eventually("A is out of routing", || async {
        !draft_up(&coordinator, &served_a.address).await
    })
    .await;
    let a_calls = a.call_count();
    for _ in 0..3 {
        let (events, result) = finish(open(&coordinator.url, request(2)).await.unwrap())
            .await
            .unwrap();
        assert_eq!(nodes_used(&events), ["draft-1"]);
        assert_eq!(result.stats.unwrap().drafts.len(), 2);
    }
    assert_eq!(a.call_count(), a_calls, "a NOT_SERVING node got work");

    served_a.set_serving(true).await;
    eventually("A is back in routing", || {
        draft_up(&coordinator, &served_a.address)
    })
    .await;
    let (events, _) = finish(open(&coordinator.url, request(2)).await.unwrap())
        .await
        .unwrap();
    assert_eq!(nodes_used(&events).len(), 2, "A gets work again");
    assert!(a.call_count() > a_calls);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_not_serving_gets_no_requests_until_it_serves_again() {
    let (t1, t2) = (
        Arc::new(FakeTarget::default()),
        Arc::new(FakeTarget::default()),
    );
    let (served_1, served_2) = (
        serve_target(t1.clone()).await,
        serve_target(t2.clone()).await,
    );
    let draft = serve_draft(Arc::new(FakeDraft::default())).await;
    let coordinator = fakes::serve_coordinator_with_targets(
        std::slice::from_ref(&draft.address),
        &[served_1.address.clone(), served_2.address.clone()],
        &["--health-interval-ms", "50"],
    )
    .await;
    for _ in 0..2 {
        finish(open(&coordinator.url, request(1)).await.unwrap())
            .await
            .unwrap();
    }
    assert!(t1.generates.load(Ordering::SeqCst) > 0 && t2.generates.load(Ordering::SeqCst) > 0);

    served_1.set_serving(false).await;
    eventually("target 1 is out of routing", || async {
        !target_up(&coordinator, &served_1.address).await
    })
    .await;
    let before = t1.generates.load(Ordering::SeqCst);
    for _ in 0..3 {
        finish(open(&coordinator.url, request(1)).await.unwrap())
            .await
            .unwrap();
    }
    assert_eq!(
        t1.generates.load(Ordering::SeqCst),
        before,
        "a NOT_SERVING target got work"
    );

    served_1.set_serving(true).await;
    eventually("target 1 is back", || {
        target_up(&coordinator, &served_1.address)
    })
    .await;
    for _ in 0..2 {
        finish(open(&coordinator.url, request(1)).await.unwrap())
            .await
            .unwrap();
    }
    assert!(
        t1.generates.load(Ordering::SeqCst) > before,
        "target 1 gets work again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_failing_unavailable_is_out_at_once() {
    let (a, b) = (
        Arc::new(FakeDraft::default()),
        Arc::new(FakeDraft::default()),
    );
    a.unavailable.store(true, Ordering::SeqCst);
    let target = serve_target(Arc::new(FakeTarget::default())).await;
    let drafts = vec![
        serve_draft(a.clone()).await.address,
        serve_draft(b.clone()).await.address,
    ];
    // Background checks far apart: only the failed call can take A out.
    let coordinator = serve_coordinator(
        &drafts,
        &target.address,
        &["--health-interval-ms", "600000"],
    )
    .await;
    let (_, result) = finish(open(&coordinator.url, request(2)).await.unwrap())
        .await
        .unwrap();
    let stats = result.stats.unwrap();
    assert_eq!(stats.path, AnswerPath::DraftAccepted as i32);
    assert!(
        stats.fallback_reason.contains("going away"),
        "{}",
        stats.fallback_reason
    );
    assert!(!draft_up(&coordinator, &drafts[0]).await);

    let (events, _) = finish(open(&coordinator.url, request(2)).await.unwrap())
        .await
        .unwrap();
    assert_eq!(nodes_used(&events), ["draft-1"]);
    assert_eq!(a.call_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drafts_spread_when_idle_and_pack_under_load() {
    let nodes: Vec<Arc<FakeDraft>> = (0..4).map(|_| Arc::new(FakeDraft::paused())).collect();
    let mut drafts = Vec::new();
    for node in &nodes {
        drafts.push(serve_draft(node.clone()).await.address);
    }
    let target = serve_target(Arc::new(FakeTarget::default())).await;
    let coordinator =
        serve_coordinator(&drafts, &target.address, &["--draft-node-capacity", "4"]).await;
    // Four requests of 4 drafts each, held on the nodes: utilisation 0, 4, 8, 12 of 16 drafts.
    let mut streams = Vec::new();
    let mut used = Vec::new();
    for _ in 0..4 {
        let mut stream = open(&coordinator.url, request(4)).await.unwrap();
        let first = futures::StreamExt::next(&mut stream)
            .await
            .unwrap()
            .unwrap();
        match first.event {
            Some(solve_event::Event::DraftingStarted(started)) => used.push(started.nodes.len()),
            other => panic!("first event {other:?}"),
        }
        streams.push(stream);
    }
    assert_eq!(
        used,
        [4, 4, 2, 2],
        "nodes used per request as the pool fills"
    );
    for node in &nodes {
        assert!(node.in_flight.load(Ordering::SeqCst) <= 4);
        node.resume();
    }
    for stream in streams {
        let (_, result) = finish(stream).await.unwrap();
        // Placement does not change the drafts: index i is the same draft wherever it ran.
        let texts: Vec<String> = result
            .stats
            .unwrap()
            .drafts
            .iter()
            .map(|d| d.index.to_string())
            .collect();
        assert_eq!(texts, ["0", "1", "2", "3"]);
    }
    for node in &nodes {
        assert!(node.max_in_flight.load(Ordering::SeqCst) <= 4);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_pool_queues_and_an_oversized_request_is_refused() {
    let node = Arc::new(FakeDraft::paused());
    let draft = serve_draft(node.clone()).await;
    let target = serve_target(Arc::new(FakeTarget::default())).await;
    let drafts = vec![draft.address.clone()];
    let coordinator =
        serve_coordinator(&drafts, &target.address, &["--draft-node-capacity", "2"]).await;

    // More drafts than the pool may ever hold: refused at once.
    let status = finish(open(&coordinator.url, request(3)).await.unwrap())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(status.message().contains("exceed"), "{}", status.message());

    // The first request fills the node; the second waits in the queue, not on the node.
    let first = open(&coordinator.url, request(2)).await.unwrap();
    eventually("the first request is on the node", || async {
        node.call_count() == 1
    })
    .await;
    let url = coordinator.url.clone();
    let second = tokio::spawn(async move { finish(open(&url, request(2)).await?).await });
    let pool = coordinator.solver.draft_pool();
    eventually("the second request is queued", || async {
        pool.queued() == 1
    })
    .await;
    assert_eq!(node.call_count(), 1, "the node got more than its capacity");
    node.resume();
    finish(first).await.unwrap();
    let (events, _) = second.await.unwrap().unwrap();
    assert_eq!(nodes_used(&events), ["draft-0"]);
    assert_eq!(node.call_count(), 2);
    assert_eq!(node.max_in_flight.load(Ordering::SeqCst), 2);
    assert_eq!(pool.queued(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_without_draft_room_in_time_is_answered_by_its_target() {
    let node = Arc::new(FakeDraft::paused());
    let drafts = vec![serve_draft(node.clone()).await.address];
    let target = Arc::new(FakeTarget::default());
    let served = serve_target(target.clone()).await;
    let coordinator = serve_coordinator(
        &drafts,
        &served.address,
        &["--draft-node-capacity", "2", "--queue-timeout-ms", "100"],
    )
    .await;
    let first = open(&coordinator.url, request(2)).await.unwrap();
    eventually("the first request is on the node", || async {
        node.call_count() == 1
    })
    .await;
    // SCoT: the request already holds its target, which thinks alone once the wait is over.
    let (_, result) = finish(open(&coordinator.url, request(1)).await.unwrap())
        .await
        .unwrap();
    let stats = result.stats.unwrap();
    assert_eq!(stats.path, AnswerPath::TargetFallback as i32);
    assert!(
        stats.fallback_reason.contains("in-flight limit")
            && stats.fallback_reason.contains("--queue-timeout-ms"),
        "{}",
        stats.fallback_reason
    );
    assert!(!result.answer.is_empty());
    assert_eq!(target.generates.load(Ordering::SeqCst), 1);
    // Draft-only holds no target: it is refused, naming the limit.
    let mut draft_only = request(1);
    if let Some(options) = draft_only.options.as_mut() {
        options.mode = SolveMode::DraftOnly as i32;
    }
    let status = finish(open(&coordinator.url, draft_only).await.unwrap())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(
        status.message().contains("in-flight limit") && status.message().contains("retry later"),
        "{}",
        status.message()
    );
    assert_eq!(target.generates.load(Ordering::SeqCst), 1);
    assert_eq!(node.call_count(), 1, "the node got more than its capacity");
    node.resume();
    finish(first).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_over_the_admission_limit_is_resource_exhausted() {
    let node = Arc::new(FakeDraft::paused());
    let drafts = vec![serve_draft(node.clone()).await.address];
    let target = serve_target(Arc::new(FakeTarget::default())).await;
    let coordinator = serve_coordinator(
        &drafts,
        &target.address,
        &["--max-concurrent-requests", "1"],
    )
    .await;
    let first = open(&coordinator.url, request(2)).await.unwrap();
    eventually("the first request is on the node", || async {
        node.call_count() == 1
    })
    .await;
    let status = open(&coordinator.url, request(2)).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(
        status.message().contains("at capacity"),
        "{}",
        status.message()
    );
    node.resume();
    finish(first).await.unwrap();
    // Capacity is back once the first request is done.
    finish(open(&coordinator.url, request(2)).await.unwrap())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_at_its_limit_queues_the_next_request() {
    let node = Arc::new(FakeDraft::paused());
    let drafts = vec![serve_draft(node.clone()).await.address];
    let target = Arc::new(FakeTarget::default());
    let served = serve_target(target.clone()).await;
    let coordinator = serve_coordinator(
        &drafts,
        &served.address,
        &["--target-node-capacity", "1", "--queue-timeout-ms", "100"],
    )
    .await;
    // The first request holds the only target place while its drafts run.
    let first = open(&coordinator.url, request(1)).await.unwrap();
    eventually("the first request is drafting", || async {
        node.call_count() == 1
    })
    .await;
    let status = finish(open(&coordinator.url, request(1)).await.unwrap())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(
        status.message().contains("every target node"),
        "{}",
        status.message()
    );
    node.resume();
    finish(first).await.unwrap();
    assert_eq!(target.generates.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_gets_a_429_when_the_queue_times_out() {
    let node = Arc::new(FakeDraft::paused());
    let draft = serve_draft(node.clone()).await.address;
    let target = serve_target(Arc::new(FakeTarget::default())).await;
    let config = common::coordinator_config(&[
        "--target-node",
        &target.address,
        "--draft-nodes",
        &draft,
        "--target-node-capacity",
        "1",
        "--queue-timeout-ms",
        "100",
    ]);
    let addr = common::serve_coordinator_http(&config, CancellationToken::new()).await;
    let body = r#"{"model": "scot", "n_drafts": 1, "messages": [{"role": "user", "content": "What is 2+3?"}]}"#;
    // The first request holds the only target place while its draft runs.
    let first = tokio::spawn(async move {
        common::http_request(addr, "POST", "/v1/chat/completions", &[], body).await
    });
    eventually("the first request is on the node", || async {
        node.call_count() == 1
    })
    .await;
    let (status, head, response) =
        common::http_request(addr, "POST", "/v1/chat/completions", &[], body).await;
    assert_eq!(status, 429, "{response}");
    assert!(
        head.to_ascii_lowercase().contains("retry-after: 1"),
        "{head}"
    );
    assert!(response.contains("every target node"), "{response}");
    assert!(response.contains("over_capacity"), "{response}");
    node.resume();
    let (status, _, response) = first.await.unwrap();
    assert_eq!(status, 200, "{response}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drafts_are_placed_again_when_every_chosen_node_is_gone() {
    let (a, b) = (
        Arc::new(FakeDraft::default()),
        Arc::new(FakeDraft::default()),
    );
    a.unavailable.store(true, Ordering::SeqCst);
    let target = serve_target(Arc::new(FakeTarget::default())).await;
    let drafts = vec![
        serve_draft(a.clone()).await.address,
        serve_draft(b.clone()).await.address,
    ];
    let coordinator = serve_coordinator(
        &drafts,
        &target.address,
        &["--health-interval-ms", "600000"],
    )
    .await;
    // One draft on an idle pool goes to the first node in turn: A, which fails; then B writes it.
    let (events, result) = finish(open(&coordinator.url, request(1)).await.unwrap())
        .await
        .unwrap();
    assert_eq!(a.call_count(), 1);
    assert_eq!(nodes_used(&events), ["draft-1"]);
    let stats = result.stats.unwrap();
    assert_eq!(stats.path, AnswerPath::DraftAccepted as i32);
    assert_eq!(stats.drafts.len(), 1);
    assert_eq!(stats.drafts[0].node, "draft-1");

    // A pool whose only node is gone: the target answers alone and says which node failed how.
    let c = Arc::new(FakeDraft::default());
    c.unavailable.store(true, Ordering::SeqCst);
    let only = vec![serve_draft(c.clone()).await.address];
    let coordinator =
        serve_coordinator(&only, &target.address, &["--health-interval-ms", "600000"]).await;
    let (_, result) = finish(open(&coordinator.url, request(2)).await.unwrap())
        .await
        .unwrap();
    let stats = result.stats.unwrap();
    assert_eq!(stats.path, AnswerPath::TargetFallback as i32);
    assert!(
        stats.fallback_reason.contains("no draft node reachable")
            && stats.fallback_reason.contains("draft-0 (")
            && !stats.fallback_reason.contains(&only[0])
            && stats.fallback_reason.contains("going away"),
        "{}",
        stats.fallback_reason
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_came_up_after_its_last_check_is_used_when_nothing_else_is() {
    let address = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().to_string()
    };
    let target = serve_target(Arc::new(FakeTarget::default())).await;
    // Background checks far apart: only the on-demand check can see the node come up.
    let coordinator = serve_coordinator(
        std::slice::from_ref(&address),
        &target.address,
        &["--health-interval-ms", "600000"],
    )
    .await;
    let (_, result) = finish(open(&coordinator.url, request(2)).await.unwrap())
        .await
        .unwrap();
    assert_eq!(
        result.stats.unwrap().path,
        AnswerPath::TargetFallback as i32
    );

    // The node starts (as nodes do after the coordinator): the next request drafts on it.
    let node = Arc::new(FakeDraft::default());
    let _served = fakes::serve_draft_at(node.clone(), &address).await;
    let (events, result) = finish(open(&coordinator.url, request(2)).await.unwrap())
        .await
        .unwrap();
    assert_eq!(nodes_used(&events), ["draft-0"]);
    assert_eq!(result.stats.unwrap().drafts.len(), 2);
}

/// Two targets, one failing UNAVAILABLE; background checks far apart, so routing learns it only from
/// the failed call.
async fn coordinator_over(t1: Arc<FakeTarget>, t2: Arc<FakeTarget>) -> fakes::Coordinator {
    let draft = serve_draft(Arc::new(FakeDraft::default())).await;
    let (served_1, served_2) = (serve_target(t1).await, serve_target(t2).await);
    fakes::serve_coordinator_with_targets(
        std::slice::from_ref(&draft.address),
        &[served_1.address, served_2.address],
        &["--health-interval-ms", "600000"],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_gone_before_any_output_is_replaced_without_the_client_noticing() {
    let (gone, healthy) = (
        Arc::new(FakeTarget::default()),
        Arc::new(FakeTarget::default()),
    );
    gone.unavailable.store(true, Ordering::SeqCst);
    let coordinator = coordinator_over(gone.clone(), healthy.clone()).await;
    let mut retries = 0;
    for _ in 0..3 {
        // Selection (the paper's policy asks the target) and the answer both go through.
        let (_, result) = finish(open(&coordinator.url, request(2)).await.unwrap())
            .await
            .expect("the client sees no failure");
        let stats = result.stats.unwrap();
        assert_eq!(stats.path, AnswerPath::DraftAccepted as i32);
        assert!(stats.target_scored);
        retries += stats.target_retries;
    }
    // Whichever request met the gone target first moved on, and the node left routing at once.
    assert_eq!(retries, 1);
    assert_eq!(healthy.generates.load(Ordering::SeqCst), 3);
    assert_eq!(healthy.selects.lock().unwrap().len(), 3);
    assert_eq!(gone.generates.load(Ordering::SeqCst), 0);
}

/// The answer's text as the client received it, token by token.
fn answer_text(events: &[solve_event::Event]) -> String {
    events
        .iter()
        .filter_map(|event| match event {
            solve_event::Event::Token(token)
                if token.phase == scot_proto::GeneratePhase::Answer as i32 =>
            {
                assert!(token.token_ids.is_empty(), "token ids reached the client");
                Some(token.text.as_str())
            }
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_dying_mid_answer_hands_the_answer_on_without_repeating_text() {
    let (dying, healthy) = (
        Arc::new(FakeTarget::default()),
        Arc::new(FakeTarget::default()),
    );
    dying.dies_mid_answer.store(true, Ordering::SeqCst);
    let coordinator = coordinator_over(dying.clone(), healthy.clone()).await;
    let mut migrations = 0;
    for _ in 0..3 {
        let (events, result) = finish(open(&coordinator.url, request(2)).await.unwrap())
            .await
            .expect("the client sees no failure");
        // Each token once, in order, whichever targets wrote them.
        assert_eq!(answer_text(&events), "\\boxed{5}");
        migrations += result.stats.unwrap().target_migrations;
    }
    // The request that met the dying target moved on; the node left routing at once.
    assert_eq!(migrations, 1);
    assert_eq!(dying.generates.load(Ordering::SeqCst), 1);
    let resumes = healthy.resumes.lock().unwrap().clone();
    assert_eq!(resumes.len(), 3);
    let resumed: Vec<_> = resumes.into_iter().flatten().collect();
    assert_eq!(resumed.len(), 1, "one call continued a migrated answer");
    assert!(resumed[0].answer_started);
    assert_eq!(resumed[0].answer_tokens, vec![fakes::FAKE_ANSWER[0].1]);
    assert!(resumed[0].thinking_tokens.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_every_target_dies_mid_answer_the_client_gets_an_error_and_no_repeat() {
    let (t1, t2) = (
        Arc::new(FakeTarget::default()),
        Arc::new(FakeTarget::default()),
    );
    t1.dies_mid_answer.store(true, Ordering::SeqCst);
    t2.dies_mid_answer.store(true, Ordering::SeqCst);
    let coordinator = coordinator_over(t1.clone(), t2.clone()).await;
    let mut stream = open(&coordinator.url, request(2)).await.unwrap();
    let mut events = Vec::new();
    let error = loop {
        match stream.message().await {
            Ok(Some(event)) => events.extend(event.event),
            Ok(None) => panic!("the stream ended without an error"),
            Err(status) => break status,
        }
    };
    assert_eq!(error.code(), Code::Unavailable);
    assert!(
        error.message().contains("target node") && error.message().contains("node died"),
        "{}",
        error.message()
    );
    // The first target wrote "\\boxed{", the second "5}" and died too; nothing was sent twice.
    assert_eq!(answer_text(&events), "\\boxed{5}");
    let generates = t1.generates.load(Ordering::SeqCst) + t2.generates.load(Ordering::SeqCst);
    assert_eq!(generates, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_target_is_passed_over_for_one_with_room() {
    let (full, free) = (
        Arc::new(FakeTarget::default()),
        Arc::new(FakeTarget::default()),
    );
    full.full.store(true, Ordering::SeqCst);
    let draft = serve_draft(Arc::new(FakeDraft::default())).await;
    let (served_full, served_free) = (serve_target(full.clone()).await, serve_target(free).await);
    let full_address = served_full.address.clone();
    let coordinator = fakes::serve_coordinator_with_targets(
        std::slice::from_ref(&draft.address),
        &[served_full.address, served_free.address.clone()],
        &["--health-interval-ms", "600000"],
    )
    .await;
    let _free = served_free;
    for _ in 0..3 {
        let (_, result) = finish(open(&coordinator.url, request(2)).await.unwrap())
            .await
            .expect("the client sees no failure");
        assert_eq!(result.stats.unwrap().path, AnswerPath::DraftAccepted as i32);
    }
    // A full node stays in routing (it is not gone); every answer came from the other.
    assert!(target_up(&coordinator, &full_address).await);
    assert_eq!(full.generates.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_draft_node_fails_its_open_calls_instead_of_hanging_them() {
    // A: its drafts never finish, and mid-request it stops answering at all (behind a frozen proxy).
    let stalled = serve_draft(Arc::new(FakeDraft::paused())).await;
    let proxy = fakes::FreezableProxy::start(stalled.address.clone()).await;
    let healthy = serve_draft(Arc::new(FakeDraft::default())).await;
    let target = serve_target(Arc::new(FakeTarget::default())).await;
    let drafts = vec![proxy.address.clone(), healthy.address.clone()];
    let coordinator =
        serve_coordinator(&drafts, &target.address, &["--health-interval-ms", "200"]).await;
    let stream = open(&coordinator.url, request(2)).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    proxy.freeze();
    // A slow node still answers HTTP/2 pings and would be waited for; a silent one is dropped after a
    // ping goes unanswered for the health timeout, and its drafts are written elsewhere.
    let (_, result) = tokio::time::timeout(std::time::Duration::from_secs(10), finish(stream))
        .await
        .expect("the request finishes without the stalled node")
        .unwrap();
    let stats = result.stats.unwrap();
    assert_eq!(stats.path, AnswerPath::DraftAccepted as i32);
    assert!(
        stats.fallback_reason.contains("draft-0:")
            && !stats.fallback_reason.contains(&proxy.address),
        "{}",
        stats.fallback_reason
    );
    // Its draft was placed again on the healthy node.
    assert_eq!(stats.drafts_replaced, 1);
    assert!(stats.drafts.iter().all(|d| d.node == "draft-1"));
    assert_eq!(stats.drafts.len(), 2);
}

/// A free loopback address for a coordinator's `--listen`.
fn free_listen() -> String {
    scot_discovery::loopback_addr().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_coordinator_is_ready_only_while_a_target_is_in_routing() {
    use tonic_health::pb::health_check_response::ServingStatus::{NotServing, Serving};
    let target = serve_target(Arc::new(FakeTarget::default())).await;
    let listen = free_listen();
    let config = fakes::config(&[
        "--listen",
        &listen,
        "--target-node",
        &target.address,
        "--health-interval-ms",
        "100",
        "--health-timeout-ms",
        "300",
    ]);
    let stop = CancellationToken::new();
    tokio::spawn(scot_coordinator::serve(
        config,
        stop.clone().cancelled_owned(),
    ));
    let url = format!("http://{listen}");
    let readiness = || fakes::health_of(&url, fakes::COORDINATOR_SERVICE);
    eventually("ready with a target", || async {
        readiness().await == Some(Serving)
    })
    .await;

    target.set_serving(false).await;
    eventually("not ready without one", || async {
        readiness().await == Some(NotServing)
    })
    .await;
    // Liveness (the whole server) is not readiness: the process is fine.
    assert_eq!(fakes::health_of(&url, "").await, Some(Serving));

    target.set_serving(true).await;
    eventually("ready again", || async {
        readiness().await == Some(Serving)
    })
    .await;
    stop.cancel();
}

/// A coordinator served until `shutdown` (over a paused fake draft node and a fake target, `extra`
/// flags added), with one request in flight whose drafts wait on the paused node.
struct InFlightAtShutdown {
    draft: Arc<FakeDraft>,
    url: String,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<Result<(), scot_coordinator::CoordinatorError>>,
    in_flight: tonic::Streaming<scot_proto::SolveEvent>,
}

async fn one_request_in_flight(extra: &[&str]) -> InFlightAtShutdown {
    let draft = Arc::new(FakeDraft::paused());
    let draft_address = serve_draft(draft.clone()).await.address;
    let target = serve_target(Arc::new(FakeTarget::default())).await;
    let listen = free_listen();
    let mut args = vec![
        "--listen",
        &listen,
        "--target-node",
        &target.address,
        "--draft-nodes",
        &draft_address,
    ];
    args.extend_from_slice(extra);
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(scot_coordinator::serve(
        fakes::config(&args),
        shutdown.clone().cancelled_owned(),
    ));
    let url = format!("http://{listen}");
    eventually("serving", || async {
        fakes::health_of(&url, "").await.is_some()
    })
    .await;
    let in_flight = open(&url, request(1)).await.unwrap();
    eventually("the drafts started", || async { draft.call_count() == 1 }).await;
    InFlightAtShutdown {
        draft,
        url,
        shutdown,
        server,
        in_flight,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_shutdown_the_coordinator_takes_no_new_request_and_finishes_those_in_flight() {
    let http_listen = free_listen();
    let InFlightAtShutdown {
        draft,
        url,
        shutdown,
        server,
        in_flight,
    } = one_request_in_flight(&["--http-listen", &http_listen, "--drain-timeout-secs", "20"]).await;

    shutdown.cancel();
    // Both doors stop taking requests at once.
    eventually("gRPC refuses new connections", || async {
        fakes::health_of(&url, "").await.is_none()
    })
    .await;
    eventually("HTTP refuses new connections", || async {
        tokio::net::TcpStream::connect(&http_listen).await.is_err()
    })
    .await;
    assert!(
        !server.is_finished(),
        "the server waits for the request in flight"
    );

    draft.resume();
    let (_, result) = finish(in_flight)
        .await
        .expect("the request in flight completes");
    assert_eq!(result.stats.unwrap().path, AnswerPath::DraftAccepted as i32);
    tokio::time::timeout(std::time::Duration::from_secs(10), server)
        .await
        .expect("the coordinator exits once drained")
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_still_in_flight_at_the_drain_timeout_ends_with_a_clean_unavailable() {
    // Its drafts wait on the paused node past the 1 s drain timeout.
    let InFlightAtShutdown {
        draft,
        shutdown,
        server,
        in_flight,
        ..
    } = one_request_in_flight(&["--drain-timeout-secs", "1"]).await;
    shutdown.cancel();
    let error = finish(in_flight)
        .await
        .expect_err("the request cannot finish in time");
    assert_eq!(error.code(), Code::Unavailable, "{error:?}");
    assert!(error.message().contains("drain timeout"), "{error:?}");
    tokio::time::timeout(std::time::Duration::from_secs(10), server)
        .await
        .expect("the coordinator exits after its drain timeout")
        .unwrap()
        .unwrap();
    draft.resume();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drafts_lost_mid_stream_are_placed_again_on_the_nodes_left() {
    let (dying, healthy) = (
        Arc::new(FakeDraft::default()),
        Arc::new(FakeDraft::default()),
    );
    dying.dies_mid_stream.store(true, Ordering::SeqCst);
    let target = serve_target(Arc::new(FakeTarget::default())).await;
    let drafts = vec![
        serve_draft(dying.clone()).await.address,
        serve_draft(healthy.clone()).await.address,
    ];
    let coordinator = serve_coordinator(
        &drafts,
        &target.address,
        &["--health-interval-ms", "600000"],
    )
    .await;
    let (_, result) = finish(open(&coordinator.url, request(4)).await.unwrap())
        .await
        .unwrap();
    let stats = result.stats.unwrap();
    // Spread over both nodes at first; the dying node's two drafts are written again by the other,
    // with the same indices (so the same seeds).
    assert_eq!(stats.drafts_replaced, 2, "{}", stats.fallback_reason);
    let indices: Vec<u32> = stats.drafts.iter().map(|d| d.index).collect();
    assert_eq!(
        indices,
        vec![0, 1, 2, 3],
        "calls: dying {:?}, healthy {:?}; {stats:?}",
        dying.calls.lock().unwrap(),
        healthy.calls.lock().unwrap()
    );
    assert!(stats.drafts.iter().all(|d| d.node == "draft-1"));
    assert!(
        stats.fallback_reason.contains("node died"),
        "{}",
        stats.fallback_reason
    );
    let mut replaced: Vec<u32> = healthy.calls.lock().unwrap()[1..].concat();
    replaced.sort_unstable();
    assert_eq!(replaced, dying.calls.lock().unwrap().concat());
}
