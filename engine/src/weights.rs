//! Reading and validating weights: GGUF (block-quantized, via candle's QTensor) and Hugging Face
//! safetensors folders (f32/f16/bf16, converted to f32), into the one `Transformer` shape.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};

use crate::config::{Architecture, Hyperparams};
use crate::error::{EngineError, Result};
use crate::gguf_header::check_gguf_header;
use crate::linear::Linear;
use crate::rope::Rope;
use crate::transformer::{Block, TokenEmbedding, Transformer};

/// Load-time options that change the weights' numerics.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct WeightOptions {
    /// Store Q5_0 linear weights as Q8_0 (lossless: same scales, 5-bit values widened to 8 bits),
    /// which has SIMD kernels where candle's Q5_0 has none.
    pub q5_0_as_q8_0: bool,
}

/// An open GGUF file with its parsed header.
pub(crate) struct GgufFile {
    pub path: PathBuf,
    pub content: gguf_file::Content,
    file: File,
}

impl GgufFile {
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|source| EngineError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let invalid = |reason: String| EngineError::InvalidModelFile {
            path: path.to_path_buf(),
            reason,
        };
        // scot's limits first: candle trusts some header fields (see gguf_header).
        let mut reader = BufReader::new(&file);
        check_gguf_header(&mut reader)
            .map_err(|e| invalid(format!("not a readable GGUF file ({e})")))?;
        reader
            .seek(SeekFrom::Start(0))
            .map_err(|source| EngineError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        let content = gguf_file::Content::read(&mut reader)
            .map_err(|e| invalid(format!("not a readable GGUF file ({e})")))?;
        drop(reader);
        Ok(Self {
            path: path.to_path_buf(),
            content,
            file,
        })
    }

    fn shape_of(&self, name: &str) -> Option<Vec<usize>> {
        self.content
            .tensor_infos
            .get(name)
            .map(|info| info.shape.dims().to_vec())
    }

    /// Reads tensor `name`, checking that it exists, has the `expected` shape (`[out, in]` order)
    /// and that its data is all there.
    fn tensor(&mut self, name: &str, expected: &[usize], device: &Device) -> Result<QTensor> {
        let actual = self
            .shape_of(name)
            .ok_or_else(|| EngineError::MissingTensor {
                path: self.path.clone(),
                name: name.to_string(),
            })?;
        if actual != expected {
            return Err(EngineError::TensorShape {
                path: self.path.clone(),
                name: name.to_string(),
                expected: expected.to_vec(),
                actual,
            });
        }
        self.content
            .tensor(&mut self.file, name, device)
            .map_err(|e| EngineError::InvalidModelFile {
                path: self.path.clone(),
                reason: format!("tensor `{name}`: {e} (truncated or corrupt file?)"),
            })
    }

    fn vector(&mut self, name: &str, len: usize, device: &Device) -> Result<Tensor> {
        Ok(self
            .tensor(name, &[len], device)?
            .dequantize(device)?
            .to_dtype(DType::F32)?)
    }

    fn linear(
        &mut self,
        name: &str,
        shape: [usize; 2],
        bias: bool,
        device: &Device,
        opts: WeightOptions,
    ) -> Result<Linear> {
        let mut w = self.tensor(&format!("{name}.weight"), &shape, device)?;
        if opts.q5_0_as_q8_0 && w.dtype() == GgmlDType::Q5_0 {
            w = q5_0_to_q8_0(&w, device).map_err(|reason| EngineError::InvalidModelFile {
                path: self.path.clone(),
                reason: format!("tensor `{name}.weight`: {reason}"),
            })?;
        }
        let b = if bias {
            Some(self.vector(&format!("{name}.bias"), shape[0], device)?)
        } else {
            None
        };
        Linear::from_qtensor(Arc::new(w), b)
    }

    /// Rows of `token_embd.weight` (the vocabulary the model was trained with).
    pub fn vocab_rows(&self) -> Result<usize> {
        let dims =
            self.shape_of("token_embd.weight")
                .ok_or_else(|| EngineError::MissingTensor {
                    path: self.path.clone(),
                    name: "token_embd.weight".into(),
                })?;
        dims.first()
            .copied()
            .ok_or_else(|| EngineError::InvalidModelFile {
                path: self.path.clone(),
                reason: "token_embd.weight has no dimensions".into(),
            })
    }

    pub fn load_transformer(
        &mut self,
        hp: Hyperparams,
        rope_len: usize,
        device: &Device,
        opts: WeightOptions,
    ) -> Result<Transformer> {
        let (h, q_dim, kv_dim, ff) = (
            hp.hidden,
            hp.n_head * hp.head_dim,
            hp.n_kv_head * hp.head_dim,
            hp.intermediate,
        );
        let embd = Arc::new(self.tensor("token_embd.weight", &[hp.vocab_size, h], device)?);
        let output = if self.shape_of("output.weight").is_some() {
            self.linear("output", [hp.vocab_size, h], false, device, opts)?
        } else {
            // Tied embeddings: the output projection shares the (quantized) embedding table.
            Linear::from_qtensor(embd.clone(), None)?
        };
        let embedding = match embd.dtype() {
            GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16 => {
                TokenEmbedding::Dense(embd.dequantize(device)?.to_dtype(DType::F32)?)
            }
            _ => TokenEmbedding::Quantized(embd),
        };
        let norm = self.vector("output_norm.weight", h, device)?;
        let mut blocks = Vec::with_capacity(hp.n_layer);
        for i in 0..hp.n_layer {
            let p = format!("blk.{i}");
            let bias = hp.attention_bias;
            blocks.push(Block {
                attn_norm: self.vector(&format!("{p}.attn_norm.weight"), h, device)?,
                q: self.linear(&format!("{p}.attn_q"), [q_dim, h], bias, device, opts)?,
                k: self.linear(&format!("{p}.attn_k"), [kv_dim, h], bias, device, opts)?,
                v: self.linear(&format!("{p}.attn_v"), [kv_dim, h], bias, device, opts)?,
                o: self.linear(&format!("{p}.attn_output"), [h, q_dim], false, device, opts)?,
                ffn_norm: self.vector(&format!("{p}.ffn_norm.weight"), h, device)?,
                gate: self.linear(&format!("{p}.ffn_gate"), [ff, h], false, device, opts)?,
                up: self.linear(&format!("{p}.ffn_up"), [ff, h], false, device, opts)?,
                down: self.linear(&format!("{p}.ffn_down"), [h, ff], false, device, opts)?,
            });
        }
        let rope = Rope::new(
            hp.head_dim,
            hp.rope_theta,
            rope_len,
            hp.rope_interleaved,
            device,
        )?;
        Ok(Transformer {
            hp,
            embedding,
            blocks,
            norm,
            output,
            rope,
            device: device.clone(),
        })
    }
}

/// Rewrites a Q5_0 tensor as Q8_0 holding exactly the same values: a Q5_0 block is an f16 scale `d`
/// and 32 values `q - 16` (q: 5 bits); Q8_0 keeps `d` and stores `q - 16` as i8. Both multiply
/// against Q8_0-quantized activations, so results differ only in f32 summation order.
fn q5_0_to_q8_0(w: &QTensor, device: &Device) -> std::result::Result<QTensor, String> {
    const IN: usize = 22; // f16 d, u32 qh (high bits), 16 bytes of nibbles
    const OUT: usize = 34; // f16 d, 32 x i8
    let raw = w.data().map_err(|e| e.to_string())?;
    if raw.len() % IN != 0 {
        return Err(format!(
            "Q5_0 data of {} bytes is not whole blocks",
            raw.len()
        ));
    }
    let mut out = Vec::with_capacity(raw.len() / IN * OUT);
    for block in raw.chunks_exact(IN) {
        out.extend_from_slice(&block[..2]);
        let qh = u32::from_le_bytes([block[2], block[3], block[4], block[5]]);
        let qs = &block[6..];
        let mut q = [0i8; 32];
        for j in 0..16 {
            let hi0 = (((qh >> j) & 1) << 4) as u8;
            let hi1 = (((qh >> (j + 16)) & 1) << 4) as u8;
            q[j] = (((qs[j] & 0x0F) | hi0) as i8) - 16;
            q[j + 16] = (((qs[j] >> 4) | hi1) as i8) - 16;
        }
        out.extend(q.iter().map(|&v| v as u8));
    }
    let storage = candle_core::quantized::QStorage::from_data(
        std::borrow::Cow::Owned(out),
        device,
        GgmlDType::Q8_0,
    )
    .map_err(|e| e.to_string())?;
    QTensor::new(storage, w.shape().clone()).map_err(|e| e.to_string())
}

// ---------------------------------------------------------------- safetensors

/// The `*.safetensors` files of a Hugging Face folder, sorted.
pub(crate) fn safetensors_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|source| EngineError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(EngineError::InvalidModelFile {
            path: dir.to_path_buf(),
            reason: "no *.safetensors files in the model folder".into(),
        });
    }
    Ok(files)
}

/// All tensors of a folder, in f32, keyed by their Hugging Face names, with the file each came from.
pub(crate) fn read_safetensors(
    dir: &Path,
    device: &Device,
) -> Result<(HashMap<String, Tensor>, HashMap<String, PathBuf>)> {
    let mut tensors = HashMap::new();
    let mut origin = HashMap::new();
    for file in safetensors_files(dir)? {
        let loaded = candle_core::safetensors::load(&file, device).map_err(|e| {
            EngineError::InvalidModelFile {
                path: file.clone(),
                reason: format!("not a readable safetensors file ({e})"),
            }
        })?;
        for (name, t) in loaded {
            let t = match t.dtype() {
                DType::F32 => t,
                DType::F16 | DType::BF16 => t.to_dtype(DType::F32)?,
                other => {
                    return Err(EngineError::InvalidModelFile {
                        path: file.clone(),
                        reason: format!(
                        "tensor `{name}` has unsupported dtype {other:?} (need f32, f16 or bf16)"
                    ),
                    })
                }
            };
            origin.insert(name.clone(), file.clone());
            tensors.insert(name, t);
        }
    }
    Ok((tensors, origin))
}

struct DenseSource<'a> {
    dir: &'a Path,
    tensors: HashMap<String, Tensor>,
}

impl DenseSource<'_> {
    fn take(&mut self, name: &str, expected: &[usize]) -> Result<Tensor> {
        let t = self
            .tensors
            .remove(name)
            .ok_or_else(|| EngineError::MissingTensor {
                path: self.dir.to_path_buf(),
                name: name.to_string(),
            })?;
        if t.dims() != expected {
            return Err(EngineError::TensorShape {
                path: self.dir.to_path_buf(),
                name: name.to_string(),
                expected: expected.to_vec(),
                actual: t.dims().to_vec(),
            });
        }
        Ok(t)
    }

    fn linear(&mut self, name: &str, shape: [usize; 2], bias: bool) -> Result<Linear> {
        let w = self.take(&format!("{name}.weight"), &shape)?;
        let b = if bias {
            Some(self.take(&format!("{name}.bias"), &[shape[0]])?)
        } else {
            None
        };
        Linear::dense(w, b)
    }
}

/// Builds the decoder from HF-named dense tensors (after any LoRA merge).
pub(crate) fn dense_transformer(
    dir: &Path,
    tensors: HashMap<String, Tensor>,
    hp: Hyperparams,
    rope_len: usize,
    device: &Device,
) -> Result<Transformer> {
    debug_assert!(matches!(
        hp.architecture,
        Architecture::Qwen2 | Architecture::Llama
    ));
    let mut src = DenseSource { dir, tensors };
    let (h, q_dim, kv_dim, ff) = (
        hp.hidden,
        hp.n_head * hp.head_dim,
        hp.n_kv_head * hp.head_dim,
        hp.intermediate,
    );
    let embed = src.take("model.embed_tokens.weight", &[hp.vocab_size, h])?;
    let output = if !hp.tie_embeddings || src.tensors.contains_key("lm_head.weight") {
        src.linear("lm_head", [hp.vocab_size, h], false)?
    } else {
        Linear::dense(embed.clone(), None)?
    };
    let norm = src.take("model.norm.weight", &[h])?;
    let mut blocks = Vec::with_capacity(hp.n_layer);
    for i in 0..hp.n_layer {
        let p = format!("model.layers.{i}");
        let bias = hp.attention_bias;
        blocks.push(Block {
            attn_norm: src.take(&format!("{p}.input_layernorm.weight"), &[h])?,
            q: src.linear(&format!("{p}.self_attn.q_proj"), [q_dim, h], bias)?,
            k: src.linear(&format!("{p}.self_attn.k_proj"), [kv_dim, h], bias)?,
            v: src.linear(&format!("{p}.self_attn.v_proj"), [kv_dim, h], bias)?,
            o: src.linear(&format!("{p}.self_attn.o_proj"), [h, q_dim], false)?,
            ffn_norm: src.take(&format!("{p}.post_attention_layernorm.weight"), &[h])?,
            gate: src.linear(&format!("{p}.mlp.gate_proj"), [ff, h], false)?,
            up: src.linear(&format!("{p}.mlp.up_proj"), [ff, h], false)?,
            down: src.linear(&format!("{p}.mlp.down_proj"), [h, ff], false)?,
        });
    }
    let rope = Rope::new(
        hp.head_dim,
        hp.rope_theta,
        rope_len,
        hp.rope_interleaved,
        device,
    )?;
    Ok(Transformer {
        hp,
        embedding: TokenEmbedding::Dense(embed.contiguous()?),
        blocks,
        norm,
        output,
        rope,
        device: device.clone(),
    })
}
