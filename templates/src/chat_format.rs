//! How a model lays out a conversation. The nodes wrap the model's own chat template; `PlainChat` is the
//! fallback for a model without one (and what the unit tests use).

use crate::error::TemplateError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatRole {
    System,
    User,
    Assistant,
}

impl ChatRole {
    pub fn as_str(self) -> &'static str {
        match self {
            ChatRole::System => "system",
            ChatRole::User => "user",
            ChatRole::Assistant => "assistant",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatTurn {
    pub role: ChatRole,
    pub content: String,
}

impl ChatTurn {
    pub fn new(role: ChatRole, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
        }
    }
}

/// Renders a conversation to the model's prompt text.
pub trait ChatFormat: Send + Sync {
    fn render(
        &self,
        turns: &[ChatTurn],
        add_generation_prompt: bool,
    ) -> Result<String, TemplateError>;
}

/// ChatML-like plain layout for models without a chat template.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlainChat;

impl ChatFormat for PlainChat {
    fn render(
        &self,
        turns: &[ChatTurn],
        add_generation_prompt: bool,
    ) -> Result<String, TemplateError> {
        let mut out = String::new();
        for turn in turns {
            out.push_str("<|im_start|>");
            out.push_str(turn.role.as_str());
            out.push('\n');
            out.push_str(&turn.content);
            out.push_str("<|im_end|>\n");
        }
        if add_generation_prompt {
            out.push_str("<|im_start|>assistant\n");
        }
        Ok(out)
    }
}
