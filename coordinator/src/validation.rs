//! Checks a SolveRequest and resolves every knob against the server defaults. Each error names the
//! field that is wrong (typed, so each door words it in its own names) and what would be accepted.

use scot_proto::limits::{MAX_DRAFTS, MAX_MARKER_BYTES};
use scot_proto::{SolveMode, SolveOptions, SolveRequest};
use scot_selection::{InvalidPolicy, PolicyParams, SelectionPolicy};

use crate::config::SolveDefaults;

/// Largest token cap accepted for any phase.
pub const MAX_TOKEN_CAP: u32 = 1 << 20;
/// Largest problem accepted before tokenizing (the nodes check it against the model's context).
pub const MAX_PROBLEM_BYTES: usize = 1 << 20;
const MAX_TEMPERATURE: f32 = 100.0;
const MAX_TEMPLATE_NAME: usize = 64;

/// A request's knobs, all resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct SolveSettings {
    /// Never `Unspecified` (that is SCoT).
    pub mode: SolveMode,
    pub n: u32,
    pub draft_temperature: f32,
    pub draft_top_p: f32,
    pub draft_top_k: u32,
    pub draft_max_tokens: u32,
    pub thinking_max_tokens: u32,
    pub answer_max_tokens: u32,
    pub seed: u64,
    /// How the decision is made (policy, min_votes, accept_threshold), resolved for n.
    pub selection: PolicyParams,
    /// Cyclic orders the target scores (1 = the paper's single prefill).
    pub select_permutations: u32,
    /// Stats carry each draft's text.
    pub include_draft_texts: bool,
    pub select_after_k: Option<u32>,
    pub straggler_ratio: Option<f32>,
    pub drop_capped_drafts: bool,
    pub template: String,
    pub think_end: String,
}

/// The request field a refusal is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Problem,
    RequestId,
    Mode,
    N,
    DraftTemperature,
    DraftTopP,
    DraftMaxTokens,
    ThinkingMaxTokens,
    AnswerMaxTokens,
    SelectionPolicy,
    MinVotes,
    AcceptThreshold,
    SelectPermutations,
    SelectAfterK,
    StragglerRatio,
    Template,
    ThinkEnd,
}

impl Field {
    /// The name in `SolveRequest` (`options.` fields by their SolveOptions name).
    pub fn name(self) -> String {
        match (self, self.option_name()) {
            (_, Some(option)) => format!("options.{option}"),
            (Field::Problem, None) => "problem".to_string(),
            (_, None) => "request_id".to_string(),
        }
    }

    /// The SolveOptions field, for the fields that are options.
    pub fn option_name(self) -> Option<&'static str> {
        Some(match self {
            Field::Problem | Field::RequestId => return None,
            Field::Mode => "mode",
            Field::N => "n",
            Field::DraftTemperature => "draft_temperature",
            Field::DraftTopP => "draft_top_p",
            Field::DraftMaxTokens => "draft_max_tokens",
            Field::ThinkingMaxTokens => "thinking_max_tokens",
            Field::AnswerMaxTokens => "answer_max_tokens",
            Field::SelectionPolicy => "selection_policy",
            Field::MinVotes => "min_votes",
            Field::AcceptThreshold => "accept_threshold",
            Field::SelectPermutations => "select_permutations",
            Field::SelectAfterK => "select_after_k",
            Field::StragglerRatio => "straggler_ratio",
            Field::Template => "template",
            Field::ThinkEnd => "think_end",
        })
    }
}

/// A refused request: which field, and the rest of the message after the field's name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{detail}", field.name())]
pub struct InvalidRequest {
    pub field: Field,
    detail: String,
}

impl InvalidRequest {
    /// `detail` continues the field's name, as in " = 0: must be at least 1".
    pub fn new(field: Field, detail: impl Into<String>) -> Self {
        Self {
            field,
            detail: detail.into(),
        }
    }

    /// The message with the field called `name` (each door names fields its own way).
    pub fn message_naming(&self, name: &str) -> String {
        format!("{name}{}", self.detail)
    }
}

/// Validates the problem and resolves the options. Returns the problem as sent (not trimmed).
pub fn validate_request(
    request: &SolveRequest,
    defaults: &SolveDefaults,
) -> Result<SolveSettings, InvalidRequest> {
    if request.problem.trim().is_empty() {
        return Err(InvalidRequest::new(
            Field::Problem,
            " is empty: send the question to solve in `problem`",
        ));
    }
    if request.problem.len() > MAX_PROBLEM_BYTES {
        return Err(InvalidRequest::new(
            Field::Problem,
            format!(
                " is {} bytes, more than the {MAX_PROBLEM_BYTES}-byte limit: shorten it",
                request.problem.len()
            ),
        ));
    }
    let options = request.options.clone().unwrap_or_default();
    resolve_options(&options, defaults)
}

/// Resolves `SolveOptions` against the defaults (also used to check the defaults at start-up).
pub fn resolve_options(
    options: &SolveOptions,
    defaults: &SolveDefaults,
) -> Result<SolveSettings, InvalidRequest> {
    let mode = match SolveMode::try_from(options.mode) {
        Ok(SolveMode::Unspecified) => SolveMode::Scot,
        Ok(mode) => mode,
        Err(_) => {
            return Err(InvalidRequest::new(
                Field::Mode,
                format!(
                    " = {} is not a SolveMode: use SCOT (1), TARGET_ONLY (2) or DRAFT_ONLY (3)",
                    options.mode
                ),
            ))
        }
    };
    let n = options.n.unwrap_or(defaults.n);
    ensure((1..=MAX_DRAFTS).contains(&n), Field::N, || {
        format!(" = {n}: the number of drafts must be between 1 and {MAX_DRAFTS}")
    })?;
    let sampling = resolve_sampling(options, defaults)?;
    let select_permutations = options
        .select_permutations
        .unwrap_or(defaults.select_permutations);
    ensure(
        (1..=n).contains(&select_permutations),
        Field::SelectPermutations,
        || format!(" = {select_permutations}: must be between 1 (the order given) and n = {n}"),
    )?;
    let (select_after_k, straggler_ratio) = resolve_stragglers(options, defaults, n)?;
    let (template, think_end) = resolve_template(options, defaults)?;
    Ok(SolveSettings {
        mode,
        n,
        draft_temperature: sampling.temperature,
        draft_top_p: sampling.top_p,
        draft_top_k: options.draft_top_k.unwrap_or(defaults.draft_top_k),
        draft_max_tokens: token_cap(
            Field::DraftMaxTokens,
            options
                .draft_max_tokens
                .unwrap_or(defaults.draft_max_tokens),
        )?,
        thinking_max_tokens: token_cap(
            Field::ThinkingMaxTokens,
            options
                .thinking_max_tokens
                .unwrap_or(defaults.thinking_max_tokens),
        )?,
        answer_max_tokens: token_cap(
            Field::AnswerMaxTokens,
            options
                .answer_max_tokens
                .unwrap_or(defaults.answer_max_tokens),
        )?,
        seed: options.seed.unwrap_or(defaults.seed),
        selection: resolve_selection(options, defaults, n)?,
        select_permutations,
        include_draft_texts: options.include_draft_texts,
        select_after_k,
        straggler_ratio,
        drop_capped_drafts: options.drop_capped_drafts || defaults.drop_capped_drafts,
        template,
        think_end,
    })
}

/// `Ok` when `ok`, else the refusal of `field` with `detail`.
fn ensure(ok: bool, field: Field, detail: impl FnOnce() -> String) -> Result<(), InvalidRequest> {
    if ok {
        Ok(())
    } else {
        Err(InvalidRequest::new(field, detail()))
    }
}

fn token_cap(field: Field, value: u32) -> Result<u32, InvalidRequest> {
    ensure((1..=MAX_TOKEN_CAP).contains(&value), field, || {
        format!(" = {value}: a token cap must be between 1 and {MAX_TOKEN_CAP}")
    })?;
    Ok(value)
}

struct Sampling {
    temperature: f32,
    top_p: f32,
}

/// The drafts' temperature and top-p.
fn resolve_sampling(
    options: &SolveOptions,
    defaults: &SolveDefaults,
) -> Result<Sampling, InvalidRequest> {
    let temperature = options
        .draft_temperature
        .unwrap_or(defaults.draft_temperature);
    ensure(
        temperature.is_finite() && (0.0..=MAX_TEMPERATURE).contains(&temperature),
        Field::DraftTemperature,
        || format!(" = {temperature}: must be a number from 0 (greedy) to {MAX_TEMPERATURE}"),
    )?;
    let top_p = options.draft_top_p.unwrap_or(defaults.draft_top_p);
    ensure(
        top_p.is_finite() && top_p > 0.0 && top_p <= 1.0,
        Field::DraftTopP,
        || format!(" = {top_p}: must be in (0, 1] (1 = off)"),
    )?;
    Ok(Sampling { temperature, top_p })
}

/// The straggler switches (select after k drafts, the straggler ratio); unset is off.
fn resolve_stragglers(
    options: &SolveOptions,
    defaults: &SolveDefaults,
    n: u32,
) -> Result<(Option<u32>, Option<f32>), InvalidRequest> {
    let select_after_k = options.select_after_k.or(defaults.select_after_k);
    if let Some(k) = select_after_k {
        ensure((1..=n).contains(&k), Field::SelectAfterK, || {
            format!(" = {k}: must be between 1 and n = {n} (unset = wait for all drafts)")
        })?;
    }
    let straggler_ratio = options.straggler_ratio.or(defaults.straggler_ratio);
    if let Some(ratio) = straggler_ratio {
        ensure(
            ratio.is_finite() && ratio >= 1.0,
            Field::StragglerRatio,
            || format!(" = {ratio}: must be a number >= 1 (unset = off)"),
        )?;
    }
    Ok((select_after_k, straggler_ratio))
}

/// The template set's name and the end-of-thinking marker.
fn resolve_template(
    options: &SolveOptions,
    defaults: &SolveDefaults,
) -> Result<(String, String), InvalidRequest> {
    let template = if options.template.is_empty() {
        defaults.template.clone()
    } else {
        options.template.clone()
    };
    check_template_name(&template)?;
    let think_end = options
        .think_end
        .clone()
        .unwrap_or_else(|| defaults.think_end.clone());
    ensure(
        !think_end.trim().is_empty() && think_end.len() <= MAX_MARKER_BYTES,
        Field::ThinkEnd,
        || {
            format!(" = {think_end:?}: the end-of-thinking marker must be non-blank and at most {MAX_MARKER_BYTES} bytes")
        },
    )?;
    Ok((template, think_end))
}

/// The selection policy and its knobs: the request's, else the server's defaults, else the policy's.
fn resolve_selection(
    options: &SolveOptions,
    defaults: &SolveDefaults,
    n: u32,
) -> Result<PolicyParams, InvalidRequest> {
    let policy = if options.selection_policy.trim().is_empty() {
        defaults.selection_policy
    } else {
        options
            .selection_policy
            .parse::<SelectionPolicy>()
            .map_err(policy_refusal)?
    };
    // A server-wide min_votes is a default: capped at a request's n rather than refusing it.
    let min_votes = options.min_votes.or(defaults.min_votes.map(|v| v.min(n)));
    PolicyParams::resolve(
        policy,
        n,
        min_votes,
        options.accept_threshold.or(defaults.accept_threshold),
    )
    .map_err(policy_refusal)
}

/// The selection crate's errors name their knob first ("min_votes = 5: ..."); an unknown policy does not.
fn policy_refusal(error: InvalidPolicy) -> InvalidRequest {
    let field = match error {
        InvalidPolicy::Unknown(_) => {
            return InvalidRequest::new(Field::SelectionPolicy, format!(" = {error}"))
        }
        InvalidPolicy::MinVotes { .. } => Field::MinVotes,
        InvalidPolicy::Threshold(_) => Field::AcceptThreshold,
    };
    let message = error.to_string();
    let knob = field.option_name().unwrap_or_default();
    let detail = message.strip_prefix(knob).unwrap_or(&message).to_string();
    InvalidRequest::new(field, detail)
}

/// Template set names are folder names: letters, digits, `-`, `_`, `.`; not starting with `.`.
/// Whether the set exists is for the nodes to say (they hold the templates).
fn check_template_name(name: &str) -> Result<(), InvalidRequest> {
    if name.is_empty() {
        return Ok(());
    }
    let well_formed = name.len() <= MAX_TEMPLATE_NAME
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if well_formed {
        Ok(())
    } else {
        Err(InvalidRequest::new(
            Field::Template,
            format!(" = {name:?}: unknown template set (names use letters, digits, '-', '_', '.')"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scot_proto::SolveOptions;

    fn request(problem: &str, options: SolveOptions) -> SolveRequest {
        SolveRequest {
            request_id: String::new(),
            problem: problem.to_string(),
            options: Some(options),
        }
    }

    fn check(options: SolveOptions) -> Result<SolveSettings, InvalidRequest> {
        validate_request(&request("What is 2+2?", options), &SolveDefaults::default())
    }

    #[test]
    fn empty_options_give_the_papers_defaults() {
        let s = check(SolveOptions::default()).unwrap();
        assert_eq!(s.mode, SolveMode::Scot);
        assert_eq!(s.n, 5);
        assert_eq!(s.draft_temperature, 0.6);
        assert_eq!(s.draft_max_tokens, 5000);
        assert_eq!(s.think_end, "</think>");
        assert_eq!(s.selection.policy, SelectionPolicy::Hybrid);
        assert_eq!(s.selection.min_votes, 4, "three quarters of 5");
        assert_eq!(s.select_permutations, 1);
        assert!(!s.include_draft_texts);
        assert_eq!(s.select_after_k, None);
        assert!(!s.drop_capped_drafts);
    }

    #[test]
    fn request_values_override_defaults() {
        let s = check(SolveOptions {
            n: Some(3),
            draft_temperature: Some(0.0),
            accept_threshold: Some(1.0),
            select_after_k: Some(2),
            straggler_ratio: Some(1.5),
            template: "short".into(),
            mode: SolveMode::TargetOnly as i32,
            ..Default::default()
        })
        .unwrap();
        assert_eq!((s.n, s.draft_temperature), (3, 0.0));
        assert_eq!(s.selection.accept_threshold, Some(1.0));
        assert_eq!(s.select_after_k, Some(2));
        assert_eq!(s.template, "short");
        assert_eq!(s.mode, SolveMode::TargetOnly);
    }

    #[test]
    fn bad_inputs_name_the_field() {
        let problem_err = validate_request(
            &request("  \n", SolveOptions::default()),
            &SolveDefaults::default(),
        )
        .unwrap_err();
        assert_eq!(problem_err.field, Field::Problem);
        assert!(problem_err.to_string().contains("problem is empty"));
        let cases: Vec<(SolveOptions, &str)> = vec![
            (
                SolveOptions {
                    n: Some(0),
                    ..Default::default()
                },
                "options.n",
            ),
            (
                SolveOptions {
                    n: Some(65),
                    ..Default::default()
                },
                "options.n",
            ),
            (
                SolveOptions {
                    draft_temperature: Some(-0.1),
                    ..Default::default()
                },
                "draft_temperature",
            ),
            (
                SolveOptions {
                    draft_temperature: Some(f32::NAN),
                    ..Default::default()
                },
                "draft_temperature",
            ),
            (
                SolveOptions {
                    draft_top_p: Some(0.0),
                    ..Default::default()
                },
                "draft_top_p",
            ),
            (
                SolveOptions {
                    draft_max_tokens: Some(0),
                    ..Default::default()
                },
                "draft_max_tokens",
            ),
            (
                SolveOptions {
                    answer_max_tokens: Some(0),
                    ..Default::default()
                },
                "answer_max_tokens",
            ),
            (
                SolveOptions {
                    thinking_max_tokens: Some(0),
                    ..Default::default()
                },
                "thinking_max_tokens",
            ),
            (
                SolveOptions {
                    accept_threshold: Some(1.5),
                    ..Default::default()
                },
                "accept_threshold",
            ),
            (
                SolveOptions {
                    select_after_k: Some(6),
                    ..Default::default()
                },
                "select_after_k",
            ),
            (
                SolveOptions {
                    straggler_ratio: Some(0.5),
                    ..Default::default()
                },
                "straggler_ratio",
            ),
            (
                SolveOptions {
                    template: "../etc".into(),
                    ..Default::default()
                },
                "template",
            ),
            (
                SolveOptions {
                    think_end: Some(" ".into()),
                    ..Default::default()
                },
                "think_end",
            ),
            (
                SolveOptions {
                    mode: 42,
                    ..Default::default()
                },
                "options.mode",
            ),
        ];
        for (options, field) in cases {
            let err = check(options).unwrap_err();
            assert!(err.to_string().contains(field), "{err} should name {field}");
            assert!(field.ends_with(err.field.option_name().unwrap()), "{err:?}");
        }
    }

    #[test]
    fn oversized_problem_is_rejected() {
        let big = "x".repeat(MAX_PROBLEM_BYTES + 1);
        let err = validate_request(
            &request(&big, SolveOptions::default()),
            &SolveDefaults::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("shorten"));
    }
}
