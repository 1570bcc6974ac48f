//! The per-problem result file: one JSON line per attempt, appended as problems finish, so a rerun
//! can skip the ids already done (failed attempts are retried).

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use scot_client::Mode;
use scot_proto::{AnswerPath, FinishReason};
use serde::{Deserialize, Serialize};

use crate::error::EvalError;

/// One draft of a SCoT run, as reported by the coordinator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct DraftRecord {
    pub index: u32,
    pub tokens: u32,
    pub finish: String,
    pub elapsed_ms: f64,
    pub offered: bool,
    #[serde(default)]
    pub node: String,
    /// The answer the draft votes with (`scot_selection::draft_answer`); None when it states none.
    #[serde(default)]
    pub answer: Option<String>,
    /// The draft's text (kept so `scot report --replay` can re-decide offline).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub text: String,
}

impl DraftRecord {
    /// Whether the draft ended for `reason` (`finish` holds [`FinishReason::label`]).
    pub fn finished_by(&self, reason: FinishReason) -> bool {
        self.finish == reason.label()
    }

    /// Whether the draft ended on its own, not at its cap ([`FinishReason::ended_on_its_own`]).
    pub fn ended_on_its_own(&self) -> bool {
        FinishReason::from_label(&self.finish).is_some_and(FinishReason::ended_on_its_own)
    }
}

/// One line of the result file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ResultLine {
    pub id: String,
    pub dataset: String,
    /// The problem as sent (kept for calibration and offline replay).
    #[serde(default)]
    pub problem: String,
    /// [`Mode::name`]: `scot`, `target-only` or `draft-only`.
    pub mode: String,
    pub gold: String,
    /// The extracted final answer (None when nothing could be extracted or the request failed).
    pub prediction: Option<String>,
    pub correct: bool,
    /// The final answer text the model wrote.
    #[serde(default)]
    pub answer_text: String,
    /// Which path produced the answer ([`AnswerPath::label`]): draft_accepted, target_correction,
    /// target_fallback, target_only, draft_only.
    #[serde(default)]
    pub path: String,
    #[serde(default)]
    pub fallback_reason: String,
    /// Request failure (transport, deadline, server error); such lines are retried on a rerun.
    pub error: Option<String>,
    // Per-phase times (milliseconds, as measured by the coordinator).
    pub total_ms: f64,
    pub draft_ms: f64,
    pub select_ms: f64,
    pub answer_ms: f64,
    /// The target's own thinking (correction, fallback, target-only); `correction_ms` in older files.
    #[serde(alias = "correction_ms")]
    pub target_thinking_ms: f64,
    /// Wall time seen by this client, request sent to final message.
    pub client_ms: f64,
    // Token counts.
    pub draft_tokens: u64,
    pub target_tokens: u64,
    pub prompt_tokens: u32,
    #[serde(default)]
    pub target_prompt_tokens: u32,
    #[serde(default)]
    pub target_thinking_tokens: u32,
    #[serde(default)]
    pub answer_tokens: u32,
    /// Selection's decision: 1..n continues an offered draft, n+1 = none, 0 = no selection ran.
    pub chosen: u32,
    /// The target's probabilities per option (offered drafts, then "all wrong"); empty when the
    /// target was not asked.
    pub option_probs: Vec<f32>,
    /// Raw log-probabilities of the option tokens.
    #[serde(default)]
    pub option_logprobs: Vec<f32>,
    /// `option_probs` with the target's position prior divided out (empty without a prior).
    #[serde(default)]
    pub debiased_probs: Vec<f32>,
    #[serde(default)]
    pub selection_policy: String,
    /// Offered drafts holding the most common answer.
    #[serde(default)]
    pub votes: u32,
    /// How the accepted draft was chosen: target or votes.
    #[serde(default)]
    pub accept_basis: String,
    /// Whether the target's selection prefill ran.
    #[serde(default)]
    pub target_scored: bool,
    /// Index of the accepted draft.
    #[serde(default)]
    pub chosen_draft: Option<u32>,
    pub drafts: Vec<DraftRecord>,
    #[serde(default)]
    pub draft_model: String,
    #[serde(default)]
    pub target_model: String,
    pub seed: u64,
}

impl ResultLine {
    /// Chain-of-thought latency, the paper's t: everything except writing the final answer.
    pub fn cot_ms(&self) -> f64 {
        (self.total_ms - self.answer_ms).max(0.0)
    }

    pub fn succeeded(&self) -> bool {
        self.error.is_none()
    }

    /// Whether `mode` answered this line.
    pub fn is_mode(&self, mode: Mode) -> bool {
        self.mode == mode.name()
    }

    /// Whether the answer came by `path`.
    pub fn took(&self, path: AnswerPath) -> bool {
        self.path == path.label()
    }

    /// Whether selection ran: a draft was accepted or the target thought again.
    pub fn selection_ran(&self) -> bool {
        self.took(AnswerPath::DraftAccepted) || self.took(AnswerPath::TargetCorrection)
    }

    /// Whether the target scored the drafts in a selection prefill (lines written before selection
    /// policies existed always did when selection ran).
    pub fn scored_by_target(&self) -> bool {
        self.target_scored || (self.selection_policy.is_empty() && self.selection_ran())
    }
}

/// Accepted drafts / problems where selection ran; None when it never ran.
pub fn acceptance_rate<'a>(lines: impl IntoIterator<Item = &'a ResultLine>) -> Option<f64> {
    let (selected, accepted) = lines
        .into_iter()
        .filter(|l| l.selection_ran())
        .fold((0usize, 0usize), |(n, a), l| {
            (n + 1, a + usize::from(l.took(AnswerPath::DraftAccepted)))
        });
    (selected > 0).then(|| accepted as f64 / selected as f64)
}

/// Ids already answered (without error) in `path`; an absent file means none.
pub fn completed_ids(path: &Path) -> Result<HashSet<String>, EvalError> {
    Ok(read_lines(path)?
        .into_iter()
        .filter(ResultLine::succeeded)
        .map(|l| l.id)
        .collect())
}

/// Every line of one result file (absent file: empty).
pub fn read_lines(path: &Path) -> Result<Vec<ResultLine>, EvalError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(EvalError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let mut lines = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        // A run killed mid-write can leave a torn last line: skip it rather than refuse to resume.
        match serde_json::from_str::<ResultLine>(line) {
            Ok(parsed) => lines.push(parsed),
            Err(e) if index + 1 == text.lines().count() => {
                tracing::warn!(path = %path.display(), "ignoring torn last line: {e}");
            }
            Err(e) => {
                return Err(EvalError::BadLine {
                    path: path.to_path_buf(),
                    line: index + 1,
                    message: e.to_string(),
                })
            }
        }
    }
    Ok(lines)
}

/// Appends lines to a result file, flushing each so a killed run loses at most the line in flight.
pub struct ResultWriter {
    path: PathBuf,
    file: std::fs::File,
}

impl ResultWriter {
    pub fn open(path: &Path) -> Result<Self, EvalError> {
        let write_err = |source| EvalError::Write {
            path: path.to_path_buf(),
            source,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(write_err)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(write_err)?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
        })
    }

    pub fn append(&mut self, line: &ResultLine) -> Result<(), EvalError> {
        let mut text = serde_json::to_string(line).map_err(|e| EvalError::Write {
            path: self.path.clone(),
            source: std::io::Error::other(e),
        })?;
        text.push('\n');
        self.file
            .write_all(text.as_bytes())
            .and_then(|()| self.file.flush())
            .map_err(|source| EvalError::Write {
                path: self.path.clone(),
                source,
            })
    }
}

/// Result files named on the command line: files as given, folders searched for `*.jsonl`.
pub fn collect_result_files(inputs: &[PathBuf]) -> Result<Vec<PathBuf>, EvalError> {
    let mut files = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let entries = std::fs::read_dir(input).map_err(|source| EvalError::Read {
                path: input.clone(),
                source,
            })?;
            let mut found: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
                .collect();
            found.sort();
            files.extend(found);
        } else {
            files.push(input.clone());
        }
    }
    Ok(files)
}

/// Result lines grouped by (data set, mode name).
pub type ModeGroups = BTreeMap<(String, String), Vec<ResultLine>>;

/// One data set's lines of one mode.
pub fn mode_group<'a>(
    groups: &'a ModeGroups,
    dataset: &str,
    mode: Mode,
) -> Option<&'a [ResultLine]> {
    groups
        .get(&(dataset.to_string(), mode.name().to_string()))
        .map(Vec::as_slice)
}

/// The latest successful line per (dataset, mode, id), grouped by (dataset, mode).
pub fn latest_successful(lines: Vec<ResultLine>) -> ModeGroups {
    let mut latest: BTreeMap<(String, String, String), ResultLine> = BTreeMap::new();
    for line in lines.into_iter().filter(ResultLine::succeeded) {
        latest.insert(
            (line.dataset.clone(), line.mode.clone(), line.id.clone()),
            line,
        );
    }
    let mut groups = ModeGroups::new();
    for ((dataset, mode, _), line) in latest {
        groups.entry((dataset, mode)).or_default().push(line);
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(id: &str, error: Option<&str>) -> ResultLine {
        ResultLine {
            id: id.into(),
            dataset: "gsm8k".into(),
            mode: "scot".into(),
            error: error.map(str::to_string),
            total_ms: 10.0,
            answer_ms: 4.0,
            ..Default::default()
        }
    }

    #[test]
    fn append_then_resume_skips_only_successes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/out.jsonl");
        assert!(completed_ids(&path).unwrap().is_empty());
        let mut w = ResultWriter::open(&path).unwrap();
        w.append(&line("a", None)).unwrap();
        w.append(&line("b", Some("deadline exceeded"))).unwrap();
        drop(w);
        // A torn last line from a killed run is tolerated.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"id\":\"c\",\"datas")
            .unwrap();
        let done = completed_ids(&path).unwrap();
        assert!(done.contains("a") && !done.contains("b") && !done.contains("c"));
        let lines = read_lines(&path).unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].cot_ms(), 6.0);
    }

    #[test]
    fn latest_success_wins() {
        let mut retried = line("b", None);
        retried.correct = true;
        let groups = latest_successful(vec![line("a", None), line("b", Some("x")), retried]);
        let scot = &groups[&("gsm8k".to_string(), "scot".to_string())];
        assert_eq!(scot.len(), 2);
        assert!(scot.iter().any(|l| l.id == "b" && l.correct));
    }

    #[test]
    fn files_written_before_the_rename_still_read() {
        let mut old = serde_json::to_value(line("a", None)).unwrap();
        let fields = old.as_object_mut().unwrap();
        fields.remove("target_thinking_ms");
        fields.insert("correction_ms".into(), serde_json::json!(7.5));
        let read: ResultLine = serde_json::from_value(old).unwrap();
        assert_eq!(read.target_thinking_ms, 7.5);
    }
}
