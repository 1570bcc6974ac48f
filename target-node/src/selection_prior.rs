//! The node's selection priors (`--selection-prior`): each file checked at start-up against this
//! node's model and the selection prompt its template set renders, then kept per (template set,
//! number of drafts) for Select to divide out.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use scot_node_support::{template_status, NodeModel, NodePrompts};
use scot_selection::{PriorError, SelectionPrior};
use sha2::{Digest, Sha256};
use tonic::Status;

/// Digest of the selection prompt these prompts render for n drafts (chat template and system
/// prompt included): a selection prior is only valid for the prompt it was measured on.
pub fn prompt_digest(prompts: &NodePrompts, n: usize) -> Result<String, Status> {
    let drafts: Vec<String> = (1..=n).map(|i| format!("Reasoning {i}.")).collect();
    let text = prompts
        .layout()
        .select_prompt("Question.", &drafts)
        .map_err(template_status)?;
    let digest = Sha256::digest(text.text().as_bytes());
    Ok(digest[..8].iter().map(|b| format!("{b:02x}")).collect())
}

#[derive(Debug, Default)]
pub struct SelectionPriors {
    by_set_and_n: HashMap<(String, usize), Arc<SelectionPrior>>,
}

#[derive(Debug, thiserror::Error)]
pub enum PriorLoadError {
    #[error(transparent)]
    Prior(#[from] PriorError),
    #[error("selection prior {path}: {message}")]
    Node { path: PathBuf, message: String },
}

impl SelectionPriors {
    /// Loads every file; refuses one made for another model, template set or prompt, and two for
    /// the same (template set, n).
    pub fn load(paths: &[PathBuf], node: &NodeModel) -> Result<Self, PriorLoadError> {
        let mut priors = Self::default();
        for path in paths {
            let prior = SelectionPrior::load(path)?;
            let prompts =
                node.prompts(&prior.template_set, "")
                    .map_err(|status| PriorLoadError::Node {
                        path: path.clone(),
                        message: format!(
                            "its template set is not on this node: {}",
                            status.message()
                        ),
                    })?;
            let digest = prompt_digest(&prompts, prior.n as usize).map_err(|status| {
                PriorLoadError::Node {
                    path: path.clone(),
                    message: status.message().to_string(),
                }
            })?;
            prior.check_for(path, &node.fingerprint, &digest)?;
            let key = (prompts.set().name().to_string(), prior.n as usize);
            if priors.by_set_and_n.contains_key(&key) {
                return Err(PriorLoadError::Node {
                    path: path.clone(),
                    message: format!(
                        "a second prior for template set {:?} and n = {}",
                        key.0, key.1
                    ),
                });
            }
            tracing::info!(path = %path.display(), template_set = %key.0, n = key.1, prior = ?prior.prior, "selection prior loaded");
            priors.by_set_and_n.insert(key, Arc::new(prior));
        }
        Ok(priors)
    }

    /// The prior for `n` drafts under `template_set`, if one was loaded.
    pub fn get(&self, template_set: &str, n: usize) -> Option<Arc<SelectionPrior>> {
        self.by_set_and_n
            .get(&(template_set.to_string(), n))
            .cloned()
    }
}
