//! String normalisation applied to both the prediction and the gold answer before comparing
//! (after Qwen2.5-Math's `strip_string` and the MATH normaliser): cheap rewrites only, no algebra.

use std::sync::LazyLock;

use regex::Regex;

fn re(pattern: &str) -> Regex {
    Regex::new(pattern).expect("static regex")
}

/// A number followed by a unit in `\text{...}`/`\mbox{...}`/`\mathrm{...}`: the unit is cut.
static TRAILING_TEXT_UNIT: LazyLock<Regex> = LazyLock::new(|| {
    re(r"^(.*?[0-9}a-zA-Z)])\s*\\(?:text|mbox|mathrm)\{\s*[a-zA-Z][a-zA-Z .]*\}(?:\^\{?[23]\}?)?$")
});
/// Remaining `\text{X}`-style wrappers are unwrapped.
static TEXT_WRAPPER: LazyLock<Regex> = LazyLock::new(|| {
    re(r"\\(?:text|textbf|textit|mbox|mathrm|mathbf|boldsymbol|operatorname)\{([^{}]*)\}")
});
/// Unit words standing after a number, separated by a space ("17 meters", "5 square units").
static TRAILING_UNIT_WORD: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)([0-9}.])\s+(?:square |sq\.? |cubic )?(?:dollars?|cents?|units?|meters?|metres?|centimeters?|cm|km|mm|kilometers?|inches|inch|in|feet|foot|ft|yards?|yd|miles?|mph|hours?|hrs?|minutes?|mins?|seconds?|sec|days?|weeks?|months?|years?|degrees?|pounds?|lbs?|ounces?|oz|kg|kilograms?|grams?|liters?|litres?|ml|gallons?|people|persons?|students?|times|points?|percent|multiples|ways|miles per hour|km/h|m/s)(?:\^\{?[23]\}?)?\.?$",
    )
});
static FRAC_SHORT: LazyLock<Regex> =
    LazyLock::new(|| re(r"\\frac(?:([0-9a-zA-Z])|\{([^{}]*)\})(?:([0-9a-zA-Z])|\{([^{}]*)\})"));
static SQRT_SHORT: LazyLock<Regex> = LazyLock::new(|| re(r"\\sqrt([0-9a-zA-Z])"));
static MIXED_NUMBER: LazyLock<Regex> =
    LazyLock::new(|| re(r"(^|[^0-9^_{.a-zA-Z])([0-9]+)\\frac\{([0-9]+)\}\{([0-9]+)\}"));
static THOUSANDS: LazyLock<Regex> = LazyLock::new(|| re(r"^-?\d{1,3}(,\d{3})+(\.\d+)?$"));
static TRAILING_ZERO_DECIMAL: LazyLock<Regex> = LazyLock::new(|| re(r"^(-?\d+)\.0+$"));
static TRAILING_ZEROS: LazyLock<Regex> = LazyLock::new(|| re(r"^(-?\d+\.\d*?[1-9])0+$"));
static WRAPPED_TOKEN: LazyLock<Regex> = LazyLock::new(|| re(r"^[(\[{]([a-zA-Z0-9]+)[)\]}]$"));

const NUMBER_WORDS: [&str; 13] = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve",
];

/// Normalises an answer string: removes `$`, `\left`/`\right`, spaces, thousands separators, degree
/// signs, percent signs, trailing units and `\text{}` wrappers; rewrites `\dfrac`/`\tfrac` to `\frac`,
/// `\frac12` to `\frac{1}{2}`, mixed numbers `1\frac{1}{4}` to `(1+\frac{1}{4})`, `3.50` to `3.5`.
pub fn normalize(answer: &str) -> String {
    let mut s = answer.trim().replace(['\n', '\r', '\t'], " ");

    // Delimiters and spacing commands.
    for (from, to) in [
        ("\\$", ""),
        ("$", ""),
        ("\\(", ""),
        ("\\)", ""),
        ("\\[", ""),
        ("\\]", ""),
        ("\\!", ""),
        ("{,}", ","),
        ("\\,", ""),
        ("\\;", ""),
        ("\\:", ""),
        ("\\quad", " "),
        ("\\displaystyle", ""),
        ("\\dfrac", "\\frac"),
        ("\\tfrac", "\\frac"),
        ("\\left", ""),
        ("\\right", ""),
        ("\\bigl", ""),
        ("\\bigr", ""),
        ("\\Bigl", ""),
        ("\\Bigr", ""),
        ("\\neq", "\\ne"),
        ("\\leqslant", "\\le"),
        ("\\geqslant", "\\ge"),
        ("\\leq", "\\le"),
        ("\\geq", "\\ge"),
        ("\\varnothing", "\\emptyset"),
        ("bmatrix", "pmatrix"),
        ("\\{", "{"),
        ("\\}", "}"),
        ("\\%", ""),
        ("%", ""),
        ("^{\\circ}", ""),
        ("^\\circ", ""),
        ("\\circ", ""),
        ("°", ""),
        ("\\infty", "\\infty "),
    ] {
        s = s.replace(from, to);
    }
    s = s.trim().to_string();
    // "\left." leaves a lone "." at the start of some interval answers; trailing periods end sentences.
    s = s.trim_end_matches(['.', ' ']).to_string();

    // Units: a trailing \text{ unit}, then plain unit words after a number.
    if let Some(c) = TRAILING_TEXT_UNIT.captures(&s) {
        s = c[1].to_string();
    }
    loop {
        let next = TEXT_WRAPPER.replace_all(&s, "$1").into_owned();
        if next == s {
            break;
        }
        s = next;
    }
    loop {
        let next = TRAILING_UNIT_WORD.replace(&s, "$1").trim().to_string();
        if next == s {
            break;
        }
        s = next;
    }
    s = s.replace(" or ", ",").replace(" and ", ",");
    s = s
        .replace("infinity", "\\infty")
        .replace("+\\infty", "\\infty");
    s = s.replace("\\emptyset", "{}");

    // Whitespace carries no meaning once the text wrappers are gone.
    s.retain(|c| !c.is_whitespace());
    s = s
        .trim_end_matches(['.', '/'])
        .trim_start_matches(':')
        .to_string();

    if THOUSANDS.is_match(&s) {
        s = s.replace(',', "");
    }
    s = TRAILING_ZERO_DECIMAL.replace(&s, "$1").into_owned();
    s = TRAILING_ZEROS.replace(&s, "$1").into_owned();
    if s.starts_with('.') {
        s.insert(0, '0');
    }
    if let Some(n) = NUMBER_WORDS.iter().position(|w| s.eq_ignore_ascii_case(w)) {
        s = n.to_string();
    }

    // LaTeX shorthands.
    s = FRAC_SHORT
        .replace_all(&s, |c: &regex::Captures| {
            let num = c.get(1).or(c.get(2)).map_or("", |m| m.as_str());
            let den = c.get(3).or(c.get(4)).map_or("", |m| m.as_str());
            format!("\\frac{{{num}}}{{{den}}}")
        })
        .into_owned();
    s = SQRT_SHORT.replace_all(&s, "\\sqrt{$1}").into_owned();
    s = MIXED_NUMBER
        .replace_all(&s, "$1($2+\\frac{$3}{$4})")
        .into_owned();
    if s == "(-\\infty,\\infty)" {
        s = "\\mathbb{R}".to_string();
    }

    // Outer braces and a bare token in brackets: "{5}" -> "5", "(B)" -> "B".
    let layers = outer_brace_layers(&s);
    if layers > 0 {
        s = s[layers..s.len() - layers].to_string();
    }
    if let Some(c) = WRAPPED_TOKEN.captures(&s) {
        if c[1].chars().all(|ch| ch.is_ascii_alphabetic()) || c[1].len() == 1 {
            s = c[1].to_string();
        }
    }
    s
}

/// How many `{...}` wrap the whole of `s` (`{{5}}`: 2, `{5}{6}`: 0), found in one pass (peeling
/// one layer per scan is quadratic in the nesting, which hostile text makes deep).
fn outer_brace_layers(s: &str) -> usize {
    let bytes = s.as_bytes();
    let leading = bytes.iter().take_while(|&&b| b == b'{').count();
    // Where each leading brace closes, matched as `closing_of_first` does (any bracket kind).
    let mut closes = vec![usize::MAX; leading];
    let mut open = Vec::new();
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'(' | b'[' | b'{' => open.push(i),
            b')' | b']' | b'}' => match open.pop() {
                Some(at) if at < leading => closes[at] = i,
                Some(_) => {}
                None => break,
            },
            _ => {}
        }
    }
    let last = bytes.len().saturating_sub(1);
    (0..leading)
        .take_while(|&j| j < last - j && closes[j] == last - j)
        .count()
}

/// Byte index of the bracket that closes the bracket at index 0 (any of `([{` / `)]}` count).
pub(crate) fn closing_of_first(s: &str) -> Option<usize> {
    let mut depth = 0i32;
    for (i, c) in s.char_indices() {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outer_braces_are_counted_where_they_wrap_everything() {
        for (text, layers) in [
            ("5", 0),
            ("{5}", 1),
            ("{{5}}", 2),
            ("{5}{6}", 0),
            ("{{5}{6}}", 1),
            ("{(1,2)}", 1),
            ("{", 0),
            ("{{", 0),
            ("{}", 1),
            ("{5}}", 0),
        ] {
            assert_eq!(outer_brace_layers(text), layers, "{text}");
        }
        assert_eq!(normalize("{{{12}}}"), "12");
        let deep = format!("{}7{}", "{".repeat(50_000), "}".repeat(50_000));
        assert_eq!(normalize(&deep), "7");
    }
}
