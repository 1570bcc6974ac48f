//! Writes a Qwen2 GGUF with the real SHAPES of DeepSeek-R1-Distill-Qwen 1.5B / 7B / 32B and random
//! Q4_K_M-like weights, for speed benchmarks on machines that cannot download the real models (issue 6's
//! GPU tensor-parallel benchmark). Speed does not depend on the weight values; the random block bytes get
//! small finite f16 scales so activations stay finite. Data is generated and written tensor by tensor
//! (the 32B file is ~19 GB; memory use stays small).
//!
//! ```text
//! # here: a ~6 MB tokenizer-only GGUF (the Qwen2 byte-level BPE: tokens, merges, types, chat template)
//! cargo run --release -p scot-engine --example random_gguf -- extract-tokenizer \
//!     --from ~/.cache/scot/models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf --out qwen2-tokenizer.gguf
//! # on the benchmark machine
//! random_gguf generate --shape 32b --tokenizer qwen2-tokenizer.gguf --out /data/r1-qwen-32b-random.gguf
//! ```
//! `--tokenizer` takes any Qwen2 GGUF (a real model works too); the vocabulary is padded with `[PAD<id>]`
//! control tokens up to the shape's embedding rows, as llama.cpp's converter does.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Seek, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::quantized::gguf_file::{self, Value};
use half::f16;

/// Hyperparameters from the models' config.json (deepseek-ai/DeepSeek-R1-Distill-Qwen-*, Qwen2 architecture).
#[derive(Debug, Clone, Copy)]
struct Qwen2Shape {
    name: &'static str,
    hidden: usize,
    intermediate: usize,
    layers: usize,
    heads: usize,
    kv_heads: usize,
    vocab: usize,
    rope_theta: f32,
    rms_eps: f32,
    context: usize,
}

const SHAPES: [(&str, Qwen2Shape); 3] = [
    (
        "1.5b",
        Qwen2Shape {
            name: "DeepSeek-R1-Distill-Qwen-1.5B (random weights)",
            hidden: 1536,
            intermediate: 8960,
            layers: 28,
            heads: 12,
            kv_heads: 2,
            vocab: 151_936,
            rope_theta: 10_000.0,
            rms_eps: 1e-6,
            context: 131_072,
        },
    ),
    (
        "7b",
        Qwen2Shape {
            name: "DeepSeek-R1-Distill-Qwen-7B (random weights)",
            hidden: 3584,
            intermediate: 18_944,
            layers: 28,
            heads: 28,
            kv_heads: 4,
            vocab: 152_064,
            rope_theta: 10_000.0,
            rms_eps: 1e-6,
            context: 131_072,
        },
    ),
    (
        "32b",
        Qwen2Shape {
            name: "DeepSeek-R1-Distill-Qwen-32B (random weights)",
            hidden: 5120,
            intermediate: 27_648,
            layers: 64,
            heads: 40,
            kv_heads: 8,
            vocab: 152_064,
            rope_theta: 1_000_000.0,
            rms_eps: 1e-5,
            context: 131_072,
        },
    ),
];

const ALIGNMENT: u64 = 32;
const QK_K: usize = 256;
const GGUF_VERSION: u32 = 3;
/// llama.cpp's LLAMA_FTYPE_MOSTLY_Q4_K_M.
const FILE_TYPE_Q4_K_M: u32 = 15;
/// llama.cpp's token type for control tokens (the padding tokens).
const TOKEN_TYPE_CONTROL: i32 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    F32Ones,
    F32Zeros,
    Q4K,
    Q6K,
}

impl Kind {
    /// GGML type id in the tensor info.
    fn ggml_type(self) -> u32 {
        match self {
            Kind::F32Ones | Kind::F32Zeros => 0,
            Kind::Q4K => 12,
            Kind::Q6K => 14,
        }
    }

    fn bytes(self, elems: usize) -> usize {
        match self {
            Kind::F32Ones | Kind::F32Zeros => elems * 4,
            Kind::Q4K => elems / QK_K * 144,
            Kind::Q6K => elems / QK_K * 210,
        }
    }
}

struct TensorSpec {
    name: String,
    /// candle order: [rows, cols] (GGUF stores them reversed).
    dims: Vec<usize>,
    kind: Kind,
}

/// llama.cpp's Q4_K_M rule for attn_v / ffn_down: Q6_K in the first and last eighth and every third layer.
fn use_more_bits(layer: usize, layers: usize) -> bool {
    layer < layers / 8 || layer >= 7 * layers / 8 || (layer - layers / 8) % 3 == 2
}

fn tensor_specs(s: &Qwen2Shape) -> Vec<TensorSpec> {
    let head_dim = s.hidden / s.heads;
    let kv = s.kv_heads * head_dim;
    let t = |name: String, dims: &[usize], kind| TensorSpec {
        name,
        dims: dims.to_vec(),
        kind,
    };
    let mut v = vec![t(
        "token_embd.weight".into(),
        &[s.vocab, s.hidden],
        Kind::Q4K,
    )];
    for i in 0..s.layers {
        let p = format!("blk.{i}");
        let more = if use_more_bits(i, s.layers) {
            Kind::Q6K
        } else {
            Kind::Q4K
        };
        v.extend([
            t(format!("{p}.attn_norm.weight"), &[s.hidden], Kind::F32Ones),
            t(
                format!("{p}.attn_q.weight"),
                &[s.hidden, s.hidden],
                Kind::Q4K,
            ),
            t(format!("{p}.attn_q.bias"), &[s.hidden], Kind::F32Zeros),
            t(format!("{p}.attn_k.weight"), &[kv, s.hidden], Kind::Q4K),
            t(format!("{p}.attn_k.bias"), &[kv], Kind::F32Zeros),
            t(format!("{p}.attn_v.weight"), &[kv, s.hidden], more),
            t(format!("{p}.attn_v.bias"), &[kv], Kind::F32Zeros),
            t(
                format!("{p}.attn_output.weight"),
                &[s.hidden, s.hidden],
                Kind::Q4K,
            ),
            t(format!("{p}.ffn_norm.weight"), &[s.hidden], Kind::F32Ones),
            t(
                format!("{p}.ffn_gate.weight"),
                &[s.intermediate, s.hidden],
                Kind::Q4K,
            ),
            t(
                format!("{p}.ffn_up.weight"),
                &[s.intermediate, s.hidden],
                Kind::Q4K,
            ),
            t(
                format!("{p}.ffn_down.weight"),
                &[s.hidden, s.intermediate],
                more,
            ),
        ]);
    }
    v.push(t("output_norm.weight".into(), &[s.hidden], Kind::F32Ones));
    v.push(t("output.weight".into(), &[s.vocab, s.hidden], Kind::Q6K));
    v
}

/// splitmix64: fast, seeded, good enough for filler bytes.
struct FillRng(u64);

impl FillRng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn fill(&mut self, buf: &mut [u8]) {
        let mut chunks = buf.chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        let last = self.next_u64().to_le_bytes();
        rest.copy_from_slice(&last[..rest.len()]);
    }
}

/// Fills `buf` (a whole number of blocks) with random quantized blocks whose f16 scales are small.
fn fill_blocks(kind: Kind, buf: &mut [u8], rng: &mut FillRng) {
    rng.fill(buf);
    // Q4_K: w = d*sc*q - dmin*m (q in 0..16, sc/m 6-bit); dmin = 7.5 d centres w on zero.
    let d4 = f16::from_f32(1e-4).to_le_bytes();
    let dmin4 = f16::from_f32(7.5e-4).to_le_bytes();
    // Q6_K: w = d*scale*(q-32) (q 6-bit, scale i8).
    let d6 = f16::from_f32(1e-5).to_le_bytes();
    match kind {
        Kind::Q4K => {
            for block in buf.chunks_exact_mut(144) {
                block[0..2].copy_from_slice(&d4);
                block[2..4].copy_from_slice(&dmin4);
            }
        }
        Kind::Q6K => {
            for block in buf.chunks_exact_mut(210) {
                block[208..210].copy_from_slice(&d6);
            }
        }
        Kind::F32Ones | Kind::F32Zeros => unreachable!("f32 tensors are not random"),
    }
}

fn write_string(w: &mut impl Write, s: &str) -> Result<()> {
    w.write_all(&(s.len() as u64).to_le_bytes())?;
    w.write_all(s.as_bytes())?;
    Ok(())
}

fn value_type_id(v: &Value) -> u32 {
    match v {
        Value::U8(_) => 0,
        Value::I8(_) => 1,
        Value::U16(_) => 2,
        Value::I16(_) => 3,
        Value::U32(_) => 4,
        Value::I32(_) => 5,
        Value::F32(_) => 6,
        Value::Bool(_) => 7,
        Value::String(_) => 8,
        Value::Array(_) => 9,
        Value::U64(_) => 10,
        Value::I64(_) => 11,
        Value::F64(_) => 12,
    }
}

fn write_value(w: &mut impl Write, v: &Value) -> Result<()> {
    match v {
        Value::U8(x) => w.write_all(&x.to_le_bytes())?,
        Value::I8(x) => w.write_all(&x.to_le_bytes())?,
        Value::U16(x) => w.write_all(&x.to_le_bytes())?,
        Value::I16(x) => w.write_all(&x.to_le_bytes())?,
        Value::U32(x) => w.write_all(&x.to_le_bytes())?,
        Value::I32(x) => w.write_all(&x.to_le_bytes())?,
        Value::U64(x) => w.write_all(&x.to_le_bytes())?,
        Value::I64(x) => w.write_all(&x.to_le_bytes())?,
        Value::F32(x) => w.write_all(&x.to_le_bytes())?,
        Value::F64(x) => w.write_all(&x.to_le_bytes())?,
        Value::Bool(x) => w.write_all(&[u8::from(*x)])?,
        Value::String(s) => write_string(w, s)?,
        Value::Array(items) => {
            let ty = items.first().map_or(4, value_type_id);
            if items.iter().any(|i| value_type_id(i) != ty) {
                bail!("GGUF arrays must hold one value type");
            }
            w.write_all(&ty.to_le_bytes())?;
            w.write_all(&(items.len() as u64).to_le_bytes())?;
            for i in items {
                write_value(w, i)?;
            }
        }
    }
    Ok(())
}

fn pad_to_alignment(w: &mut (impl Write + Seek)) -> Result<()> {
    let pos = w.stream_position()?;
    let pad = (ALIGNMENT - pos % ALIGNMENT) % ALIGNMENT;
    w.write_all(&vec![0u8; pad as usize])?;
    Ok(())
}

/// Writes a GGUF v3 file: metadata, tensor infos, then each tensor's data produced by `data`.
fn write_gguf(
    out: &PathBuf,
    metadata: &BTreeMap<String, Value>,
    tensors: &[TensorSpec],
    mut data: impl FnMut(&TensorSpec, &mut dyn Write) -> Result<()>,
) -> Result<()> {
    let file = File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let mut w = BufWriter::with_capacity(8 << 20, file);
    w.write_all(b"GGUF")?;
    w.write_all(&GGUF_VERSION.to_le_bytes())?;
    w.write_all(&(tensors.len() as u64).to_le_bytes())?;
    w.write_all(&(metadata.len() as u64).to_le_bytes())?;
    for (key, value) in metadata {
        write_string(&mut w, key)?;
        w.write_all(&value_type_id(value).to_le_bytes())?;
        write_value(&mut w, value)?;
    }
    let mut offset = 0u64;
    for t in tensors {
        write_string(&mut w, &t.name)?;
        w.write_all(&(t.dims.len() as u32).to_le_bytes())?;
        for &d in t.dims.iter().rev() {
            w.write_all(&(d as u64).to_le_bytes())?;
        }
        w.write_all(&t.kind.ggml_type().to_le_bytes())?;
        w.write_all(&offset.to_le_bytes())?;
        let size = t.kind.bytes(t.dims.iter().product()) as u64;
        offset += size.div_ceil(ALIGNMENT) * ALIGNMENT;
    }
    pad_to_alignment(&mut w)?;
    for t in tensors {
        data(t, &mut w)?;
        pad_to_alignment(&mut w)?;
    }
    w.flush()?;
    Ok(())
}

fn read_metadata(path: &PathBuf) -> Result<BTreeMap<String, Value>> {
    let mut f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let content = gguf_file::Content::read(&mut f)
        .with_context(|| format!("reading GGUF metadata of {}", path.display()))?;
    Ok(content.metadata.into_iter().collect())
}

/// The `tokenizer.*` entries of a Qwen2 GGUF.
fn tokenizer_metadata(path: &PathBuf) -> Result<BTreeMap<String, Value>> {
    let meta = read_metadata(path)?;
    match meta.get("general.architecture") {
        Some(Value::String(a)) if a == "qwen2" => {}
        other => bail!(
            "{}: expected a qwen2 GGUF, general.architecture is {other:?}",
            path.display()
        ),
    }
    let tok: BTreeMap<String, Value> = meta
        .into_iter()
        .filter(|(k, _)| k.starts_with("tokenizer."))
        .collect();
    if !tok.contains_key("tokenizer.ggml.tokens") || !tok.contains_key("tokenizer.ggml.merges") {
        bail!(
            "{}: no tokenizer.ggml.tokens / merges metadata",
            path.display()
        );
    }
    Ok(tok)
}

/// Pads the vocabulary with `[PAD<id>]` control tokens up to `rows` embedding rows.
fn pad_vocab(tok: &mut BTreeMap<String, Value>, rows: usize) -> Result<()> {
    let Some(Value::Array(tokens)) = tok.get_mut("tokenizer.ggml.tokens") else {
        bail!("tokenizer.ggml.tokens is not an array");
    };
    let have = tokens.len();
    if have > rows {
        bail!("the tokenizer has {have} tokens but the shape only {rows} embedding rows");
    }
    tokens.extend((have..rows).map(|id| Value::String(format!("[PAD{id}]"))));
    if let Some(Value::Array(types)) = tok.get_mut("tokenizer.ggml.token_type") {
        let control = match types.first() {
            Some(Value::U32(_)) => Value::U32(TOKEN_TYPE_CONTROL as u32),
            _ => Value::I32(TOKEN_TYPE_CONTROL),
        };
        types.resize(rows, control);
    }
    Ok(())
}

fn model_metadata(s: &Qwen2Shape, mut tok: BTreeMap<String, Value>) -> BTreeMap<String, Value> {
    let u = |v: usize| Value::U32(v as u32);
    let mut m: BTreeMap<String, Value> = [
        ("general.architecture", Value::String("qwen2".into())),
        ("general.name", Value::String(s.name.into())),
        ("general.file_type", Value::U32(FILE_TYPE_Q4_K_M)),
        ("general.alignment", Value::U32(ALIGNMENT as u32)),
        ("qwen2.block_count", u(s.layers)),
        ("qwen2.context_length", u(s.context)),
        ("qwen2.embedding_length", u(s.hidden)),
        ("qwen2.feed_forward_length", u(s.intermediate)),
        ("qwen2.attention.head_count", u(s.heads)),
        ("qwen2.attention.head_count_kv", u(s.kv_heads)),
        ("qwen2.rope.freq_base", Value::F32(s.rope_theta)),
        (
            "qwen2.attention.layer_norm_rms_epsilon",
            Value::F32(s.rms_eps),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    m.append(&mut tok);
    m
}

fn generate(shape: &Qwen2Shape, tokenizer: &PathBuf, out: &PathBuf, seed: u64) -> Result<()> {
    let mut tok = tokenizer_metadata(tokenizer)?;
    pad_vocab(&mut tok, shape.vocab)?;
    let metadata = model_metadata(shape, tok);
    let tensors = tensor_specs(shape);
    let total: usize = tensors
        .iter()
        .map(|t| t.kind.bytes(t.dims.iter().product()))
        .sum();
    eprintln!(
        "random_gguf: {} -> {} ({} tensors, {:.2} GB of tensor data)",
        shape.name,
        out.display(),
        tensors.len(),
        total as f64 / 1e9
    );
    let start = Instant::now();
    let mut rng = FillRng(seed);
    let mut buf = Vec::new();
    write_gguf(out, &metadata, &tensors, |t, w| {
        let elems: usize = t.dims.iter().product();
        match t.kind {
            Kind::F32Ones => {
                let one = 1f32.to_le_bytes();
                buf.clear();
                buf.extend((0..elems).flat_map(|_| one));
                w.write_all(&buf)?;
            }
            Kind::F32Zeros => w.write_all(&vec![0u8; elems * 4])?,
            Kind::Q4K | Kind::Q6K => {
                // One row-block at a time keeps memory small for the 27648 x 5120 matrices.
                let row_bytes = t.kind.bytes(*t.dims.last().unwrap_or(&0));
                let rows_per_chunk = (16 << 20) / row_bytes.max(1);
                let rows = elems / t.dims.last().copied().unwrap_or(1).max(1);
                let mut done = 0;
                while done < rows {
                    let n = rows_per_chunk.max(1).min(rows - done);
                    buf.resize(n * row_bytes, 0);
                    fill_blocks(t.kind, &mut buf, &mut rng);
                    w.write_all(&buf)?;
                    done += n;
                }
            }
        }
        Ok(())
    })?;
    eprintln!(
        "random_gguf: wrote {} in {:.1} s",
        out.display(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

fn extract_tokenizer(from: &PathBuf, out: &PathBuf) -> Result<()> {
    let mut meta = tokenizer_metadata(from)?;
    meta.insert("general.architecture".into(), Value::String("qwen2".into()));
    meta.insert(
        "general.name".into(),
        Value::String("tokenizer only (no tensors)".into()),
    );
    write_gguf(out, &meta, &[], |_, _| Ok(()))?;
    eprintln!(
        "random_gguf: tokenizer of {} -> {} ({} bytes)",
        from.display(),
        out.display(),
        std::fs::metadata(out)?.len()
    );
    Ok(())
}

const USAGE: &str = "usage:
  random_gguf generate --shape 1.5b|7b|32b --tokenizer QWEN2.gguf --out OUT.gguf [--seed N]
  random_gguf extract-tokenizer --from QWEN2.gguf --out TOKENIZER.gguf
  random_gguf sizes";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| -> Option<String> {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let need = |name: &str| -> Result<String> {
        flag(name).with_context(|| format!("{name} is required\n{USAGE}"))
    };
    match args.first().map(String::as_str) {
        Some("generate") => {
            let shape_name = need("--shape")?;
            let shape = SHAPES
                .iter()
                .find(|(n, _)| *n == shape_name)
                .map(|(_, s)| s)
                .with_context(|| format!("unknown shape `{shape_name}`\n{USAGE}"))?;
            let seed = flag("--seed")
                .map(|s| s.parse::<u64>())
                .transpose()
                .context("--seed")?
                .unwrap_or(0x5C07);
            generate(
                shape,
                &PathBuf::from(need("--tokenizer")?),
                &PathBuf::from(need("--out")?),
                seed,
            )
        }
        Some("extract-tokenizer") => extract_tokenizer(
            &PathBuf::from(need("--from")?),
            &PathBuf::from(need("--out")?),
        ),
        Some("sizes") => {
            for (n, s) in &SHAPES {
                let bytes: usize = tensor_specs(s)
                    .iter()
                    .map(|t| t.kind.bytes(t.dims.iter().product()))
                    .sum();
                println!("{n}\t{:.2} GB", bytes as f64 / 1e9);
            }
            Ok(())
        }
        _ => bail!("{USAGE}"),
    }
}
