//! Template sets: the built-in `default` set (compiled in) and the sets in a user's templates folder.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use minijinja::{context, Environment, UndefinedBehavior};

use crate::error::TemplateError;
use crate::prompt_text::{mark_untrusted, PromptText};

/// Name of the built-in set, and what an empty set name means.
pub const DEFAULT_SET: &str = "default";

const FILE_SYSTEM: &str = "system.txt";
const FILE_DRAFT: &str = "draft.jinja";
const FILE_ANSWER: &str = "answer.jinja";
const FILE_SELECT: &str = "select.jinja";
const FILE_SELECT_PREFIX: &str = "select_prefix.txt";
const FILE_ANSWER_PREFIX: &str = "answer_prefix.txt";

/// One set of prompt templates (see templates/README.md).
#[derive(Debug, Clone)]
pub struct TemplateSet {
    name: String,
    system: String,
    draft: String,
    answer: String,
    select: String,
    select_prefix: String,
    answer_prefix: String,
}

impl TemplateSet {
    /// The built-in default set.
    pub fn builtin() -> Self {
        Self {
            name: DEFAULT_SET.to_string(),
            system: include_str!("../default/system.txt").trim_end().to_string(),
            draft: include_str!("../default/draft.jinja").to_string(),
            answer: include_str!("../default/answer.jinja").to_string(),
            select: include_str!("../default/select.jinja").to_string(),
            select_prefix: strip_line_end(include_str!("../default/select_prefix.txt")),
            answer_prefix: strip_line_end(include_str!("../default/answer_prefix.txt")),
        }
    }

    /// Reads a set folder; files it lacks come from `fallback`. The templates are checked by rendering
    /// them once, so a broken file fails at start-up rather than on a request.
    pub fn load(name: &str, dir: &Path, fallback: &TemplateSet) -> Result<Self, TemplateError> {
        let read = |file: &str, default: &str| -> Result<String, TemplateError> {
            let path = dir.join(file);
            match std::fs::read_to_string(&path) {
                Ok(text) => Ok(text),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(default.to_string()),
                Err(source) => Err(TemplateError::Io { path, source }),
            }
        };
        let set = Self {
            name: name.to_string(),
            system: read(FILE_SYSTEM, &fallback.system)?.trim_end().to_string(),
            draft: read(FILE_DRAFT, &fallback.draft)?,
            answer: read(FILE_ANSWER, &fallback.answer)?,
            select: read(FILE_SELECT, &fallback.select)?,
            select_prefix: strip_line_end(&read(FILE_SELECT_PREFIX, &fallback.select_prefix)?),
            answer_prefix: strip_line_end(&read(FILE_ANSWER_PREFIX, &fallback.answer_prefix)?),
        };
        set.check()?;
        Ok(set)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// System prompt for models with no thinking marker of their own.
    pub fn system_prompt(&self) -> &str {
        &self.system
    }

    /// How the selection prompt's assistant turn begins.
    pub fn select_prefix(&self) -> &str {
        &self.select_prefix
    }

    /// How the answer after the thinking begins, for models with no thinking marker of their own
    /// (small instruct models follow "answer in \\boxed{}" far more reliably when the answer starts
    /// with it).
    pub fn answer_prefix(&self) -> &str {
        &self.answer_prefix
    }

    pub fn render_draft(&self, problem: &str) -> Result<String, TemplateError> {
        self.render(FILE_DRAFT, &self.draft, context! { problem })
    }

    pub fn render_answer(&self, problem: &str) -> Result<String, TemplateError> {
        self.render(FILE_ANSWER, &self.answer, context! { problem })
    }

    pub fn render_select(&self, problem: &str, drafts: &[String]) -> Result<String, TemplateError> {
        let n = drafts.len();
        self.render(
            FILE_SELECT,
            &self.select,
            context! { problem, drafts, n, none_option => n + 1 },
        )
    }

    fn render(
        &self,
        file: &str,
        source: &str,
        ctx: minijinja::Value,
    ) -> Result<String, TemplateError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.render_str(source, ctx)
            .map_err(|e| TemplateError::Render {
                origin: format!("{}/{file}", self.name),
                reason: e.to_string(),
            })
    }

    fn check(&self) -> Result<(), TemplateError> {
        // Rendered as requests will be: with the problem and drafts marked untrusted, which each
        // template must insert whole (see prompt_text).
        let problem = mark_untrusted("sample problem");
        let sample = vec![mark_untrusted("first path"), mark_untrusted("second path")];
        let invalid = |file: &str, e: TemplateError| match e {
            TemplateError::Render { origin, reason } => TemplateError::Invalid { origin, reason },
            TemplateError::Chat(reason) => TemplateError::Invalid {
                origin: format!("{}/{file}", self.name),
                reason,
            },
            other => other,
        };
        for (file, rendered) in [
            (FILE_DRAFT, self.render_draft(&problem)),
            (FILE_ANSWER, self.render_answer(&problem)),
            (FILE_SELECT, self.render_select(&problem, &sample)),
        ] {
            let rendered = rendered.map_err(|e| invalid(file, e))?;
            PromptText::from_marked(&rendered).map_err(|e| invalid(file, e))?;
        }
        Ok(())
    }
}

fn strip_line_end(text: &str) -> String {
    text.trim_end_matches(['\n', '\r']).to_string()
}

/// Every template set a node can serve, by name.
#[derive(Debug, Clone)]
pub struct TemplateLibrary {
    sets: Arc<BTreeMap<String, Arc<TemplateSet>>>,
}

impl Default for TemplateLibrary {
    fn default() -> Self {
        Self::builtin()
    }
}

impl TemplateLibrary {
    /// Only the built-in `default` set.
    pub fn builtin() -> Self {
        let mut sets = BTreeMap::new();
        sets.insert(DEFAULT_SET.to_string(), Arc::new(TemplateSet::builtin()));
        Self {
            sets: Arc::new(sets),
        }
    }

    /// The built-in set plus every sub-folder of `dir` (a folder named `default` replaces the built-in
    /// files it holds). Folders whose names start with `.` are skipped.
    pub fn load(dir: &Path) -> Result<Self, TemplateError> {
        let builtin = TemplateSet::builtin();
        let mut sets = BTreeMap::new();
        let io = |source| TemplateError::Io {
            path: dir.to_path_buf(),
            source,
        };
        let mut folders: Vec<(String, PathBuf)> = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let entry = entry.map_err(io)?;
            let path = entry.path();
            if !path.is_dir() {
                continue;
            }
            let Some(name) = path
                .file_name()
                .and_then(|n| n.to_str())
                .map(str::to_string)
            else {
                continue;
            };
            if name.starts_with('.') || !is_template_set(&path) {
                continue;
            }
            folders.push((name, path));
        }
        let default = match folders.iter().find(|(name, _)| name == DEFAULT_SET) {
            Some((_, path)) => TemplateSet::load(DEFAULT_SET, path, &builtin)?,
            None => builtin,
        };
        for (name, path) in folders.iter().filter(|(name, _)| name != DEFAULT_SET) {
            sets.insert(
                name.clone(),
                Arc::new(TemplateSet::load(name, path, &default)?),
            );
        }
        sets.insert(DEFAULT_SET.to_string(), Arc::new(default));
        Ok(Self {
            sets: Arc::new(sets),
        })
    }

    /// The set named `name`; empty means `default`.
    pub fn get(&self, name: &str) -> Result<Arc<TemplateSet>, TemplateError> {
        let key = if name.is_empty() { DEFAULT_SET } else { name };
        self.sets
            .get(key)
            .cloned()
            .ok_or_else(|| TemplateError::UnknownSet {
                name: name.to_string(),
                available: self.names().join(", "),
            })
    }

    pub fn names(&self) -> Vec<String> {
        self.sets.keys().cloned().collect()
    }
}

/// A folder is a template set when it holds at least one template file.
fn is_template_set(dir: &Path) -> bool {
    [
        FILE_SYSTEM,
        FILE_DRAFT,
        FILE_ANSWER,
        FILE_SELECT,
        FILE_SELECT_PREFIX,
        FILE_ANSWER_PREFIX,
    ]
    .iter()
    .any(|f| dir.join(f).is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_set_renders_problem_and_paths() {
        let set = TemplateSet::builtin();
        let draft = set.render_draft("What is 2+2?").unwrap();
        assert!(draft.starts_with("What is 2+2?\n"));
        assert!(draft.contains("\\boxed{}"));
        let select = set
            .render_select("Q?", &["alpha".to_string(), "beta".to_string()])
            .unwrap();
        assert!(select.contains("Reasoning path 1:\nalpha"));
        assert!(select.contains("Reasoning path 2:\nbeta"));
        assert!(select.contains("Reasoning path 3:\nAll the reasoning paths above are wrong."));
        assert_eq!(set.select_prefix(), "Number of the best reasoning path: ");
    }

    #[test]
    fn unknown_set_is_an_error_naming_the_available_sets() {
        let lib = TemplateLibrary::builtin();
        assert!(lib.get("").is_ok());
        let err = lib.get("nope").unwrap_err().to_string();
        assert!(err.contains("nope") && err.contains("default"), "{err}");
    }

    #[test]
    fn folder_sets_override_files_and_fall_back_to_default() {
        let dir = std::env::temp_dir().join(format!("scot-templates-test-{}", std::process::id()));
        let short = dir.join("short");
        std::fs::create_dir_all(&short).unwrap();
        std::fs::write(short.join("draft.jinja"), "Solve: {{ problem }}\n").unwrap();
        std::fs::create_dir_all(dir.join("not-a-set")).unwrap();
        let lib = TemplateLibrary::load(&dir).unwrap();
        let set = lib.get("short").unwrap();
        assert_eq!(set.render_draft("1+1").unwrap(), "Solve: 1+1");
        assert_eq!(set.select_prefix(), TemplateSet::builtin().select_prefix());
        assert!(lib.get("not-a-set").is_err());
        std::fs::write(short.join("select.jinja"), "{{ undefined_name }}").unwrap();
        let err = TemplateLibrary::load(&dir).unwrap_err().to_string();
        assert!(err.contains("short/select.jinja"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
