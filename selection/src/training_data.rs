//! The training data `scot collect` writes and `scot train` reads, one JSON line per problem:
//! - selection ([`SelectionExample`]): the drafts, which options are right and the selection prompt
//!   exactly as the target node rendered it (token ids included). Labels follow the paper: every
//!   option whose draft is correct, or n + 1 ("all wrong") when none is.
//! - alignment ([`AlignmentExample`]): the target's chain of thought on a problem and the draft
//!   prompt exactly as the draft node rendered it, for the draft to learn to think like the target.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One draft of a training problem.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingDraft {
    pub text: String,
    /// The answer the draft states ([`crate::draft_answer`]); None when it states none.
    pub answer: Option<String>,
    /// Whether that answer equals the gold answer.
    pub correct: bool,
}

/// One line of a selection data file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SelectionExample {
    pub id: String,
    pub problem: String,
    pub gold: String,
    /// In option order: option i (1-based) is drafts[i - 1].
    pub drafts: Vec<TrainingDraft>,
    /// The options a selector should pick (1-based): every correct draft, or n + 1 when none is.
    pub labels: Vec<u32>,
    pub prompt_text: String,
    /// The selection prompt's token ids, as the target model reads them.
    pub prompt_token_ids: Vec<u32>,
    /// The token of each option 1..=n+1.
    pub option_token_ids: Vec<u32>,
    /// The target node's model (weights and adapter), template set and selection prompt digest.
    pub model_fingerprint: String,
    pub template_set: String,
    #[serde(default)]
    pub prompt_digest: String,
}

impl SelectionExample {
    /// The labels the paper's recipe gives these drafts.
    pub fn labels_for(drafts: &[TrainingDraft]) -> Vec<u32> {
        let correct: Vec<u32> = drafts
            .iter()
            .enumerate()
            .filter(|(_, d)| d.correct)
            .map(|(i, _)| i as u32 + 1)
            .collect();
        if correct.is_empty() {
            vec![drafts.len() as u32 + 1]
        } else {
            correct
        }
    }

    /// Whether the line is usable: options and labels consistent with the drafts.
    pub fn check(&self) -> Result<(), String> {
        let n = self.drafts.len();
        if n == 0 {
            return Err("no drafts".into());
        }
        if self.prompt_token_ids.is_empty() {
            return Err("empty prompt_token_ids".into());
        }
        if self.option_token_ids.len() != n + 1 {
            return Err(format!(
                "{} option tokens for {n} drafts (need {})",
                self.option_token_ids.len(),
                n + 1
            ));
        }
        if self.labels.is_empty() {
            return Err("no labels".into());
        }
        if let Some(bad) = self.labels.iter().find(|&&l| l == 0 || l as usize > n + 1) {
            return Err(format!("label {bad} is not an option 1..={}", n + 1));
        }
        let expected = Self::labels_for(&self.drafts);
        if self.labels != expected {
            return Err(format!(
                "labels {:?} do not match the drafts' correctness (expected {expected:?})",
                self.labels
            ));
        }
        Ok(())
    }
}

/// One line of an alignment data file: the target's thinking on a problem, which the draft learns
/// to write after its own prompt (the paper's thinking-behaviour alignment).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlignmentExample {
    pub id: String,
    pub problem: String,
    pub gold: String,
    /// The target's thinking, without the end-of-thinking marker.
    pub chain: String,
    /// Whether the target ended its thinking itself (false: cut at the thinking cap).
    pub chain_ended: bool,
    /// The end-of-thinking marker the draft learns to write after the chain (how drafts stop).
    pub think_end: String,
    /// The target's final answer after that thinking, and whether it is right.
    pub answer: String,
    pub correct: bool,
    pub target_model: String,
    /// The draft prompt as the draft node rendered it, and its token ids as the draft model reads
    /// them.
    pub prompt_text: String,
    pub prompt_token_ids: Vec<u32>,
    /// The draft node's model (weights and adapter) and template set.
    pub model_fingerprint: String,
    pub template_set: String,
}

impl AlignmentExample {
    /// Whether the line is usable.
    pub fn check(&self) -> Result<(), String> {
        if self.prompt_token_ids.is_empty() {
            return Err("empty prompt_token_ids".into());
        }
        if self.chain.trim().is_empty() {
            return Err("empty chain".into());
        }
        if self.think_end.trim().is_empty() {
            return Err("empty think_end".into());
        }
        Ok(())
    }

    /// The text the draft learns to write after its prompt: the chain, then the end marker on a
    /// line of its own (as the target closes its thinking).
    pub fn continuation(&self) -> String {
        format!("{}\n{}", self.chain.trim_end(), self.think_end)
    }
}

/// Reads an alignment data file; the first malformed line is an error naming its number.
pub fn read_alignment_examples(path: &Path) -> Result<Vec<AlignmentExample>, TrainingDataError> {
    read_jsonl(path, AlignmentExample::check)
}

/// A trained selector's option probabilities for one problem (`scot train selection` writes them for
/// its held-out examples; `scot report --replay --selector-probs` decides with them in place of the
/// stored target's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SelectorProbs {
    pub id: String,
    /// Per option (drafts in order, then "all wrong"), renormalised over the option tokens.
    pub option_probs: Vec<f32>,
}

/// Reads a selector-probabilities file (one [`SelectorProbs`] per line).
pub fn read_selector_probs(path: &Path) -> Result<Vec<SelectorProbs>, TrainingDataError> {
    read_jsonl(path, |_| Ok(()))
}

fn read_jsonl<T: serde::de::DeserializeOwned>(
    path: &Path,
    check: impl Fn(&T) -> Result<(), String>,
) -> Result<Vec<T>, TrainingDataError> {
    let io = |source| TrainingDataError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut items = Vec::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(io)?;
        if line.trim().is_empty() {
            continue;
        }
        let at = |reason: String| TrainingDataError::Line {
            path: path.to_path_buf(),
            line: i + 1,
            reason,
        };
        let item: T = serde_json::from_str(&line).map_err(|e| {
            at(format!(
                "not a {}: {e}",
                std::any::type_name::<T>()
                    .rsplit("::")
                    .next()
                    .unwrap_or("line")
            ))
        })?;
        check(&item).map_err(at)?;
        items.push(item);
    }
    Ok(items)
}

#[derive(Debug, thiserror::Error)]
pub enum TrainingDataError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}, line {line}: {reason}")]
    Line {
        path: PathBuf,
        line: usize,
        reason: String,
    },
}

/// Reads a selection data file; the first malformed or inconsistent line is an error naming its
/// number. Blank lines are skipped.
pub fn read_examples(path: &Path) -> Result<Vec<SelectionExample>, TrainingDataError> {
    read_jsonl(path, SelectionExample::check)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft(correct: bool) -> TrainingDraft {
        TrainingDraft {
            text: "t".into(),
            answer: Some("1".into()),
            correct,
        }
    }

    fn example(drafts: Vec<TrainingDraft>) -> SelectionExample {
        SelectionExample {
            id: "p".into(),
            problem: "q".into(),
            gold: "1".into(),
            labels: SelectionExample::labels_for(&drafts),
            option_token_ids: (0..=drafts.len() as u32).collect(),
            drafts,
            prompt_text: "prompt".into(),
            prompt_token_ids: vec![1, 2, 3],
            model_fingerprint: "m".into(),
            template_set: "default".into(),
            prompt_digest: String::new(),
        }
    }

    #[test]
    fn labels_are_the_correct_drafts_or_all_wrong() {
        assert_eq!(
            SelectionExample::labels_for(&[draft(false), draft(true), draft(true)]),
            vec![2, 3]
        );
        assert_eq!(
            SelectionExample::labels_for(&[draft(false), draft(false)]),
            vec![3]
        );
    }

    #[test]
    fn bad_lines_are_reported_with_their_number() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.jsonl");
        let good = serde_json::to_string(&example(vec![draft(true), draft(false)])).unwrap();
        let mut mislabelled = example(vec![draft(true), draft(false)]);
        mislabelled.labels = vec![2];
        let mislabelled = serde_json::to_string(&mislabelled).unwrap();
        std::fs::write(&path, format!("{good}\n\n{good}\n{mislabelled}\n")).unwrap();
        let err = read_examples(&path).unwrap_err().to_string();
        assert!(
            err.contains("line 4") && err.contains("labels [2]"),
            "{err}"
        );

        std::fs::write(&path, format!("{good}\n{{\"id\": 3\n")).unwrap();
        let err = read_examples(&path).unwrap_err().to_string();
        assert!(
            err.contains("line 2") && err.contains("not a SelectionExample"),
            "{err}"
        );

        let mut short = example(vec![draft(true), draft(false)]);
        short.option_token_ids.pop();
        std::fs::write(&path, serde_json::to_string(&short).unwrap()).unwrap();
        let err = read_examples(&path).unwrap_err().to_string();
        assert!(
            err.contains("line 1") && err.contains("2 option tokens"),
            "{err}"
        );

        std::fs::write(&path, format!("{good}\n{good}\n")).unwrap();
        assert_eq!(read_examples(&path).unwrap().len(), 2);
    }

    #[test]
    fn bad_alignment_lines_are_reported_with_their_number() {
        let example = AlignmentExample {
            id: "p".into(),
            problem: "q".into(),
            gold: "1".into(),
            chain: "First, 1.".into(),
            chain_ended: true,
            think_end: "</think>".into(),
            answer: "1".into(),
            correct: true,
            target_model: "t".into(),
            prompt_text: "prompt".into(),
            prompt_token_ids: vec![1, 2],
            model_fingerprint: "m".into(),
            template_set: "default".into(),
        };
        assert_eq!(example.continuation(), "First, 1.\n</think>");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("align.jsonl");
        let good = serde_json::to_string(&example).unwrap();
        let empty = serde_json::to_string(&AlignmentExample {
            chain: " ".into(),
            ..example.clone()
        })
        .unwrap();
        std::fs::write(&path, format!("{good}\n{empty}\n")).unwrap();
        let err = read_alignment_examples(&path).unwrap_err().to_string();
        assert!(
            err.contains("line 2") && err.contains("empty chain"),
            "{err}"
        );
        std::fs::write(&path, format!("{good}\n{{}}\n")).unwrap();
        let err = read_alignment_examples(&path).unwrap_err().to_string();
        assert!(
            err.contains("line 2") && err.contains("not a AlignmentExample"),
            "{err}"
        );
        std::fs::write(&path, format!("{good}\n")).unwrap();
        assert_eq!(read_alignment_examples(&path).unwrap(), vec![example]);
    }
}
