//! Loading an evaluation set: JSONL with `id`, `problem`, `answer` per line.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::EvalError;

/// One problem of a data set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Problem {
    pub id: String,
    pub problem: String,
    pub answer: String,
}

/// Reads every problem of `path`; blank lines are skipped, problems without a gold answer too
/// (GaoKao items 167 and 192 have none).
pub fn load_problems(path: &Path) -> Result<Vec<Problem>, EvalError> {
    let text = std::fs::read_to_string(path).map_err(|source| EvalError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut problems = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let problem: Problem = serde_json::from_str(line).map_err(|e| EvalError::BadLine {
            path: path.to_path_buf(),
            line: index + 1,
            message: format!("expected {{\"id\", \"problem\", \"answer\"}}: {e}"),
        })?;
        if problem.answer.trim().is_empty() {
            continue;
        }
        problems.push(problem);
    }
    Ok(problems)
}

/// The `offset..offset+limit` window of the problems.
pub fn select_window(problems: Vec<Problem>, offset: usize, limit: Option<usize>) -> Vec<Problem> {
    problems
        .into_iter()
        .skip(offset)
        .take(limit.unwrap_or(usize::MAX))
        .collect()
}

/// The data set's name: the file stem (`gsm8k` for `data/gsm8k.jsonl`).
pub fn dataset_name(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "dataset".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_skips_goldless_and_windows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tiny.jsonl");
        std::fs::write(
            &path,
            "{\"id\":\"a\",\"problem\":\"1+1\",\"answer\":\"2\"}\n\n{\"id\":\"b\",\"problem\":\"?\",\"answer\":\"\"}\n{\"id\":\"c\",\"problem\":\"2+2\",\"answer\":\"4\"}\n",
        )
        .unwrap();
        let problems = load_problems(&path).unwrap();
        assert_eq!(
            problems.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(),
            ["a", "c"]
        );
        assert_eq!(select_window(problems.clone(), 1, Some(5)).len(), 1);
        assert_eq!(select_window(problems, 0, Some(1))[0].id, "a");
        assert_eq!(dataset_name(&path), "tiny");
    }

    #[test]
    fn bad_line_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.jsonl");
        std::fs::write(
            &path,
            "{\"id\":\"a\",\"problem\":\"x\",\"answer\":\"1\"}\n{\"id\":3}\n",
        )
        .unwrap();
        let err = load_problems(&path).unwrap_err().to_string();
        assert!(err.contains("bad.jsonl line 2"), "{err}");
    }
}
