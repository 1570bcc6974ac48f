//! The coordinator against in-process fake draft and target nodes (no models): spreading drafts over
//! two nodes, straggler cut-off cancelling the rest on the node, the threshold, drop-capped drafts,
//! the selection policies (vote without the target, hybrid's correction without agreement, bad
//! knobs), node-side rejections and the fallback when no draft node answers.

mod fakes;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use fakes::{solve, start_coordinator, start_draft, start_target, FakeDraft, FakeTarget};
use scot_proto::*;
use tokio::net::TcpListener;

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
            // The flag's nodes by position: clients never see addresses.
            assert_eq!(started.nodes, ["draft-0", "draft-1"]);
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
    // The paper's read-out shows the target exactly the drafts offered.
    let options = SolveOptions {
        n: Some(3),
        select_after_k: Some(1),
        selection_policy: "paper".into(),
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
    // The paper's read-out: the threshold alone decides (hybrid would accept the agreeing drafts).
    let options = SolveOptions {
        n: Some(3),
        drop_capped_drafts: true,
        accept_threshold: Some(0.8),
        selection_policy: "paper".into(),
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
async fn vote_accepts_agreeing_drafts_without_asking_the_target() {
    let node = Arc::new(FakeDraft::default());
    let target = Arc::new(FakeTarget::default());
    let url = start_coordinator(
        vec![start_draft(node.clone()).await],
        start_target(target.clone()).await,
    )
    .await;
    // Drafts 0 and 2 say 5; draft 1 hit the cap and states no answer: 2 of 3 agree, enough at
    // min_votes = 2 (the default for 3 drafts would want all 3).
    let vote = SolveOptions {
        n: Some(3),
        selection_policy: "vote".into(),
        min_votes: Some(2),
        ..Default::default()
    };
    let (events, result) = solve(&url, vote.clone()).await.unwrap();
    let stats = result.stats.unwrap();
    assert!(
        target.selects.lock().unwrap().is_empty(),
        "no selection prefill"
    );
    assert_eq!(stats.path, AnswerPath::DraftAccepted as i32);
    assert_eq!((stats.chosen_draft, stats.chosen), (Some(0), 1));
    assert_eq!(stats.votes, 2);
    assert_eq!(stats.accept_basis, "votes");
    assert_eq!(stats.selection_policy, "vote");
    assert!(!stats.target_scored && stats.option_probs.is_empty());
    let answers: Vec<&str> = stats.drafts.iter().map(|d| d.answer.as_str()).collect();
    assert_eq!(answers, vec!["5", "", "5"]);
    assert!(
        stats.drafts.iter().all(|d| d.text.is_empty()),
        "texts only on request"
    );
    assert!(events.iter().any(|e| matches!(e,
        solve_event::Event::Selection(s) if s.votes == 2 && s.accepted_option == 1 && s.chosen == 0)));

    // No agreement: the target's pick decides (the fake picks option 1).
    node.disagree.store(true, Ordering::SeqCst);
    let (_, result) = solve(
        &url,
        SolveOptions {
            include_draft_texts: true,
            ..vote
        },
    )
    .await
    .unwrap();
    let stats = result.stats.unwrap();
    assert_eq!(target.selects.lock().unwrap().len(), 1);
    assert_eq!((stats.votes, stats.accept_basis.as_str()), (1, "target"));
    assert!(stats.target_scored);
    assert_eq!(stats.drafts[0].text, "draft 0 says 5");
}

#[tokio::test]
async fn hybrid_lets_the_target_think_without_agreement_and_bad_knobs_are_refused() {
    let node = Arc::new(FakeDraft::default());
    node.disagree.store(true, Ordering::SeqCst);
    let target = Arc::new(FakeTarget::default());
    let url = start_coordinator(
        vec![start_draft(node).await],
        start_target(target.clone()).await,
    )
    .await;
    // The server default is hybrid at tau = 1: without agreement the target's pick could not be
    // taken, so it is not asked and the target thinks.
    let (_, result) = solve(
        &url,
        SolveOptions {
            n: Some(3),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let stats = result.stats.unwrap();
    assert_eq!(stats.selection_policy, "hybrid");
    assert!(
        target.selects.lock().unwrap().is_empty(),
        "no selection prefill"
    );
    assert!(!stats.target_scored);
    assert_eq!(stats.path, AnswerPath::TargetCorrection as i32);
    assert_eq!(stats.chosen, 4, "n + 1: none taken");
    assert!(
        stats.fallback_reason.contains("no answer agreement"),
        "{}",
        stats.fallback_reason
    );
    // Under a lower threshold the target is asked, and its pick (0.7) is taken on raw
    // probabilities: this target has no prior.
    let (_, result) = solve(
        &url,
        SolveOptions {
            n: Some(3),
            accept_threshold: Some(0.5),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let stats = result.stats.unwrap();
    assert_eq!(target.selects.lock().unwrap().len(), 1);
    assert!(stats.target_scored);
    assert_eq!(stats.path, AnswerPath::DraftAccepted as i32);
    assert_eq!(stats.accept_basis, "target");
    assert!(
        stats.fallback_reason.contains("no selection prior"),
        "{}",
        stats.fallback_reason
    );

    for (options, field, needle) in [
        (
            SolveOptions {
                selection_policy: "fast".into(),
                ..Default::default()
            },
            "options.selection_policy",
            "paper, debiased, vote, hybrid",
        ),
        (
            SolveOptions {
                n: Some(3),
                min_votes: Some(4),
                ..Default::default()
            },
            "options.min_votes",
            "between 1 and n = 3",
        ),
        (
            SolveOptions {
                n: Some(3),
                select_permutations: Some(4),
                ..Default::default()
            },
            "options.select_permutations",
            "between 1",
        ),
    ] {
        let status = solve(&url, options).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(
            status.message().starts_with(field) && status.message().contains(needle),
            "{}",
            status.message()
        );
    }
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
    assert!(stats.fallback_reason.contains("draft-0 ("));
    assert!(!stats.fallback_reason.contains(&dead));
    assert_eq!(result.answer, "\\boxed{5}");
}
