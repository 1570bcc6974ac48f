//! The target node's jobs on a real model (Qwen2.5-Coder-0.5B): the selection prompt's layout under the
//! model's own chat template, exact multi-digit option scoring (11 options: "1" vs "10"/"11", through
//! Session::fork), and the answer after an accepted draft in one session.

mod common;

use scot_node_support::{ModelArgs, NodeModel, ThinkingPrompt};
use scot_proto::{generate_event, GenerateRequest, SelectRequest};
use scot_target_node::{generate_job, select_job};

fn load() -> NodeModel {
    let model = common::model_path(common::QWEN);
    ModelArgs {
        model,
        lora: None,
        device: scot_engine::DeviceSpec::Cpu,
        max_context: Some(4096),
        templates_dir: None,
        thinking_prompt: ThinkingPrompt::Auto,
        max_concurrent: 1,
        tensor_parallel: 1,
        fault_inject_rank_failure: None,
    }
    .load()
    .expect("model loads")
}

#[test]
fn selection_and_answer_on_a_real_model() {
    let node = load();
    assert!(
        !node.native_thinking,
        "Qwen2.5-Coder has no </think> of its own"
    );

    // 10 drafts -> 11 options: option 1 is a prefix of options 10 and 11.
    let drafts: Vec<String> = (1..=10)
        .map(|k| format!("2 + 3 = {}. So the answer is {}.", k, k))
        .collect();
    let request = SelectRequest {
        request_id: "t".into(),
        problem: "What is 2 + 3?".into(),
        drafts,
        template: String::new(),
    };
    let job = select_job::prepare(&node, &request).expect("prepare select");
    let text = node.model.tokenizer().decode(&job.prompt, false).unwrap();
    assert!(
        text.ends_with("<|im_start|>assistant\nNumber of the best reasoning path: "),
        "{text:?}"
    );
    assert!(text.contains("Reasoning path 11:\nAll the reasoning paths above are wrong."));
    assert_eq!(job.options.len(), 11);
    assert_eq!(job.options[9].len(), 2, "\"10\" is two digit tokens");
    let response = select_job::run(&node.model, job).expect("select runs");
    assert_eq!(response.option_probs.len(), 11);
    let sum: f32 = response.option_probs.iter().sum();
    assert!((sum - 1.0).abs() < 1e-3, "sum {sum}");
    assert!(response
        .option_logprobs
        .iter()
        .all(|lp| lp.is_finite() && *lp <= 0.0));
    assert!((1..=11).contains(&response.chosen));
    assert_eq!(response.none_correct, response.chosen == 11);

    // The answer after an accepted draft: one prefill, greedy answer that starts the boxed result.
    let request = GenerateRequest {
        request_id: "t".into(),
        problem: "What is 2 + 3?".into(),
        accepted_draft: Some("2 + 3 = 5.".into()),
        max_thinking_tokens: 0,
        max_answer_tokens: 16,
        temperature: 0.0,
        seed: 0,
        template: String::new(),
        think_end: String::new(),
    };
    let job = generate_job::prepare(&node, &request).expect("prepare generate");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    generate_job::run(&node.model, job, &scot_engine::CancelToken::new(), &tx).expect("generate");
    let mut result = None;
    while let Ok(event) = rx.try_recv() {
        if let Some(generate_event::Event::Result(r)) = event.unwrap().event {
            result = Some(r);
        }
    }
    let result = result.expect("a result message");
    assert!(
        result.answer.starts_with("The final answer is \\boxed{"),
        "{:?}",
        result.answer
    );
    assert!(result.answer.contains("\\boxed{5}"), "{:?}", result.answer);
    assert_eq!(result.thinking_tokens, 0);
    assert!(result.answer_tokens > 0);

    // Bad input: an unknown template set and an empty draft list.
    let bad = SelectRequest {
        template: "nope".into(),
        drafts: vec!["x".into()],
        ..request_for_select()
    };
    assert_eq!(
        select_job::prepare(&node, &bad).err().unwrap().code(),
        tonic::Code::InvalidArgument
    );
    assert_eq!(
        select_job::prepare(&node, &request_for_select())
            .err()
            .unwrap()
            .code(),
        tonic::Code::InvalidArgument
    );
}

fn request_for_select() -> SelectRequest {
    SelectRequest {
        request_id: "t".into(),
        problem: "Q".into(),
        drafts: Vec::new(),
        template: String::new(),
    }
}
