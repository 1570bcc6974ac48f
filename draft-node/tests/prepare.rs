//! A Draft call's job on a real model (SmolLM2-135M, context capped at 256): the draft prompt fitted to
//! the context (the decoding cap is what is left when that is less than the request's), the end marker
//! as the stop string unless the answer is wanted, a problem too long for the context refused, and a
//! render-only call's prompt exactly the one drafting would decode from.

#[path = "../../node-support/tests/shared/models.rs"]
mod models;

use scot_draft_node::draft_job;
use scot_proto::draft_event::Event;
use scot_proto::DraftRequest;

const SMOL: &str = "smollm2-135m-instruct-q4_1.gguf";
const CONTEXT: usize = 256;

fn request(problem: &str, max_tokens: u32) -> DraftRequest {
    DraftRequest {
        request_id: "r".into(),
        problem: problem.into(),
        draft_indices: vec![0, 1],
        temperature: 0.6,
        top_p: 0.0,
        top_k: 0,
        max_tokens,
        seed: 1,
        template: String::new(),
        think_end: String::new(),
        include_answer: false,
        render_only: false,
    }
}

#[test]
fn draft_jobs_fit_the_context() {
    let node = models::model_args(SMOL, CONTEXT)
        .load()
        .expect("model loads");

    let job = draft_job::prepare(&node, &request("What is 2+2?", 8)).expect("prepare");
    assert_eq!(job.stop.max_new_tokens, 8);
    assert_eq!(job.stop.stop_strings, vec!["</think>".to_string()]);
    assert_eq!(job.sampling.len(), 2);

    let job = draft_job::prepare(&node, &request("What is 2+2?", 100_000)).expect("prepare");
    assert_eq!(
        job.stop.max_new_tokens,
        CONTEXT - job.prompt.len(),
        "capped at the context left"
    );

    let answer = DraftRequest {
        include_answer: true,
        think_end: "</reasoning>".into(),
        ..request("What is 2+2?", 8)
    };
    let job = draft_job::prepare(&node, &answer).expect("prepare");
    assert!(job.stop.stop_strings.is_empty(), "decodes past the marker");

    let status = draft_job::prepare(&node, &request(&"seven ".repeat(2 * CONTEXT), 8)).unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status
            .message()
            .starts_with("the problem is too long for the draft model: the prompt is "),
        "{status:?}"
    );
    assert!(status.message().ends_with(&format!(
        " tokens and the context is {CONTEXT}; shorten the problem"
    )));
}

#[test]
fn render_only_returns_the_prompt_drafting_decodes_from() {
    let node = models::model_args(SMOL, CONTEXT)
        .load()
        .expect("model loads");
    let asked = DraftRequest {
        render_only: true,
        ..request("What is 2+2?", 8)
    };
    let job = draft_job::prepare(&node, &asked).expect("prepare");
    let drafting = draft_job::prepare(&node, &request("What is 2+2?", 8)).expect("prepare");
    let Some(Event::Prompt(prompt)) = draft_job::rendered(job, &node.fingerprint).event else {
        panic!("a render-only call answers with the prompt");
    };
    assert_eq!(prompt.token_ids, drafting.prompt);
    assert_eq!(
        node.model
            .tokenizer()
            .decode(&prompt.token_ids, false)
            .unwrap(),
        prompt.text,
        "the text is what the token ids read"
    );
    assert!(prompt.text.contains("What is 2+2?"));
    assert_eq!(prompt.model_fingerprint, node.fingerprint);
    assert_eq!(prompt.template_set, "default");
}
