//! Pulling the final answer out of a model's output (Qwen2.5-Math / math-evaluation-harness order):
//! the last `\boxed{...}` (nested braces), else "final answer is ...", else "the answer is ...",
//! else the last number in the text.

use std::sync::LazyLock;

use regex::Regex;

static LAST_NUMBER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"-?\d+(?:\.\d+)?").expect("static regex"));
static THOUSANDS_COMMA: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(\d),(\d{3})\b").expect("static regex"));

/// The final answer of `text`, or `None` when it holds no boxed answer, answer sentence or number.
pub fn extract_answer(text: &str) -> Option<String> {
    stated_answer(text).or_else(|| last_number(text))
}

/// The answer `text` states as such (a `\boxed{}` or an answer sentence), without falling back to
/// the last number: a chain of thought cut off mid-way ends in some number, not in its answer.
pub fn stated_answer(text: &str) -> Option<String> {
    if let Some(boxed) = last_boxed(text) {
        return non_empty(boxed);
    }
    for phrase in ["final answer is", "the answer is"] {
        if let Some(answer) = after_phrase(text, phrase) {
            return non_empty(answer);
        }
    }
    None
}

fn non_empty(s: String) -> Option<String> {
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_string())
}

/// Contents of the last `\boxed{...}` or `\fbox{...}`; `\boxed 5` (no brace) runs to the next `$` or
/// whitespace. An unbalanced last box yields `None` (truncated output).
pub fn last_boxed(text: &str) -> Option<String> {
    let start = ["\\boxed", "\\fbox"]
        .iter()
        .filter_map(|m| text.rfind(m).map(|i| i + m.len()))
        .max()?;
    let rest = &text[start..];
    let trimmed = rest.trim_start();
    if let Some(inner) = trimmed.strip_prefix('{') {
        return balanced_prefix(inner);
    }
    // `\boxed 5$` form.
    let token: String = trimmed
        .chars()
        .take_while(|c| *c != '$' && !c.is_whitespace())
        .collect();
    (!token.is_empty()).then_some(token)
}

/// The text up to the `}` that closes an already-opened brace.
fn balanced_prefix(s: &str) -> Option<String> {
    let mut depth = 1usize;
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(s[..i].to_string());
                }
            }
            _ => {}
        }
    }
    None
}

/// The answer after the last occurrence of `phrase` (case-insensitive): a `$...$` span if it starts
/// with one, else the rest of the line without a trailing period.
fn after_phrase(text: &str, phrase: &str) -> Option<String> {
    let lower = text.to_ascii_lowercase();
    let at = lower.rfind(phrase)? + phrase.len();
    let rest = text[at..].trim_start_matches([' ', ':', '\t']);
    let answer = if let Some(inner) = rest.strip_prefix("$$") {
        inner.split("$$").next().unwrap_or_default()
    } else if let Some(inner) = rest.strip_prefix('$') {
        inner.split('$').next().unwrap_or_default()
    } else if let Some(inner) = rest.strip_prefix("\\(") {
        inner.split("\\)").next().unwrap_or_default()
    } else {
        let line = rest.lines().next().unwrap_or_default();
        // "... is 42. I hope it is correct." -> "42"
        match line.find(". ") {
            Some(i) => &line[..i],
            None => line,
        }
    };
    Some(answer.trim().trim_end_matches('.').trim().to_string())
}

/// The last number in the text, thousands separators removed.
pub fn last_number(text: &str) -> Option<String> {
    let mut cleaned = text.to_string();
    // Applied twice so 1,234,567 loses both commas (matches cannot overlap).
    for _ in 0..2 {
        cleaned = THOUSANDS_COMMA.replace_all(&cleaned, "$1$2").into_owned();
    }
    LAST_NUMBER
        .find_iter(&cleaned)
        .last()
        .map(|m| m.as_str().to_string())
}
