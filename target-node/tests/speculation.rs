//! A target node with `--speculative-draft`: the target thinking from scratch and answering gives the
//! same greedy text as a node without it, reports what the draft proposed and the target kept, counts
//! the draft's cache in its KV budget; a draft with another tokenizer is refused at load.

mod common;

use scot_node_support::{JobSender, NodeModel, SpeculativeArgs};
use scot_proto::{generate_event, GenerateRequest, GenerateResult};
use scot_target_node::generate_job;

fn think_and_answer(node: &NodeModel) -> GenerateResult {
    let request = GenerateRequest {
        request_id: "t".into(),
        problem: "A shop sells pens at 3 dollars each. How much do 7 pens cost?".into(),
        accepted_draft: None,
        max_thinking_tokens: 64,
        max_answer_tokens: 24,
        temperature: 0.0,
        seed: 0,
        template: String::new(),
        think_end: String::new(),
        resume: None,
    };
    let job = generate_job::prepare(node, &request).expect("prepare generate");
    let (tx, mut rx) = JobSender::buffered(4096);
    generate_job::run(node, job, &scot_engine::CancelToken::new(), &tx).expect("generate");
    let mut result = None;
    while let Ok(event) = rx.try_recv() {
        if let Some(generate_event::Event::Result(r)) = event.unwrap().event {
            result = Some(r);
        }
    }
    result.expect("a result message")
}

fn speculating(draft: &str, tokens: usize) -> SpeculativeArgs {
    SpeculativeArgs {
        speculative_draft: Some(common::models::model_path(draft)),
        speculative_tokens: tokens,
    }
}

#[tokio::test]
async fn a_speculating_target_writes_what_a_plain_one_writes() {
    let _serial = common::serial().await;
    let args = common::models::model_args(common::QWEN, 4096);
    let plain_node = args.load().expect("model loads");
    let plain = think_and_answer(&plain_node);
    assert_eq!(
        (
            plain.speculative_proposed_tokens,
            plain.speculative_accepted_tokens
        ),
        (0, 0)
    );
    drop(plain_node);

    // The model drafting for itself: the wiring, not the speed-up, is under test here (the
    // engine's tests run the default 0.5B -> 1.5B pair).
    let node = args
        .load_with(&speculating(common::QWEN, 3))
        .expect("model and draft load");
    let spec = think_and_answer(&node);
    assert_eq!(spec.thinking, plain.thinking);
    assert_eq!(spec.answer, plain.answer);
    assert_eq!(
        (spec.thinking_tokens, spec.answer_tokens),
        (plain.thinking_tokens, plain.answer_tokens)
    );
    assert!(spec.speculative_proposed_tokens > 0, "{spec:?}");
    assert!(spec.speculative_accepted_tokens <= spec.speculative_proposed_tokens);
    assert!(spec.speculative_accepted_tokens > 0, "{spec:?}");
}

#[tokio::test]
async fn the_kv_budget_counts_the_drafts_cache_and_another_tokenizer_is_refused() {
    let _serial = common::serial().await;
    let mut args = common::models::model_args(common::QWEN, 4096);
    args.kv_budget_mib = Some(64);
    let plain = args.load().expect("model loads");
    let per_token = plain.model.info().kv_bytes_per_token;
    let budget = |node: &NodeModel| node.gate.kv().tokens().unwrap();
    let plain_positions = budget(&plain);
    drop(plain);
    let node = args.load_with(&speculating(common::QWEN, 2)).unwrap();
    assert_eq!(node.gate.kv().bytes_per_token(), 2 * per_token);
    assert_eq!(budget(&node), plain_positions / 2);
    drop(node);

    let Err(err) = args.load_with(&speculating(common::SMOL, 2)) else {
        panic!("SmolLM's tokenizer is not Qwen's: the draft must be refused");
    };
    assert!(err.to_string().contains("tokenizers differ"), "{err}");
}
