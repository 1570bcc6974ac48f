//! How a target node streams: in chunks when the request asks (same text and ids, fewer messages),
//! and with `--speculative-draft` (the same greedy text as a node without it, what the draft proposed
//! and the target kept reported, the draft's cache counted in the KV budget; a draft with another
//! tokenizer refused at load).

mod common;

use scot_node_support::{NodeModel, SpeculativeArgs};
use scot_proto::{GeneratePhase, GenerateRequest, GenerateResult, GenerateToken, StreamChunking};

/// The target thinking from scratch, then answering (greedy), streamed as `chunking` asks.
fn pens_request(chunking: Option<StreamChunking>) -> GenerateRequest {
    GenerateRequest {
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
        chunking,
    }
}

fn think_and_answer(node: &NodeModel) -> GenerateResult {
    common::run_generate(node, &pens_request(None)).1
}

#[tokio::test]
async fn chunked_streaming_sends_the_same_text_and_ids_in_fewer_messages() {
    let _serial = common::serial().await;
    let node = common::models::model_args(common::QWEN, 4096)
        .load()
        .expect("model loads");
    let (single, plain) = common::run_generate(&node, &pens_request(None));
    let chunking = StreamChunking {
        max_tokens: 8,
        max_ms: 0,
    };
    let (chunks, chunked) = common::run_generate(&node, &pens_request(Some(chunking)));
    assert_eq!(
        (&chunked.thinking, &chunked.answer),
        (&plain.thinking, &plain.answer)
    );
    let joined = |tokens: &[GenerateToken], phase: GeneratePhase| {
        let mine = tokens.iter().filter(|t| t.phase == phase as i32);
        let text: String = mine.clone().map(|t| t.text.as_str()).collect();
        let ids: Vec<u32> = mine.flat_map(|t| t.token_ids.clone()).collect();
        (text, ids)
    };
    for phase in [GeneratePhase::Thinking, GeneratePhase::Answer] {
        assert_eq!(joined(&chunks, phase), joined(&single, phase), "{phase:?}");
        // Every message but the phase's last holds at least 8 tokens (the answer's start, added
        // by the target, has none).
        let sizes: Vec<usize> = chunks
            .iter()
            .filter(|t| t.phase == phase as i32 && !t.token_ids.is_empty())
            .map(|t| t.token_ids.len())
            .collect();
        let (last, rest) = sizes.split_last().expect("tokens in every phase");
        assert!(
            rest.iter().all(|&n| n >= 8) && *last <= 8 + 3,
            "{phase:?}: {sizes:?}"
        );
    }
    let tokens = (plain.thinking_tokens + plain.answer_tokens) as usize;
    assert!(
        single.len() >= tokens - 4,
        "one message per token unchunked"
    );
    assert!(
        chunks.len() <= tokens / 8 + 4,
        "{} messages for {tokens} tokens",
        chunks.len()
    );
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
