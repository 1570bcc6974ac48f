//! Broken inputs give clear errors naming the file and the problem, never panics.

mod common;

use std::path::Path;

use candle_core::quantized::gguf_file;
use common::*;
use scot_engine::{DeviceSpec, EngineError, LoadOptions, Model};

fn load_err(path: &Path) -> EngineError {
    Model::load(&LoadOptions::new(path)).expect_err("loading must fail")
}

fn write_gguf(path: &Path, metadata: &[(&str, gguf_file::Value)], drop_tensor: Option<&str>) {
    let src = model_path(SMOL);
    let mut f = std::fs::File::open(&src).unwrap();
    let content = gguf_file::Content::read(&mut f).unwrap();
    let mut md: Vec<(String, gguf_file::Value)> = content.metadata.clone().into_iter().collect();
    for (k, v) in metadata {
        md.retain(|(key, _)| key != k);
        md.push((k.to_string(), v.clone()));
    }
    let names: Vec<String> = content
        .tensor_infos
        .keys()
        .filter(|n| Some(n.as_str()) != drop_tensor)
        .cloned()
        .collect();
    let tensors: Vec<(String, candle_core::quantized::QTensor)> = names
        .iter()
        .map(|n| {
            (
                n.clone(),
                content
                    .tensor(&mut f, n, &candle_core::Device::Cpu)
                    .unwrap(),
            )
        })
        .collect();
    let md_refs: Vec<(&str, &gguf_file::Value)> = md.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let t_refs: Vec<(&str, &candle_core::quantized::QTensor)> =
        tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut out = std::fs::File::create(path).unwrap();
    gguf_file::write(&mut out, &md_refs, &t_refs).unwrap();
}

#[test]
fn bad_files_nonexistent_path() {
    let err = load_err(Path::new("/nonexistent/model.gguf"));
    let msg = err.to_string();
    assert!(matches!(err, EngineError::Io { .. }), "{msg}");
    assert!(msg.contains("/nonexistent/model.gguf"), "{msg}");
}

#[test]
fn bad_files_wrong_magic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("junk.gguf");
    std::fs::write(&path, b"this is not a gguf file at all, just text").unwrap();
    let err = load_err(&path);
    let msg = err.to_string();
    assert!(matches!(err, EngineError::InvalidModelFile { .. }), "{msg}");
    assert!(msg.contains("junk.gguf") && msg.contains("GGUF"), "{msg}");
}

#[test]
fn bad_files_truncated_gguf() {
    let bytes = std::fs::read(model_path(SMOL)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Cut in the tensor data, and cut in the header.
    for (name, len) in [("half.gguf", bytes.len() / 2), ("header.gguf", 4096)] {
        let path = dir.path().join(name);
        std::fs::write(&path, &bytes[..len]).unwrap();
        let err = load_err(&path);
        let msg = err.to_string();
        assert!(matches!(err, EngineError::InvalidModelFile { .. }), "{msg}");
        assert!(msg.contains(name), "{msg}");
        if name == "half.gguf" {
            assert!(msg.contains("truncated"), "{msg}");
        }
    }
}

#[test]
fn bad_files_missing_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing.gguf");
    write_gguf(&path, &[], Some("blk.3.ffn_up.weight"));
    let err = load_err(&path);
    let msg = err.to_string();
    match &err {
        EngineError::MissingTensor { name, .. } => assert_eq!(name, "blk.3.ffn_up.weight"),
        other => panic!("expected MissingTensor, got {other}"),
    }
    assert!(msg.contains("missing.gguf"), "{msg}");
}

#[test]
fn bad_files_unknown_architecture_and_lora_on_gguf() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mamba.gguf");
    write_gguf(
        &path,
        &[(
            "general.architecture",
            gguf_file::Value::String("mamba".into()),
        )],
        None,
    );
    let err = load_err(&path);
    let msg = err.to_string();
    assert!(
        matches!(err, EngineError::UnsupportedArchitecture { .. }),
        "{msg}"
    );
    assert!(msg.contains("mamba") && msg.contains("mamba.gguf"), "{msg}");

    let mut opts = LoadOptions::new(model_path(SMOL));
    opts.lora = Some(dir.path().join("adapter"));
    let err = Model::load(&opts).unwrap_err();
    assert!(matches!(err, EngineError::Lora { .. }), "{err}");
    assert!(err.to_string().contains("safetensors"), "{err}");
}

#[test]
fn bad_files_cuda_without_feature_is_a_device_error() {
    let mut opts = LoadOptions::new(model_path(SMOL));
    opts.device = DeviceSpec::Cuda(0);
    match Model::load(&opts) {
        Err(EngineError::Device(msg)) => {
            assert!(msg.contains("cuda") || msg.contains("CUDA"), "{msg}")
        }
        Err(other) if cfg!(feature = "cuda") => eprintln!("cuda build: {other}"),
        Err(other) => panic!("expected a Device error, got {other}"),
        Ok(_) if cfg!(feature = "cuda") => {}
        Ok(_) => panic!("CUDA load succeeded without the feature"),
    }
}

#[test]
fn bad_files_safetensors_folder_with_bad_config() {
    let dir = tempfile::tempdir().unwrap();
    let model_dir = dir.path().join("tiny");
    write_tiny_model(&model_dir, TinyArch::Llama);
    let config = model_dir.join("config.json");
    let good = std::fs::read_to_string(&config).unwrap();

    std::fs::write(&config, "{ not json").unwrap();
    let err = load_err(&model_dir);
    assert!(matches!(err, EngineError::InvalidModelFile { .. }), "{err}");
    assert!(err.to_string().contains("config.json"), "{err}");

    std::fs::write(&config, good.replace("\"llama\"", "\"gpt2\"")).unwrap();
    let err = load_err(&model_dir);
    assert!(
        matches!(err, EngineError::UnsupportedArchitecture { .. }),
        "{err}"
    );

    std::fs::write(&config, good.replace("\"hidden_size\"", "\"hidden_sizes\"")).unwrap();
    let err = load_err(&model_dir);
    match &err {
        EngineError::Metadata { key, path, .. } => {
            assert_eq!(key, "hidden_size");
            assert!(path.ends_with("config.json"));
        }
        other => panic!("expected Metadata, got {other}"),
    }

    // Config and weights disagree: a wrong hidden size is a shape error naming the tensor.
    std::fs::write(
        &config,
        good.replace("\"intermediate_size\": 128", "\"intermediate_size\": 96"),
    )
    .unwrap();
    let err = load_err(&model_dir);
    assert!(matches!(err, EngineError::TensorShape { .. }), "{err}");

    std::fs::write(&config, &good).unwrap();
    std::fs::write(model_dir.join("model.safetensors"), b"garbage").unwrap();
    let err = load_err(&model_dir);
    assert!(matches!(err, EngineError::InvalidModelFile { .. }), "{err}");
    assert!(err.to_string().contains("model.safetensors"), "{err}");
}
