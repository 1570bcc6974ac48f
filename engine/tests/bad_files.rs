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
fn bad_files_unknown_architecture_and_a_missing_adapter_on_gguf() {
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

    // GGUF models take adapters at run time (tests/lora_gguf.rs); a missing one is named.
    let mut opts = LoadOptions::new(model_path(SMOL));
    opts.lora = Some(dir.path().join("adapter"));
    let err = Model::load(&opts).unwrap_err();
    assert!(matches!(err, EngineError::Lora { .. }), "{err}");
    assert!(err.to_string().contains("adapter_config.json"), "{err}");
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

/// A GGUF with SmolLM2's metadata (with `metadata` replacing keys) and only a tiny `token_embd`:
/// enough to reach every header and hyperparameter check, which all run before tensor shapes.
fn write_header_gguf(path: &Path, metadata: &[(&str, gguf_file::Value)]) {
    let src = model_path(SMOL);
    let mut f = std::fs::File::open(&src).unwrap();
    let content = gguf_file::Content::read(&mut f).unwrap();
    let mut md: Vec<(String, gguf_file::Value)> = content.metadata.into_iter().collect();
    for (k, v) in metadata {
        md.retain(|(key, _)| key != k);
        md.push((k.to_string(), v.clone()));
    }
    let embd = candle_core::quantized::QTensor::quantize(
        &candle_core::Tensor::zeros((8, 64), candle_core::DType::F32, &candle_core::Device::Cpu)
            .unwrap(),
        candle_core::quantized::GgmlDType::F32,
    )
    .unwrap();
    let md_refs: Vec<(&str, &gguf_file::Value)> = md.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut out = std::fs::File::create(path).unwrap();
    gguf_file::write(&mut out, &md_refs, &[("token_embd.weight", &embd)]).unwrap();
}

/// The raw bytes of a GGUF v3 header: counts as given, then `kvs` (key, type, value bytes).
fn raw_gguf(tensor_count: u64, kvs: &[(&str, u32, Vec<u8>)], tail: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend(0x4655_4747u32.to_le_bytes());
    b.extend(3u32.to_le_bytes());
    b.extend(tensor_count.to_le_bytes());
    b.extend((kvs.len() as u64).to_le_bytes());
    for (k, ty, v) in kvs {
        b.extend((k.len() as u64).to_le_bytes());
        b.extend(k.as_bytes());
        b.extend(ty.to_le_bytes());
        b.extend(v);
    }
    b.extend(tail);
    b.resize(b.len() + 4096, 0);
    b
}

fn invalid_file_reason(err: EngineError) -> String {
    match err {
        EngineError::InvalidModelFile { reason, .. } => reason,
        other => panic!("expected InvalidModelFile, got {other}"),
    }
}

#[test]
fn bad_files_alignment_zero_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    for (name, value) in [
        ("zero", gguf_file::Value::U32(0)),
        ("three", gguf_file::Value::U32(3)),
        ("negative", gguf_file::Value::I32(-32)),
        ("u64", gguf_file::Value::U64(32)),
    ] {
        let path = dir.path().join(format!("align-{name}.gguf"));
        write_header_gguf(&path, &[("general.alignment", value)]);
        let reason = invalid_file_reason(load_err(&path));
        assert!(reason.contains("general.alignment"), "{name}: {reason}");
    }
}

#[test]
fn bad_files_huge_hyperparameters_are_metadata_errors() {
    let dir = tempfile::tempdir().unwrap();
    let huge = gguf_file::Value::U64(1 << 40);
    for (key, reported) in [
        ("llama.block_count", "block_count"),
        ("llama.attention.head_count", "llama.attention.head_count"),
        ("llama.attention.head_count_kv", "head_count_kv"),
        ("llama.attention.key_length", "head_dim"),
        ("llama.embedding_length", "llama.attention.head_count"),
        ("llama.feed_forward_length", "feed_forward_length"),
        ("llama.context_length", "context_length"),
    ] {
        let path = dir.path().join(format!("{key}.gguf"));
        write_header_gguf(&path, &[(key, huge.clone())]);
        match load_err(&path) {
            EngineError::Metadata {
                key: got, reason, ..
            } => assert_eq!(got, reported, "{key}: {reason}"),
            other => panic!("{key}: expected Metadata, got {other}"),
        }
    }
    // Large but consistent: 2^20 heads that divide a 2^30 embedding still exceed the limits.
    let path = dir.path().join("heads.gguf");
    write_header_gguf(
        &path,
        &[
            ("llama.attention.head_count", gguf_file::Value::U32(1 << 20)),
            (
                "llama.attention.head_count_kv",
                gguf_file::Value::U32(1 << 20),
            ),
            ("llama.embedding_length", gguf_file::Value::U32(1 << 30)),
        ],
    );
    match load_err(&path) {
        EngineError::Metadata { key, reason, .. } => {
            assert_eq!(key, "head_count", "{reason}");
            assert!(reason.contains("exceeds"), "{reason}");
        }
        other => panic!("expected Metadata, got {other}"),
    }
}

#[test]
fn bad_files_huge_counts_lengths_and_dims_are_refused_before_parsing() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, bytes: Vec<u8>| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    };
    // Tensor and metadata counts far beyond any model.
    let path = write("tensors.gguf", raw_gguf(1 << 40, &[], &[]));
    let reason = invalid_file_reason(load_err(&path));
    assert!(reason.contains("tensor count"), "{reason}");
    // A string value that claims 2^40 bytes.
    let mut string = (1u64 << 40).to_le_bytes().to_vec();
    string.extend(b"abc");
    let path = write(
        "string.gguf",
        raw_gguf(0, &[("general.name", 8, string)], &[]),
    );
    let reason = invalid_file_reason(load_err(&path));
    assert!(reason.contains("length"), "{reason}");
    // An array of 2^30 one-byte values (candle would build 32 GiB of values for a 1 GiB file).
    let mut array = 0u32.to_le_bytes().to_vec();
    array.extend((1u64 << 30).to_le_bytes());
    let path = write(
        "array.gguf",
        raw_gguf(0, &[("tokenizer.ggml.token_type", 9, array)], &[]),
    );
    let reason = invalid_file_reason(load_err(&path));
    assert!(reason.contains("array length"), "{reason}");
    // A tensor whose dimensions multiply past 2^64 (wrapping to a small element count).
    let mut info = Vec::new();
    let name = b"token_embd.weight";
    info.extend((name.len() as u64).to_le_bytes());
    info.extend(name);
    info.extend(4u32.to_le_bytes());
    for dim in [1u64 << 32, 1 << 32, 1, 1] {
        info.extend(dim.to_le_bytes());
    }
    info.extend(0u32.to_le_bytes()); // F32
    info.extend(0u64.to_le_bytes());
    let path = write("dims.gguf", raw_gguf(1, &[], &info));
    let reason = invalid_file_reason(load_err(&path));
    assert!(
        reason.contains("elements of tensor `token_embd.weight`"),
        "{reason}"
    );
}

#[test]
fn bad_files_chat_templates_are_fuelled_and_test_rendered_at_load() {
    let dir = tempfile::tempdir().unwrap();
    for (name, template, expected) in [
        (
            "loop",
            "{% for a in range(10000) %}{% for b in range(10000) %}{% endfor %}{% endfor %}",
            "fuel",
        ),
        (
            "wide-range",
            "{% for a in range(100000) %}{% endfor %}",
            "at most 10000",
        ),
        ("huge", "{{ 'x' * 50000000 }}", "longer than"),
        (
            "drops-user",
            "{% for m in messages %}{{ m.role }}{% endfor %}",
            "does not contain",
        ),
        (
            "raises",
            "{{ raise_exception('this template says no') }}",
            "this template says no",
        ),
    ] {
        let path = dir.path().join(format!("{name}.gguf"));
        write_header_gguf(
            &path,
            &[(
                "tokenizer.chat_template",
                gguf_file::Value::String(template.into()),
            )],
        );
        match load_err(&path) {
            EngineError::ChatTemplate(msg) => {
                assert!(msg.contains("test render at load"), "{name}: {msg}");
                assert!(msg.contains(expected), "{name}: {msg}");
            }
            other => panic!("{name}: expected ChatTemplate, got {other}"),
        }
    }
}

#[test]
fn bad_files_config_json_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let model_dir = dir.path().join("tiny");
    write_tiny_model(&model_dir, TinyArch::Qwen2);
    let config = model_dir.join("config.json");
    let good: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    for (key, value, reported) in [
        (
            "num_hidden_layers",
            serde_json::json!(1u64 << 40),
            "block_count",
        ),
        ("vocab_size", serde_json::json!(u64::MAX), "vocab_size"),
        (
            "intermediate_size",
            serde_json::json!(1u64 << 32),
            "feed_forward_length",
        ),
        ("head_dim", serde_json::json!(1u64 << 20), "head_dim"),
        (
            "max_position_embeddings",
            serde_json::json!(1u64 << 40),
            "context_length",
        ),
    ] {
        let mut bad = good.clone();
        bad[key] = value;
        std::fs::write(&config, bad.to_string()).unwrap();
        match load_err(&model_dir) {
            EngineError::Metadata { key: got, .. } => assert_eq!(got, reported, "{key}"),
            other => panic!("{key}: expected Metadata, got {other}"),
        }
    }
    // A config.json larger than any real one (17 MiB of spaces) is refused without parsing.
    let mut padded = good.to_string();
    padded.push_str(&" ".repeat(17 << 20));
    std::fs::write(&config, padded).unwrap();
    let err = load_err(&model_dir);
    assert!(matches!(err, EngineError::Io { .. }), "{err}");
    assert!(err.to_string().contains("limit"), "{err}");
}
