//! Flags every node takes for its model, and loading the model and templates from them.

use std::path::PathBuf;
use std::sync::Arc;

use scot_engine::{DeviceSpec, LoadOptions, Model};
use scot_templates::TemplateLibrary;

use crate::engine_chat::ThinkingPrompt;
use crate::engine_job::EngineGate;

#[derive(clap::Args, Debug, Clone)]
pub struct ModelArgs {
    /// Model: a .gguf file, or a Hugging Face folder (config.json + *.safetensors + tokenizer.json).
    #[arg(long, env = "SCOT_MODEL")]
    pub model: PathBuf,
    /// PEFT LoRA adapter folder merged into the weights at load (safetensors models).
    #[arg(long, env = "SCOT_LORA")]
    pub lora: Option<PathBuf>,
    /// cpu, cuda or cuda:N.
    #[arg(long, env = "SCOT_DEVICE", default_value = "cpu", value_parser = parse_device)]
    pub device: DeviceSpec,
    /// Cap on the context length, below the model's own.
    #[arg(long, env = "SCOT_MAX_CONTEXT")]
    pub max_context: Option<usize>,
    /// Folder of template sets (<dir>/<set>/{system.txt,draft.jinja,answer.jinja,select.jinja,
    /// select_prefix.txt}); the built-in `default` set is always there.
    #[arg(long, env = "SCOT_TEMPLATES_DIR")]
    pub templates_dir: Option<PathBuf>,
    /// When to add the system prompt asking for <think>…</think> reasoning.
    #[arg(long, env = "SCOT_THINKING_PROMPT", value_enum, default_value = "auto")]
    pub thinking_prompt: ThinkingPrompt,
    /// Engine jobs run at once (each is CPU/GPU bound; more queue).
    #[arg(long, env = "SCOT_MAX_CONCURRENT", default_value_t = 1)]
    pub max_concurrent: usize,
}

/// `cpu`, `cuda` (= cuda:0) or `cuda:N`.
pub fn parse_device(text: &str) -> Result<DeviceSpec, String> {
    match text.trim() {
        "cpu" => Ok(DeviceSpec::Cpu),
        "cuda" => Ok(DeviceSpec::Cuda(0)),
        other => other
            .strip_prefix("cuda:")
            .and_then(|n| n.parse().ok())
            .map(DeviceSpec::Cuda)
            .ok_or_else(|| format!("unknown device {other:?}: use cpu, cuda or cuda:N")),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("loading model {path}: {source}")]
    Model {
        path: PathBuf,
        #[source]
        source: Box<scot_engine::EngineError>,
    },
    #[error("loading templates: {0}")]
    Templates(#[from] scot_templates::TemplateError),
    #[error("model loading thread failed: {0}")]
    Thread(String),
}

/// A loaded node: model, templates, and the gate its engine jobs pass through.
#[derive(Clone)]
pub struct NodeModel {
    pub model: Arc<Model>,
    /// Tensor-parallel ranks the model runs on (1 = unsharded).
    pub tensor_parallel: usize,
    pub templates: TemplateLibrary,
    pub native_thinking: bool,
    pub gate: EngineGate,
}

impl ModelArgs {
    /// [`ModelArgs::load`] on a blocking thread, so loading never stalls the async runtime.
    pub async fn load_off_runtime(&self) -> Result<NodeModel, LoadError> {
        let args = self.clone();
        tokio::task::spawn_blocking(move || args.load())
            .await
            .map_err(|e| LoadError::Thread(e.to_string()))?
    }

    /// Loads the templates first (cheap, fails fast) and then the model.
    pub fn load(&self) -> Result<NodeModel, LoadError> {
        let templates = match &self.templates_dir {
            Some(dir) => TemplateLibrary::load(dir)?,
            None => TemplateLibrary::builtin(),
        };
        let options = LoadOptions {
            path: self.model.clone(),
            lora: self.lora.clone(),
            device: self.device,
            max_context: self.max_context,
            ..LoadOptions::default()
        };
        let model = Model::load(&options).map_err(|source| LoadError::Model {
            path: self.model.clone(),
            source: Box::new(source),
        })?;
        let native_thinking = self.thinking_prompt.native_thinking(&model);
        tracing::info!(
            model = %model.info().name,
            context = model.info().context_length,
            native_thinking,
            template_sets = ?templates.names(),
            "model loaded"
        );
        Ok(NodeModel {
            model: Arc::new(model),
            tensor_parallel: 1,
            templates,
            native_thinking,
            gate: EngineGate::new(self.max_concurrent),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_parse() {
        assert_eq!(parse_device("cpu"), Ok(DeviceSpec::Cpu));
        assert_eq!(parse_device("cuda"), Ok(DeviceSpec::Cuda(0)));
        assert_eq!(parse_device("cuda:3"), Ok(DeviceSpec::Cuda(3)));
        assert!(parse_device("tpu").is_err());
    }
}
