//! One request's prompts on a real model (SmolLM2-135M, context capped at 256): a bad template set or
//! end marker is refused as the client's error, a fitted prompt is the tokenized text with the context
//! left after it, and a prompt that leaves less than the room asked for is refused with the caller's
//! message.

#[path = "shared/models.rs"]
mod models;

use scot_node_support::NodeModel;
use tonic::Code;

const SMOL: &str = "smollm2-135m-instruct-q4_1.gguf";
const CONTEXT: usize = 256;

fn load() -> NodeModel {
    models::model_args(SMOL, CONTEXT)
        .load()
        .expect("model loads")
}

#[test]
fn prompts_are_built_tokenized_and_fitted_to_the_context() {
    let node = load();
    assert_eq!(node.model.info().context_length, CONTEXT);

    let refused = |template: &str, think_end: &str| match node.prompts(template, think_end) {
        Ok(_) => panic!("{template:?} / {think_end:?} should be refused"),
        Err(status) => status,
    };
    let unknown = refused("no-such-set", "");
    assert_eq!(unknown.code(), Code::InvalidArgument);
    assert!(unknown.message().contains("no-such-set"), "{unknown:?}");
    assert_eq!(refused("", "   ").code(), Code::InvalidArgument);

    let prompts = node.prompts("", "").expect("the default set");
    assert_eq!(prompts.set().name(), "default");
    assert_eq!(prompts.markers().end, "</think>");
    let text = prompts.layout().draft_prompt("What is 2+2?").unwrap();
    let no_message = |_: usize, _: usize| -> String { panic!("the prompt fits") };
    let fitted = prompts.fit(&text, 1, no_message).expect("fits");
    assert_eq!(
        fitted.tokens,
        node.model.tokenizer().encode(text.text(), false).unwrap(),
        "a benign problem tokenizes as the whole prompt would"
    );
    assert_eq!(fitted.room, CONTEXT - fitted.tokens.len());

    // Asking for one token more than is left refuses the prompt with the caller's words.
    let status = prompts
        .fit(&text, fitted.room + 1, |tokens, context| {
            format!("{tokens} tokens in a context of {context}")
        })
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status.message(),
        format!("{} tokens in a context of {CONTEXT}", fitted.tokens.len())
    );
    // So does a problem longer than the whole context.
    let long = prompts
        .layout()
        .draft_prompt(&"seven ".repeat(2 * CONTEXT))
        .unwrap();
    let status = prompts
        .fit(&long, 0, |_, _| "too long".to_string())
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(status.message(), "too long");
}
