//! The model's own chat template as a `ChatFormat`, and whether the model thinks on its own.

use scot_engine::{ChatMessage, ChatTemplate, Model};
use scot_proto::limits::DEFAULT_THINK_END;
use scot_templates::{ChatFormat, ChatTurn, PlainChat, TemplateError};

/// Renders with the model's chat template, or the plain ChatML layout when it has none.
pub struct EngineChat<'a> {
    template: Option<&'a ChatTemplate>,
}

impl<'a> EngineChat<'a> {
    pub fn new(model: &'a Model) -> Self {
        Self {
            template: model.chat_template(),
        }
    }
}

impl ChatFormat for EngineChat<'_> {
    fn render(
        &self,
        turns: &[ChatTurn],
        add_generation_prompt: bool,
    ) -> Result<String, TemplateError> {
        match self.template {
            None => PlainChat.render(turns, add_generation_prompt),
            Some(template) => {
                let messages: Vec<ChatMessage> = turns
                    .iter()
                    .map(|t| ChatMessage::new(t.role.as_str(), t.content.clone()))
                    .collect();
                template
                    .render(&messages, add_generation_prompt)
                    .map_err(|e| TemplateError::Chat(e.to_string()))
            }
        }
    }
}

/// Whether the nodes add the template set's system prompt that asks for `<think>…</think>` reasoning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ThinkingPrompt {
    /// Only for models with no thinking marker of their own (no `</think>` token, not in the chat
    /// template), e.g. Qwen2.5-Coder; R1-style models use their chat template as is.
    Auto,
    Always,
    Never,
}

impl ThinkingPrompt {
    /// Whether the model counts as thinking natively (so no system prompt is added).
    pub fn native_thinking(self, model: &Model) -> bool {
        match self {
            ThinkingPrompt::Always => false,
            ThinkingPrompt::Never => true,
            ThinkingPrompt::Auto => {
                model.tokenizer().token_to_id(DEFAULT_THINK_END).is_some()
                    || model
                        .chat_template()
                        .is_some_and(|t| t.source().contains(DEFAULT_THINK_END))
            }
        }
    }
}
