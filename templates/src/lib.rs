//! scot's prompt templates: user-replaceable template sets (draft, select, answer) and the layout of
//! the prompts the nodes build from them around a model's own chat format.
//!
//! Shared by the draft node (draft prompt) and the target node (selection, answer, thinking prompts) so
//! that an accepted draft is continued after exactly the prompt it was written for.

pub mod chat_format;
pub mod error;
pub mod prompt_text;
pub mod prompts;
pub mod template_set;

pub use chat_format::{ChatFormat, ChatRole, ChatTurn, PlainChat};
pub use error::TemplateError;
pub use prompt_text::PromptText;
pub use prompts::{Prompts, ThinkMarkers, DEFAULT_THINK_END};
pub use template_set::{TemplateLibrary, TemplateSet, DEFAULT_SET};
