//! A loaded node (model, templates, the gate its engine jobs pass through), and one request's prompts
//! on it: the request's template set and thinking markers rendered with the model's chat format,
//! tokenized and fitted to the model's context.

use std::sync::Arc;

use scot_engine::{Model, Session, Speculator};
use scot_templates::{PromptText, Prompts, TemplateLibrary, TemplateSet, ThinkMarkers};
use tonic::Status;

use crate::engine_chat::EngineChat;
use crate::engine_gate::EngineGate;
use crate::status::{engine_status, template_status};

/// A loaded node: model, templates, and the gate its engine jobs pass through.
#[derive(Clone)]
pub struct NodeModel {
    pub model: Arc<Model>,
    /// The weights' and adapter's fingerprint ([`crate::model_fingerprint`]).
    pub fingerprint: String,
    /// Tensor-parallel ranks the model runs on (1 = unsharded).
    pub tensor_parallel: usize,
    pub templates: TemplateLibrary,
    pub native_thinking: bool,
    /// The speculative draft beside the model (`--speculative-draft`).
    pub speculator: Option<Arc<Speculator>>,
    pub gate: EngineGate,
}

impl NodeModel {
    /// A session on the model, decoding speculatively when the node has a draft for it.
    pub fn session(&self) -> Result<Session<'_>, Status> {
        match &self.speculator {
            Some(speculator) => self.model.speculative_session(speculator),
            None => self.model.session(),
        }
        .map_err(engine_status)
    }

    /// One request's prompts: its template set (empty = `default`) and end marker (empty =
    /// `</think>`) with this model's chat format. An unknown set or a bad marker is INVALID_ARGUMENT.
    pub fn prompts(&self, template: &str, think_end: &str) -> Result<NodePrompts<'_>, Status> {
        let set = self.templates.get(template).map_err(template_status)?;
        let markers = ThinkMarkers::from_end(think_end).map_err(template_status)?;
        Ok(NodePrompts {
            node: self,
            set,
            chat: EngineChat::new(&self.model),
            markers,
        })
    }
}

/// One request's prompts on a node (see [`NodeModel::prompts`]).
pub struct NodePrompts<'n> {
    node: &'n NodeModel,
    set: Arc<TemplateSet>,
    chat: EngineChat<'n>,
    markers: ThinkMarkers,
}

/// A tokenized prompt and the context the model has left after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FittedPrompt {
    pub tokens: Vec<u32>,
    pub room: usize,
}

impl NodePrompts<'_> {
    /// The prompt texts (draft, answer, selection) and the pieces around them.
    pub fn layout(&self) -> Prompts<'_> {
        Prompts::new(
            &self.set,
            &self.chat,
            self.node.native_thinking,
            self.markers.clone(),
        )
    }

    pub fn set(&self) -> &TemplateSet {
        &self.set
    }

    pub fn markers(&self) -> &ThinkMarkers {
        &self.markers
    }

    /// Tokenizes text as it sits inside a prompt (no special tokens added).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, Status> {
        self.node
            .model
            .tokenizer()
            .encode(text, false)
            .map_err(engine_status)
    }

    /// Tokenizes a prompt that must leave at least `min_room` tokens of the model's context; when it
    /// does not, INVALID_ARGUMENT with `too_long(prompt_tokens, context)` as the message. The
    /// prompt's problem and drafts are plain text to the tokenizer: a `<|im_start|>` written in
    /// them cannot open a turn.
    pub fn fit(
        &self,
        prompt: &PromptText,
        min_room: usize,
        too_long: impl FnOnce(usize, usize) -> String,
    ) -> Result<FittedPrompt, Status> {
        let tokens = self
            .node
            .model
            .tokenizer()
            .encode_with_untrusted(prompt.text(), prompt.untrusted())
            .map_err(engine_status)?;
        let context = self.node.model.info().context_length;
        match room_after(tokens.len(), context, min_room) {
            Some(room) => Ok(FittedPrompt { tokens, room }),
            None => Err(Status::invalid_argument(too_long(tokens.len(), context))),
        }
    }
}

/// The context left after a prompt of `prompt_tokens`, if that is at least `min_room`.
fn room_after(prompt_tokens: usize, context: usize, min_room: usize) -> Option<usize> {
    context
        .checked_sub(prompt_tokens)
        .filter(|&room| room >= min_room)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prompt_must_leave_the_room_asked_for() {
        assert_eq!(room_after(10, 100, 1), Some(90));
        assert_eq!(room_after(98, 100, 2), Some(2));
        assert_eq!(room_after(99, 100, 2), None);
        assert_eq!(
            room_after(100, 100, 1),
            None,
            "a full context leaves no room"
        );
        assert_eq!(room_after(100, 100, 0), Some(0));
        assert_eq!(room_after(101, 100, 0), None, "longer than the context");
    }
}
