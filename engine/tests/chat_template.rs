//! Chat templates from the models' own GGUF metadata, rendered like transformers' apply_chat_template.
//! Expected strings were produced with Jinja2 (trim_blocks, lstrip_blocks, as transformers sets it).

mod common;

use candle_core::quantized::gguf_file;
use scot_engine::{ChatMessage, ChatTemplate, EngineError};

fn gguf_template(file: &str) -> ChatTemplate {
    let path = common::model_path(file);
    let mut f = std::fs::File::open(&path).expect("open GGUF");
    let content = gguf_file::Content::read(&mut f).expect("read GGUF metadata");
    ChatTemplate::from_gguf(&content, &path)
        .expect("template compiles")
        .expect("model has a chat template")
}

fn msgs(pairs: &[(&str, &str)]) -> Vec<ChatMessage> {
    pairs
        .iter()
        .map(|(r, c)| ChatMessage::new(*r, *c))
        .collect()
}

#[test]
fn qwen_template_renders_system_user_and_generation_prompt() {
    let t = gguf_template(common::DRAFT);
    let out = t
        .render(
            &msgs(&[
                ("system", "You are a careful solver."),
                ("user", "What is 2+2?"),
            ]),
            true,
        )
        .unwrap();
    assert_eq!(
        out,
        "<|im_start|>system\nYou are a careful solver.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"
    );
    // Without the generation prompt the assistant turn is not opened.
    let out = t
        .render(&msgs(&[("system", "S"), ("user", "U")]), false)
        .unwrap();
    assert_eq!(
        out,
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n"
    );
    assert!(t.source().contains("<|im_start|>"));
    assert_eq!(t.eos_token(), Some("<|im_end|>"));
    assert_eq!(t.bos_token(), Some("<|endoftext|>"));
}

#[test]
fn qwen_template_adds_default_system_prompt_and_multi_turn() {
    let t = gguf_template(common::TARGET);
    assert_eq!(
        t.render(&msgs(&[("user", "Hi  there\n")]), true).unwrap(),
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi  there\n<|im_end|>\n<|im_start|>assistant\n"
    );
    assert_eq!(
        t.render(&msgs(&[("user", "a"), ("assistant", "b"), ("user", "c")]), true)
            .unwrap(),
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n<|im_start|>user\na<|im_end|>\n<|im_start|>assistant\nb<|im_end|>\n<|im_start|>user\nc<|im_end|>\n<|im_start|>assistant\n"
    );
}

#[test]
fn smollm2_template_renders() {
    let t = gguf_template(common::SMOL);
    assert_eq!(
        t.render(&msgs(&[("user", "Hi  there\n")]), true).unwrap(),
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi  there\n<|im_end|>\n<|im_start|>assistant\n"
    );
    assert_eq!(
        t.render(
            &msgs(&[("system", "You are a careful solver."), ("user", "What is 2+2?")]),
            true
        )
        .unwrap(),
        "<|im_start|>system\nYou are a careful solver.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"
    );
}

/// Exercises what Hugging Face templates (e.g. DeepSeek-R1-Distill's) rely on: namespace, Python string
/// methods, negative indexing, loop controls, tojson, bos/eos variables, trim/lstrip blocks.
const HF_STYLE_TEMPLATE: &str = r#"{% set ns = namespace(system='') %}
{% for message in messages %}
  {% if message['role'] == 'system' %}
    {% set ns.system = message['content'].strip() %}
  {% endif %}
{% endfor %}
{{ bos_token }}{% if ns.system %}[SYS {{ ns.system | tojson }}]
{% endif %}
{% for message in messages %}
  {% if message.role == 'tool' %}{% break %}{% endif %}
  {% if message.role == 'system' %}{% continue %}{% endif %}
  {% if message.role == 'user' %}
<|User|>{{ message.content }}
  {% elif message.role == 'assistant' %}
    {% set content = message.content.split('</think>')[-1].lstrip() %}
<|Assistant|>{{ content }}{{ eos_token }}
  {% else %}
    {{ raise_exception('unknown role ' + message.role) }}
  {% endif %}
{% endfor %}
{% if add_generation_prompt %}<|Assistant|><think>
{% endif %}
"#;

#[test]
fn hf_style_template_features_render_like_jinja2() {
    let t = ChatTemplate::new(
        HF_STYLE_TEMPLATE.to_string(),
        Some("<s>".into()),
        Some("</s>".into()),
    )
    .unwrap();
    let out = t
        .render(
            &msgs(&[
                ("system", "  Be brief.  "),
                ("user", "Solve x+1=3"),
                ("assistant", "<think>\nx=2\n</think>\n\nx = 2"),
                ("user", "And 2x=8?"),
                ("tool", "ignored"),
            ]),
            true,
        )
        .unwrap();
    assert_eq!(
        out,
        "<s>[SYS \"Be brief.\"]\n<|User|>Solve x+1=3\n<|Assistant|>x = 2</s>\n<|User|>And 2x=8?\n<|Assistant|><think>\n"
    );
    // raise_exception surfaces as a typed error carrying the template's message.
    let err = t.render(&msgs(&[("narrator", "x")]), false).unwrap_err();
    assert!(
        matches!(&err, EngineError::ChatTemplate(m) if m.contains("unknown role narrator")),
        "{err}"
    );
}

#[test]
fn broken_template_is_an_error_not_a_panic() {
    for source in [
        "{% for m in messages %}{{ m.content }}",
        "{{ messages[0].content ",
        "{% if %}x{% endif %}",
    ] {
        let err = ChatTemplate::new(source.to_string(), None, None).unwrap_err();
        assert!(
            matches!(err, EngineError::ChatTemplate(_)),
            "{source}: {err}"
        );
    }
    // Compiles, but fails at render time (calling a string, no messages) -> error.
    let t = ChatTemplate::new("{{ messages[0].content() }}".into(), None, None).unwrap();
    assert!(matches!(
        t.render(&[], true),
        Err(EngineError::ChatTemplate(_))
    ));
}

#[test]
fn tokenizer_config_folder_template() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("tokenizer_config.json"),
        r#"{"bos_token": {"content": "<s>", "special": true}, "eos_token": "</s>",
            "chat_template": "{{ bos_token }}{% for m in messages %}{{ m.role }}: {{ m.content }}{{ eos_token }}{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}"}"#,
    )
    .unwrap();
    let t = ChatTemplate::from_tokenizer_config(dir.path())
        .unwrap()
        .expect("template present");
    assert_eq!(
        t.render(&msgs(&[("user", "hi")]), true).unwrap(),
        "<s>user: hi</s>assistant:"
    );
    // A folder without any template.
    let empty = tempfile::tempdir().unwrap();
    assert!(ChatTemplate::from_tokenizer_config(empty.path())
        .unwrap()
        .is_none());
    // chat_template.jinja takes precedence over tokenizer_config.json.
    std::fs::write(
        dir.path().join("chat_template.jinja"),
        "J{{ messages | length }}{% for m in messages %}:{{ m.content }}{% endfor %}",
    )
    .unwrap();
    let t = ChatTemplate::from_tokenizer_config(dir.path())
        .unwrap()
        .unwrap();
    assert_eq!(t.render(&msgs(&[("user", "hi")]), true).unwrap(), "J1:hi");
}
