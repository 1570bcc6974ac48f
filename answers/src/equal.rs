//! Deciding whether two normalised answers are the same: exact text, numbers within a relative
//! tolerance, tuples/intervals element by element, unordered lists and sets of solutions,
//! `x = 3` against `3`, and expressions that agree at fixed points (see `expression`).

use std::sync::LazyLock;

use regex::Regex;

use crate::expression::{evaluate, ASSIGNMENTS};
use crate::normalize::{closing_of_first, normalize};

/// Relative tolerance for numeric equality.
pub const RELATIVE_TOLERANCE: f64 = 1e-6;

static PLAIN_NUMBER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^-?\d+(\.\d+)?$").expect("static regex"));
/// A short left-hand side that names the answer: `x=`, `a_1=`, `f(x)=`, `x\in`, `m_{\max}=`.
static SIMPLE_LHS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^([a-zA-Z](?:_\{?[a-zA-Z0-9\\]+\}?)?(?:\([a-zA-Z]\))?)(=|\\in)(.+)$")
        .expect("static regex")
});

/// Whether the prediction and the gold answer denote the same final answer (both raw; each side is
/// normalised here).
pub fn answers_equal(prediction: &str, gold: &str) -> bool {
    // Runaway text (a draft that never stops) is no final answer worth normalising: exact text.
    if prediction.len() > MAX_ANSWER_BYTES || gold.len() > MAX_ANSWER_BYTES {
        let (p, g) = (prediction.trim(), gold.trim());
        return !p.is_empty() && p == g;
    }
    let p = normalize(prediction);
    let g = normalize(gold);
    if p.is_empty() || g.is_empty() {
        return false;
    }
    // A final answer is short; a long one (a draft's runaway text) is compared as text only, so
    // its nesting and list length cannot make the comparison deep or quadratic.
    if p.len() > MAX_COMPARED_BYTES || g.len() > MAX_COMPARED_BYTES {
        return p == g;
    }
    equal_normalized(&p, &g)
}

/// Longest normalised answer compared by structure and value (longer ones: exact text).
const MAX_COMPARED_BYTES: usize = 1000;

/// Longest raw answer normalised at all.
const MAX_ANSWER_BYTES: usize = 16 << 10;

fn equal_normalized(p: &str, g: &str) -> bool {
    if p == g {
        return true;
    }
    if is_word(p) && is_word(g) {
        return p.eq_ignore_ascii_case(g);
    }
    if p.contains("pmatrix") || g.contains("pmatrix") {
        return matrices_equal(p, g);
    }
    // Unions of intervals: ordered, piece by piece.
    let (pu, gu) = (split_top_level(p, "\\cup"), split_top_level(g, "\\cup"));
    if pu.len() > 1 || gu.len() > 1 {
        return pu.len() == gu.len() && pu.iter().zip(&gu).all(|(a, b)| equal_normalized(a, b));
    }
    // "a \pm b" is the list "a+b, a-b". Only when a side expands (a text with several top-level
    // `\pm` would otherwise recurse on itself forever).
    let (p_pm, g_pm) = (expand_pm(p), expand_pm(g));
    if p_pm.is_some() || g_pm.is_some() {
        let as_list = |s: &str, expanded: Option<Vec<String>>| {
            expanded.unwrap_or_else(|| match shape(s) {
                Shape::List(elems) => elems.iter().map(|e| e.to_string()).collect(),
                _ => vec![s.to_string()],
            })
        };
        return unordered_equal(&as_list(p, p_pm), &as_list(g, g_pm));
    }
    match (shape(p), shape(g)) {
        (Shape::Group(po, pc, pe), Shape::Group(go, gc, ge)) => {
            return po == go && pc == gc && elementwise(&pe, &ge);
        }
        (Shape::List(pe), Shape::List(ge)) => return unordered_equal(&pe, &ge),
        // A point written without its parentheses ("3, \frac{\pi}{2}" for "(3, \frac{\pi}{2})"):
        // the reference grader strips outer brackets, so accept it, in order. Not for `[`/`]`
        // intervals, where the brackets are the answer.
        (Shape::List(pe), Shape::Group('(', ')', ge))
        | (Shape::Group('(', ')', pe), Shape::List(ge))
            if !p.starts_with('{') && !g.starts_with('{') =>
        {
            return elementwise(&pe, &ge);
        }
        (Shape::Single, Shape::Single) => {}
        _ => return false,
    }
    match (simple_lhs(p), simple_lhs(g)) {
        (Some((pl, pr)), Some((gl, gr))) if pl == gl => return equal_normalized(pr, gr),
        (Some((_, pr)), None) if !g.contains('=') => return equal_normalized(pr, g),
        (None, Some((_, gr))) if !p.contains('=') => return equal_normalized(p, gr),
        _ => {}
    }
    if PLAIN_NUMBER.is_match(p) && PLAIN_NUMBER.is_match(g) {
        return match (p.parse::<f64>(), g.parse::<f64>()) {
            (Ok(a), Ok(b)) => numbers_equal(a, b),
            _ => false,
        };
    }
    if p.matches('=').count() == 1 && g.matches('=').count() == 1 {
        return equations_equal(p, g);
    }
    if p.contains('=') || g.contains('=') {
        return false;
    }
    expressions_equal(p, g)
}

fn is_word(s: &str) -> bool {
    s.chars().all(|c| c.is_ascii_alphabetic()) && !s.is_empty()
}

pub(crate) fn numbers_equal(a: f64, b: f64) -> bool {
    let scale = a.abs().max(b.abs());
    (a - b).abs() <= RELATIVE_TOLERANCE * scale || (a - b).abs() < 1e-12
}

/// Same variables, same values at every fixed assignment.
fn expressions_equal(p: &str, g: &str) -> bool {
    (0..ASSIGNMENTS).all(|k| match (evaluate(p, k), evaluate(g, k)) {
        (Some((a, va)), Some((b, vb))) => va == vb && numbers_equal(a, b),
        _ => false,
    })
}

/// `l1 = r1` against `l2 = r2`: l1 - r1 equals +-(l2 - r2) everywhere.
fn equations_equal(p: &str, g: &str) -> bool {
    let diff = |s: &str, k: usize| {
        let (l, r) = s.split_once('=')?;
        let (lv, mut vars) = evaluate(l, k)?;
        let (rv, rvars) = evaluate(r, k)?;
        vars.extend(rvars);
        Some((lv - rv, vars))
    };
    [1.0, -1.0].iter().any(|sign| {
        (0..ASSIGNMENTS).all(|k| match (diff(p, k), diff(g, k)) {
            (Some((a, va)), Some((b, vb))) => va == vb && numbers_equal(a, sign * b),
            _ => false,
        })
    })
}

fn simple_lhs(s: &str) -> Option<(&str, &str)> {
    let c = SIMPLE_LHS.captures(s)?;
    let lhs = c.get(1)?.as_str();
    let rhs = c.get(3)?.as_str();
    // "x=y=3" and "x=1,y=2" are not a name and a value.
    (!rhs.contains('=')).then_some((lhs, rhs))
}

enum Shape<'a> {
    /// `(a,b)`, `[a,b)`: opening and closing bracket and the elements, order matters.
    Group(char, char, Vec<&'a str>),
    /// `a,b,c` or `{a,b,c}`: a list or set of solutions, order does not matter.
    List(Vec<&'a str>),
    Single,
}

fn shape(s: &str) -> Shape<'_> {
    let first = s.chars().next().unwrap_or(' ');
    let last = s.chars().last().unwrap_or(' ');
    if "([{".contains(first) && ")]}".contains(last) && closing_of_first(s) == Some(s.len() - 1) {
        let inner = &s[1..s.len() - 1];
        let elems = split_top_level(inner, ",");
        if first == '{' {
            return Shape::List(elems);
        }
        if elems.len() > 1 {
            return Shape::Group(first, last, elems);
        }
        return Shape::Single;
    }
    let elems = split_top_level(s, ",");
    if elems.len() > 1 {
        Shape::List(elems)
    } else {
        Shape::Single
    }
}

fn elementwise(a: &[&str], b: &[&str]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| equal_normalized(x, y))
}

/// Multiset equality under `equal_normalized` (greedy matching: fine for short answer lists).
fn unordered_equal<S: AsRef<str>>(a: &[S], b: &[S]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut used = vec![false; b.len()];
    a.iter().all(|x| {
        let found = b
            .iter()
            .enumerate()
            .find(|(i, y)| !used[*i] && equal_normalized(x.as_ref(), y.as_ref()));
        match found {
            Some((i, _)) => {
                used[i] = true;
                true
            }
            None => false,
        }
    })
}

/// Splits on `sep` outside any brackets.
fn split_top_level<'a>(s: &'a str, sep: &str) -> Vec<&'a str> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth -= 1,
            _ => {}
        }
        if depth == 0 && bytes[i..].starts_with(sep.as_bytes()) {
            parts.push(&s[start..i]);
            i += sep.len();
            start = i;
            continue;
        }
        i += 1;
    }
    parts.push(&s[start..]);
    parts
}

/// `a\pm b` -> [a+b, a-b]; `None` without a single top-level `\pm`.
fn expand_pm(s: &str) -> Option<Vec<String>> {
    let parts = split_top_level(s, "\\pm");
    if parts.len() != 2 {
        return None;
    }
    let (a, b) = (parts[0], parts[1]);
    Some(vec![format!("{a}+{b}"), format!("{a}-({b})")])
}

fn matrices_equal(p: &str, g: &str) -> bool {
    let cells = |s: &str| -> Option<Vec<Vec<String>>> {
        let inner = s
            .strip_prefix("\\begin{pmatrix}")?
            .strip_suffix("\\end{pmatrix}")?;
        Some(
            inner
                .split("\\\\")
                .filter(|row| !row.is_empty())
                .map(|row| row.split('&').map(str::to_string).collect())
                .collect(),
        )
    };
    match (cells(p), cells(g)) {
        (Some(a), Some(b)) => {
            a.len() == b.len()
                && a.iter().zip(&b).all(|(ra, rb)| {
                    ra.len() == rb.len() && ra.iter().zip(rb).all(|(x, y)| equal_normalized(x, y))
                })
        }
        _ => false,
    }
}
