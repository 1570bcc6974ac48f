//! Property-based fuzzing (proptest, stable Rust) of GGUF header parsing and loading: random
//! hyperparameters, random alignments and random byte mutations of a small GGUF must give an error
//! (or a model), never a panic or an abort. `PROPTEST_CASES` sets the number of cases (64 here by
//! default; SECURITY.md records a longer run).

#[path = "fuzz/cases.rs"]
mod cases;
use cases::config;

use std::io::Cursor;
use std::path::Path;

use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use proptest::prelude::*;
use scot_engine::gguf_header::check_gguf_header;
use scot_engine::{LoadOptions, Model};

/// A count from a model file: mostly plausible, sometimes zero, huge or arbitrary.
fn count() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => 1u64..64,
        1 => Just(0u64),
        1 => Just(u64::MAX),
        1 => (1u64 << 20)..(1u64 << 44),
        1 => any::<u64>(),
    ]
}

fn alignment() -> impl Strategy<Value = Option<gguf_file::Value>> {
    prop_oneof![
        2 => Just(None),
        1 => any::<u32>().prop_map(|v| Some(gguf_file::Value::U32(v))),
        1 => prop::sample::select(vec![0u32, 1, 2, 3, 32, 64, 4096, 1 << 20])
            .prop_map(|v| Some(gguf_file::Value::U32(v))),
        1 => any::<i32>().prop_map(|v| Some(gguf_file::Value::I32(v))),
        1 => any::<u8>().prop_map(|v| Some(gguf_file::Value::U8(v))),
        1 => any::<u64>().prop_map(|v| Some(gguf_file::Value::U64(v))),
    ]
}

#[derive(Debug, Clone)]
struct Header {
    layers: u64,
    heads: u64,
    kv_heads: u64,
    hidden: u64,
    ffn: u64,
    context: u64,
    key_length: Option<u64>,
    alignment: Option<gguf_file::Value>,
}

fn header() -> impl Strategy<Value = Header> {
    (
        count(),
        count(),
        count(),
        count(),
        count(),
        count(),
        prop::option::of(count()),
        alignment(),
    )
        .prop_map(
            |(layers, heads, kv_heads, hidden, ffn, context, key_length, alignment)| Header {
                layers,
                heads,
                kv_heads,
                hidden,
                ffn,
                context,
                key_length,
                alignment,
            },
        )
}

/// A small llama GGUF: the header's hyperparameters, a 4-token byte-level BPE vocabulary, a chat
/// template and one 4×8 F32 embedding tensor.
fn gguf_bytes(h: &Header) -> Vec<u8> {
    use gguf_file::Value as V;
    let strings = |v: &[&str]| V::Array(v.iter().map(|s| V::String(s.to_string())).collect());
    let mut md: Vec<(&str, V)> = vec![
        ("general.architecture", V::String("llama".into())),
        ("llama.block_count", V::U64(h.layers)),
        ("llama.attention.head_count", V::U64(h.heads)),
        ("llama.attention.head_count_kv", V::U64(h.kv_heads)),
        ("llama.embedding_length", V::U64(h.hidden)),
        ("llama.feed_forward_length", V::U64(h.ffn)),
        ("llama.context_length", V::U64(h.context)),
        ("llama.attention.layer_norm_rms_epsilon", V::F32(1e-5)),
        ("tokenizer.ggml.model", V::String("gpt2".into())),
        (
            "tokenizer.ggml.tokens",
            strings(&["a", "b", "ab", "<|im_start|>"]),
        ),
        ("tokenizer.ggml.merges", strings(&["a b"])),
        (
            "tokenizer.ggml.token_type",
            V::Array(vec![V::I32(1), V::I32(1), V::I32(1), V::I32(3)]),
        ),
        (
            "tokenizer.chat_template",
            V::String("{% for m in messages %}{{ m.content }}{% endfor %}".into()),
        ),
    ];
    if let Some(k) = h.key_length {
        md.push(("llama.attention.key_length", V::U64(k)));
    }
    if let Some(a) = &h.alignment {
        md.push(("general.alignment", a.clone()));
    }
    let embd = QTensor::quantize(
        &Tensor::zeros((4, 8), DType::F32, &Device::Cpu).unwrap(),
        GgmlDType::F32,
    )
    .unwrap();
    let refs: Vec<(&str, &gguf_file::Value)> = md.iter().map(|(k, v)| (*k, v)).collect();
    let mut out = Cursor::new(Vec::new());
    gguf_file::write(&mut out, &refs, &[("token_embd.weight", &embd)]).unwrap();
    out.into_inner()
}

fn load(dir: &Path, bytes: &[u8]) -> Result<Model, scot_engine::EngineError> {
    let path = dir.join("fuzz.gguf");
    std::fs::write(&path, bytes).unwrap();
    Model::load(&LoadOptions::new(&path))
}

/// One byte set at a relative position of the file, or a little-endian u64 written there.
#[derive(Debug, Clone)]
enum Mutation {
    Byte(f64, u8),
    Word(f64, u64),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (0.0..1.0f64, any::<u8>()).prop_map(|(at, b)| Mutation::Byte(at, b)),
        (0.0..1.0f64, count()).prop_map(|(at, w)| Mutation::Word(at, w)),
    ]
}

fn mutate(bytes: &mut [u8], mutations: &[Mutation]) {
    for m in mutations {
        match *m {
            Mutation::Byte(at, b) => {
                let i = ((bytes.len() as f64) * at) as usize % bytes.len();
                bytes[i] = b;
            }
            Mutation::Word(at, w) => {
                let i = ((bytes.len().saturating_sub(8) as f64) * at) as usize;
                bytes[i..i + 8].copy_from_slice(&w.to_le_bytes());
            }
        }
    }
}

proptest! {
    #![proptest_config(config())]

    /// Any hyperparameters and alignment: the loader answers with an error, never a panic.
    #[test]
    fn fuzz_gguf_hyperparameters_never_panic(h in header()) {
        let dir = tempfile::tempdir().unwrap();
        // No model can load: its only tensor is the embedding; what matters is how it fails.
        prop_assert!(load(dir.path(), &gguf_bytes(&h)).is_err());
    }

    /// Random byte and word mutations of a valid small GGUF: the header check and candle's parser
    /// after it never panic, and loading answers with an error.
    #[test]
    fn fuzz_gguf_mutated_files_never_panic(
        h in header(),
        mutations in prop::collection::vec(mutation(), 1..8),
    ) {
        let mut bytes = gguf_bytes(&h);
        mutate(&mut bytes, &mutations);
        if check_gguf_header(&mut Cursor::new(&bytes)).is_ok() {
            // What the check lets through, candle must parse without a panic.
            let parsed = std::panic::catch_unwind(|| {
                gguf_file::Content::read(&mut Cursor::new(&bytes)).map(|_| ())
            });
            prop_assert!(parsed.is_ok(), "candle panicked on a header the check accepted");
        }
        let dir = tempfile::tempdir().unwrap();
        prop_assert!(load(dir.path(), &bytes).is_err());
    }

    /// Arbitrary bytes after a GGUF magic: the header check never panics.
    #[test]
    fn fuzz_gguf_arbitrary_headers_never_panic(
        version in 0u32..5,
        body in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        let mut bytes = b"GGUF".to_vec();
        bytes.extend(version.to_le_bytes());
        bytes.extend(body);
        let _ = check_gguf_header(&mut Cursor::new(&bytes));
    }
}
