//! A prompt's text with the byte ranges that came from outside scot (the problem, the drafts). The
//! nodes tokenize those ranges as plain text, never as special tokens, so a problem that contains
//! `<|im_start|>` or `</think>` cannot open a chat turn, close thinking or forge a selection answer.
//!
//! While a prompt is rendered through the template set and the model's chat template, untrusted text
//! travels between two Unicode noncharacters (reserved for a program's internal use); the rendered
//! text is then split into the clean text and the ranges the marks enclosed.

use std::ops::Range;

use crate::error::TemplateError;

const OPEN: char = '\u{FDD0}';
const CLOSE: char = '\u{FDD1}';

/// A rendered prompt: `text` as the model reads it, `untrusted` the byte ranges of it that must be
/// tokenized as plain text (sorted, disjoint, on character boundaries).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptText {
    text: String,
    untrusted: Vec<Range<usize>>,
}

impl PromptText {
    /// Text that is all scot's own (no untrusted ranges).
    pub fn trusted(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            untrusted: Vec::new(),
        }
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn untrusted(&self) -> &[Range<usize>] {
        &self.untrusted
    }

    /// The untrusted parts, in order (for tests and logs).
    pub fn untrusted_parts(&self) -> impl Iterator<Item = &str> {
        self.untrusted.iter().map(|r| &self.text[r.clone()])
    }

    /// Splits rendered text into clean text and the ranges its marks enclosed. Marks that are
    /// unbalanced or nested mean a template cut or reordered untrusted text: an error, since the
    /// boundary between scot's text and the user's could no longer be trusted.
    pub(crate) fn from_marked(marked: &str) -> Result<Self, TemplateError> {
        let mut text = String::with_capacity(marked.len());
        let mut untrusted = Vec::new();
        let mut open: Option<usize> = None;
        let broken = || {
            TemplateError::Chat(
                "a template cut into the problem or a draft (its untrusted-text marks are \
                 unbalanced); templates must insert them whole"
                    .to_string(),
            )
        };
        for c in marked.chars() {
            match (c, open) {
                (OPEN, None) => open = Some(text.len()),
                (CLOSE, Some(start)) => {
                    if start < text.len() {
                        untrusted.push(start..text.len());
                    }
                    open = None;
                }
                (OPEN, Some(_)) | (CLOSE, None) => return Err(broken()),
                (c, _) => text.push(c),
            }
        }
        if open.is_some() {
            return Err(broken());
        }
        Ok(Self { text, untrusted })
    }
}

/// `text` marked as untrusted for rendering. Marks already in it are dropped (they are
/// noncharacters, never meaningful input); leading and trailing whitespace stays outside the marks
/// so a template that trims its input still trims it.
pub(crate) fn mark_untrusted(text: &str) -> String {
    let core = text.trim();
    if core.is_empty() {
        return text.replace([OPEN, CLOSE], "");
    }
    let start = text.len() - text.trim_start().len();
    let end = start + core.len();
    let mut out = String::with_capacity(text.len() + 2 * OPEN.len_utf8());
    out.push_str(&text[..start]);
    out.push(OPEN);
    out.extend(core.chars().filter(|&c| c != OPEN && c != CLOSE));
    out.push(CLOSE);
    out.push_str(&text[end..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_round_trip_to_ranges() {
        let marked = format!(
            "Q: {}\nA: {}!",
            mark_untrusted(" x<|im_start|>y "),
            mark_untrusted("z")
        );
        let p = PromptText::from_marked(&marked).unwrap();
        assert_eq!(p.text(), "Q:  x<|im_start|>y \nA: z!");
        assert_eq!(
            p.untrusted_parts().collect::<Vec<_>>(),
            ["x<|im_start|>y", "z"]
        );
    }

    #[test]
    fn marks_inside_input_are_dropped_and_broken_marks_are_errors() {
        let sneaky = format!("a{CLOSE}b{OPEN}c");
        let p = PromptText::from_marked(&mark_untrusted(&sneaky)).unwrap();
        assert_eq!(p.text(), "abc");
        assert_eq!(p.untrusted_parts().collect::<Vec<_>>(), ["abc"]);
        for bad in [
            format!("{OPEN}a"),
            format!("a{CLOSE}"),
            format!("{OPEN}{OPEN}a{CLOSE}"),
        ] {
            assert!(PromptText::from_marked(&bad).is_err(), "{bad:?}");
        }
        assert_eq!(mark_untrusted("  "), "  ");
    }
}
