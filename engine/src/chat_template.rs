//! Chat templates (Jinja, rendered by minijinja) from GGUF metadata or tokenizer_config.json.
//!
//! Hugging Face renders templates with Jinja2 (`trim_blocks`, `lstrip_blocks`, `raise_exception`,
//! `strftime_now`, a `tojson` that writes Python's `json.dumps` layout) and Python string methods
//! (`.strip()`, `.split()`, ...). The environment here reproduces those so the models' own templates render
//! the same text as `transformers.apply_chat_template`.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use candle_core::quantized::gguf_file;
use minijinja::value::{Kwargs, ValueKind};
use minijinja::{context, Environment, Error as JinjaError, ErrorKind, Value};

use crate::bounded_read::{read_text, MAX_CONFIG_BYTES};
use crate::error::{EngineError, Result};

const TEMPLATE_NAME: &str = "chat";

/// Instructions one render may run (minijinja fuel). Measured: the Qwen2.5 template takes 86 for one
/// message and 691 for twenty (SmolLM2's 60 and 497), and scot renders at most a few; a template that
/// loops runs out instead of holding a worker.
pub const FUEL: u64 = 50_000;

/// Elements a template's `range()` or `| list` may make in one step (minijinja allows 100,000 per
/// range and any number per list: one instruction of fuel could otherwise do that much work).
const MAX_SEQUENCE: usize = 10_000;

/// Output one render may write beyond its messages' own bytes (the turn markup around them).
const OUTPUT_ALLOWANCE: usize = 1 << 20;

/// What the template must render at load: one user turn, as scot sends them.
const SAMPLE_USER_TEXT: &str = "Sample question: what is 1 + 1?";

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }
}

pub struct ChatTemplate {
    source: String,
    bos_token: Option<String>,
    eos_token: Option<String>,
    env: Environment<'static>,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("source_len", &self.source.len())
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
            .finish()
    }
}

impl ChatTemplate {
    /// Compiles `source`; a template with a syntax error is a `ChatTemplate` error here, not at render.
    pub fn new(
        source: String,
        bos_token: Option<String>,
        eos_token: Option<String>,
    ) -> Result<Self> {
        let mut env = Environment::new();
        env.set_fuel(Some(FUEL));
        // Jinja2 settings used by transformers' apply_chat_template.
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_filter("tojson", tojson);
        env.add_function("range", bounded_range);
        env.add_filter("list", bounded_list);
        env.add_template_owned(TEMPLATE_NAME, source.clone())
            .map_err(|e| {
                EngineError::ChatTemplate(format!("invalid template: {}", describe(&e)))
            })?;
        Ok(Self {
            source,
            bos_token,
            eos_token,
            env,
        })
    }

    /// The template in GGUF metadata `tokenizer.chat_template`, if any. BOS/EOS strings come from
    /// `tokenizer.ggml.{bos,eos}_token_id` looked up in `tokenizer.ggml.tokens`.
    pub fn from_gguf(content: &gguf_file::Content, path: &Path) -> Result<Option<Self>> {
        let Some(value) = content.metadata.get("tokenizer.chat_template") else {
            return Ok(None);
        };
        let source = value
            .to_string()
            .map_err(|e| {
                EngineError::ChatTemplate(format!(
                    "{}: tokenizer.chat_template is not a string: {e}",
                    path.display()
                ))
            })?
            .clone();
        let token_text = |key: &str| -> Option<String> {
            let id = content.metadata.get(key)?.to_u32().ok()?;
            let tokens = content
                .metadata
                .get("tokenizer.ggml.tokens")?
                .to_vec()
                .ok()?;
            tokens.get(id as usize)?.to_string().ok().cloned()
        };
        let bos = token_text("tokenizer.ggml.bos_token_id");
        let eos = token_text("tokenizer.ggml.eos_token_id");
        Self::new(source, bos, eos)
            .and_then(Self::checked)
            .map(Some)
            .map_err(|e| EngineError::ChatTemplate(format!("{}: {e}", path.display())))
    }

    /// The template of a Hugging Face folder: `chat_template.jinja` if present, else `chat_template` in
    /// tokenizer_config.json (a string, or a list of named templates of which `default` is used).
    /// `bos_token` / `eos_token` come from tokenizer_config.json (plain strings or `{"content": ...}`).
    pub fn from_tokenizer_config(dir: &Path) -> Result<Option<Self>> {
        let config_path = dir.join("tokenizer_config.json");
        let config: serde_json::Value = match read_text(&config_path, MAX_CONFIG_BYTES) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| {
                EngineError::ChatTemplate(format!("{}: invalid JSON: {e}", config_path.display()))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => serde_json::Value::Null,
            Err(source) => {
                return Err(EngineError::Io {
                    path: config_path,
                    source,
                })
            }
        };
        let jinja_path = dir.join("chat_template.jinja");
        let (source, origin) = match read_text(&jinja_path, MAX_CONFIG_BYTES) {
            Ok(text) => (Some(text), jinja_path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                (template_from_config(&config), config_path)
            }
            Err(source) => {
                return Err(EngineError::Io {
                    path: jinja_path,
                    source,
                })
            }
        };
        let Some(source) = source else {
            return Ok(None);
        };
        let special = |key: &str| -> Option<String> {
            match config.get(key)? {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Object(o) => o.get("content")?.as_str().map(str::to_string),
                _ => None,
            }
        };
        Self::new(source, special("bos_token"), special("eos_token"))
            .and_then(Self::checked)
            .map(Some)
            .map_err(|e| EngineError::ChatTemplate(format!("{}: {e}", origin.display())))
    }

    /// A template from a model file is rendered once at load, as scot will render it (a user turn
    /// with and without the generation prompt, a user + assistant turn), so one that fails, loops or
    /// drops the user's text fails the load instead of the first request.
    fn checked(self) -> Result<Self> {
        let user = ChatMessage::new("user", SAMPLE_USER_TEXT);
        let assistant = ChatMessage::new("assistant", "Sample answer.");
        for (messages, generation) in [
            (vec![user.clone()], true),
            (vec![user.clone(), assistant], false),
        ] {
            let out = self
                .render(&messages, generation)
                .map_err(|e| EngineError::ChatTemplate(format!("test render at load: {e}")))?;
            if !out.contains(SAMPLE_USER_TEXT) {
                return Err(EngineError::ChatTemplate(
                    "test render at load: the output does not contain the user's message".into(),
                ));
            }
        }
        Ok(self)
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn bos_token(&self) -> Option<&str> {
        self.bos_token.as_deref()
    }

    pub fn eos_token(&self) -> Option<&str> {
        self.eos_token.as_deref()
    }

    /// Renders the conversation; with `add_generation_prompt` the text ends with the assistant turn's
    /// opening (e.g. `<|im_start|>assistant\n`). Errors raised by the template (`raise_exception`,
    /// unsupported roles) come back as `EngineError::ChatTemplate`, and so does a render that runs
    /// out of fuel ([`FUEL`]) or writes more than its messages plus 1 MiB.
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        let template = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(|e| EngineError::ChatTemplate(describe(&e)))?;
        let content_bytes: usize = messages
            .iter()
            .map(|m| m.content.len() + m.role.len())
            .sum();
        let mut out = CappedOutput {
            bytes: Vec::new(),
            limit: content_bytes
                .saturating_mul(2)
                .saturating_add(OUTPUT_ALLOWANCE),
            overflowed: false,
        };
        let rendered = template.render_captured_to(
            context! {
                messages => messages,
                add_generation_prompt => add_generation_prompt,
                bos_token => self.bos_token.as_deref().unwrap_or(""),
                eos_token => self.eos_token.as_deref().unwrap_or(""),
            },
            &mut out,
        );
        if let Err(e) = rendered {
            let reason = if out.overflowed {
                format!("the output is longer than {} bytes", out.limit)
            } else {
                describe(&e)
            };
            return Err(EngineError::ChatTemplate(format!(
                "rendering failed: {reason}"
            )));
        }
        String::from_utf8(out.bytes)
            .map_err(|_| EngineError::ChatTemplate("rendering produced invalid UTF-8".into()))
    }
}

/// A render's output, refusing to grow past `limit` bytes.
struct CappedOutput {
    bytes: Vec<u8>,
    limit: usize,
    overflowed: bool,
}

impl std::io::Write for CappedOutput {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len() + buf.len() > self.limit {
            self.overflowed = true;
            return Err(std::io::Error::other("chat template output limit"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn template_from_config(config: &serde_json::Value) -> Option<String> {
    match config.get("chat_template")? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Array(list) => list
            .iter()
            .find(|t| t.get("name").and_then(|n| n.as_str()) == Some("default"))
            .or_else(|| list.first())
            .and_then(|t| t.get("template"))
            .and_then(|t| t.as_str())
            .map(str::to_string),
        _ => None,
    }
}

/// The error with its chain of causes and the template line, on one line.
fn describe(err: &JinjaError) -> String {
    let mut out = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        let _ = write!(out, ": {cause}");
        source = cause.source();
    }
    out
}

/// Python's `range`, refusing more than [`MAX_SEQUENCE`] elements.
fn bounded_range(
    lower: isize,
    upper: Option<isize>,
    step: Option<isize>,
) -> std::result::Result<Value, JinjaError> {
    let (start, end) = match upper {
        Some(upper) => (lower as i128, upper as i128),
        None => (0, lower as i128),
    };
    let step_by = step.unwrap_or(1) as i128;
    let count = match step_by {
        0 => 0,
        s if s > 0 => ((end - start).max(0) + s - 1) / s,
        s => ((start - end).max(0) + (-s) - 1) / (-s),
    };
    if count > MAX_SEQUENCE as i128 {
        return Err(JinjaError::new(
            ErrorKind::InvalidOperation,
            format!("range of {count} elements: at most {MAX_SEQUENCE} in a chat template"),
        ));
    }
    minijinja::functions::range(lower, upper, step)
}

/// The `list` filter, refusing more than [`MAX_SEQUENCE`] elements.
fn bounded_list(value: Value) -> std::result::Result<Value, JinjaError> {
    let items: Vec<Value> = value
        .try_iter()
        .map_err(|e| {
            JinjaError::new(ErrorKind::InvalidOperation, "cannot convert value to list")
                .with_source(e)
        })?
        .take(MAX_SEQUENCE + 1)
        .collect();
    if items.len() > MAX_SEQUENCE {
        return Err(JinjaError::new(
            ErrorKind::InvalidOperation,
            format!("a list of more than {MAX_SEQUENCE} elements in a chat template"),
        ));
    }
    Ok(Value::from(items))
}

fn raise_exception(message: String) -> std::result::Result<Value, JinjaError> {
    Err(JinjaError::new(ErrorKind::InvalidOperation, message))
}

/// `strftime_now(format)`: the current UTC time formatted with a subset of strftime
/// (%Y %m %d %e %b %B %a %A %H %M %S %y %j %p %I %%), enough for the date lines of Llama-style templates.
fn strftime_now(format: String) -> std::result::Result<String, JinjaError> {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    strftime_utc(&format, secs)
}

fn strftime_utc(format: &str, unix_secs: u64) -> std::result::Result<String, JinjaError> {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    const DAYS: [&str; 7] = [
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
    ];
    let days = (unix_secs / 86_400) as i64;
    let secs_of_day = unix_secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    let (hour, minute, second) = (secs_of_day / 3600, secs_of_day / 60 % 60, secs_of_day % 60);
    // 1970-01-01 was a Thursday (index 3 from Monday).
    let weekday = (days + 3).rem_euclid(7) as usize;
    let day_of_year = days - days_from_civil(year, 1, 1) + 1;
    let month_name = MONTHS[(month - 1) as usize];
    let day_name = DAYS[weekday];
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let _ = match chars.next() {
            Some('Y') => write!(out, "{year}"),
            Some('y') => write!(out, "{:02}", year.rem_euclid(100)),
            Some('m') => write!(out, "{month:02}"),
            Some('d') => write!(out, "{day:02}"),
            Some('e') => write!(out, "{day:>2}"),
            Some('-') if chars.clone().next() == Some('d') => {
                chars.next();
                write!(out, "{day}")
            }
            Some('b') => write!(out, "{}", &month_name[..3]),
            Some('B') => write!(out, "{month_name}"),
            Some('a') => write!(out, "{}", &day_name[..3]),
            Some('A') => write!(out, "{day_name}"),
            Some('H') => write!(out, "{hour:02}"),
            Some('I') => write!(out, "{:02}", (hour + 11) % 12 + 1),
            Some('p') => write!(out, "{}", if hour < 12 { "AM" } else { "PM" }),
            Some('M') => write!(out, "{minute:02}"),
            Some('S') => write!(out, "{second:02}"),
            Some('j') => write!(out, "{day_of_year:03}"),
            Some('%') => write!(out, "%"),
            Some(other) => {
                return Err(JinjaError::new(
                    ErrorKind::InvalidOperation,
                    format!("strftime_now: unsupported directive %{other}"),
                ))
            }
            None => write!(out, "%"),
        };
    }
    Ok(out)
}

/// Howard Hinnant's days-since-epoch -> (year, month, day), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `tojson` as transformers defines it: `json.dumps(x, ensure_ascii=False, indent=indent,
/// sort_keys=sort_keys)`, i.e. `", "` / `": "` separators, no HTML escaping, keys in insertion order.
fn tojson(value: Value, kwargs: Kwargs) -> std::result::Result<Value, JinjaError> {
    let indent: Option<usize> = kwargs.get("indent")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    kwargs.assert_all_used()?;
    let mut out = String::new();
    write_json(
        &mut out,
        &value,
        indent,
        sort_keys.unwrap_or(false),
        0,
        &mut 0,
    )?;
    Ok(Value::from_safe_string(out))
}

fn write_json(
    out: &mut String,
    value: &Value,
    indent: Option<usize>,
    sort_keys: bool,
    depth: usize,
    budget: &mut usize,
) -> std::result::Result<(), JinjaError> {
    // Guards against self-referencing values.
    *budget += 1;
    if depth > 128 || *budget > 1_000_000 {
        return Err(JinjaError::new(
            ErrorKind::InvalidOperation,
            "tojson: value too deep or too large",
        ));
    }
    let newline = |out: &mut String, level: usize| {
        if let Some(n) = indent {
            out.push('\n');
            out.push_str(&" ".repeat(n * level));
        }
    };
    let item_sep = if indent.is_some() { "," } else { ", " };
    match value.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
        ValueKind::Number => {
            if let Some(i) = value.as_i64() {
                let _ = write!(out, "{i}");
            } else {
                let f = f64::try_from(value.clone()).unwrap_or(f64::NAN);
                if f.is_finite() {
                    let _ = write!(out, "{f:?}");
                } else if f.is_nan() {
                    out.push_str("NaN");
                } else if f > 0.0 {
                    out.push_str("Infinity");
                } else {
                    out.push_str("-Infinity");
                }
            }
        }
        ValueKind::String => {
            let s = value.as_str().unwrap_or_default();
            out.push_str(&serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into()));
        }
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = value.try_iter()?.collect();
            if items.is_empty() {
                out.push_str("[]");
                return Ok(());
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(out, depth + 1);
                write_json(out, item, indent, sort_keys, depth + 1, budget)?;
            }
            newline(out, depth);
            out.push(']');
        }
        ValueKind::Map => {
            let mut keys: Vec<Value> = value.try_iter()?.collect();
            if sort_keys {
                keys.sort();
            }
            if keys.is_empty() {
                out.push_str("{}");
                return Ok(());
            }
            out.push('{');
            for (i, key) in keys.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(out, depth + 1);
                let key_text = match key.as_str() {
                    Some(s) => s.to_string(),
                    None => key.to_string(),
                };
                out.push_str(&serde_json::to_string(&key_text).unwrap_or_else(|_| "\"\"".into()));
                out.push_str(": ");
                let item = value.get_item(key)?;
                write_json(out, &item, indent, sort_keys, depth + 1, budget)?;
            }
            newline(out, depth);
            out.push('}');
        }
        _ => {
            out.push_str(&serde_json::to_string(&value.to_string()).unwrap_or_default());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strftime_formats_known_dates() {
        // 2024-02-29 13:05:09 UTC, a Thursday.
        let t = 1_709_211_909;
        assert_eq!(
            strftime_utc("%d %b %Y %H:%M:%S %A %j", t).unwrap(),
            "29 Feb 2024 13:05:09 Thursday 060"
        );
        assert_eq!(strftime_utc("%B %-d, %y", 0).unwrap(), "January 1, 70");
        assert!(strftime_utc("%Q", 0).is_err());
    }

    #[test]
    fn ranges_and_lists_are_bounded() {
        let render = |source: &str| {
            ChatTemplate::new(source.into(), None, None)
                .unwrap()
                .render(&[ChatMessage::new("user", "hi")], false)
        };
        assert_eq!(render("{{ range(3) | list }}").unwrap(), "[0, 1, 2]");
        assert_eq!(
            render("{{ range(10, 0, -4) | list }}").unwrap(),
            "[10, 6, 2]"
        );
        assert_eq!(
            render("{{ range(10000) | list | length }}").unwrap(),
            "10000"
        );
        for source in [
            "{{ range(10001) | list | length }}",
            "{{ range(-100000, 100000, 7) | length }}",
            "{{ ('x' * 20000) | list | length }}",
            // Within fuel, each step is small: this loop runs out instead of running for minutes.
            "{% for a in range(10000) %}{% for b in range(10000) %}{{ range(10000) | list | length }}{% endfor %}{% endfor %}",
        ] {
            assert!(render(source).is_err(), "{source}");
        }
    }

    #[test]
    fn tojson_matches_python_json_dumps() {
        let t = ChatTemplate::new(
            r#"{{ {"name": "f", "arguments": {"b": [1, 2.5, true, none], "a": "<é>"}} | tojson }}|{{ {"x": [1]} | tojson(indent=2) }}"#
                .into(),
            None,
            None,
        )
        .unwrap();
        assert_eq!(
            t.render(&[], false).unwrap(),
            "{\"name\": \"f\", \"arguments\": {\"b\": [1, 2.5, true, null], \"a\": \"<é>\"}}|{\n  \"x\": [\n    1\n  ]\n}"
        );
    }
}
