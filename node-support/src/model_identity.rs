//! A model's fingerprint: what a selection prior (or anything else measured on one model) names, so a
//! node can refuse what was made for other weights. Hashes each file's name, length and first and
//! last MiB (the GGUF header with its metadata, the tensor data's ends): cheap at start-up, and it
//! changes with the file in practice. A LoRA adapter is part of the model.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

const SAMPLE_BYTES: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
#[error("fingerprinting {path}: {source}")]
pub struct FingerprintError {
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

/// Hex fingerprint (16 digits) of a model file or folder plus an optional adapter folder.
pub fn model_fingerprint(model: &Path, lora: Option<&Path>) -> Result<String, FingerprintError> {
    let mut hasher = Sha256::new();
    for path in [Some(model), lora].into_iter().flatten() {
        for file in files_of(path)? {
            hash_file(&mut hasher, &file)?;
        }
    }
    let digest = hasher.finalize();
    Ok(digest[..8].iter().map(|b| format!("{b:02x}")).collect())
}

/// The file itself, or a folder's model files (config, tokenizer, weights, adapter) in name order.
fn files_of(path: &Path) -> Result<Vec<PathBuf>, FingerprintError> {
    let err = |source| FingerprintError {
        path: path.to_path_buf(),
        source,
    };
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(err)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .is_some_and(|e| e == "json" || e == "safetensors" || e == "gguf")
        })
        .collect();
    files.sort();
    Ok(files)
}

fn hash_file(hasher: &mut Sha256, path: &Path) -> Result<(), FingerprintError> {
    let err = |source| FingerprintError {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(err)?;
    let len = file.metadata().map_err(err)?.len();
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    hasher.update(name.unwrap_or_default().as_bytes());
    hasher.update(len.to_le_bytes());
    let mut buf = Vec::with_capacity(SAMPLE_BYTES as usize);
    file.by_ref()
        .take(SAMPLE_BYTES)
        .read_to_end(&mut buf)
        .map_err(err)?;
    hasher.update(&buf);
    if len > 2 * SAMPLE_BYTES {
        file.seek(SeekFrom::Start(len - SAMPLE_BYTES))
            .map_err(err)?;
        buf.clear();
        file.take(SAMPLE_BYTES).read_to_end(&mut buf).map_err(err)?;
        hasher.update(&buf);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fingerprint_follows_the_content_and_the_adapter() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("m.gguf");
        std::fs::write(&model, vec![7u8; 3 << 20]).unwrap();
        let a = model_fingerprint(&model, None).unwrap();
        assert_eq!(a.len(), 16);
        assert_eq!(a, model_fingerprint(&model, None).unwrap(), "stable");
        let mut changed = vec![7u8; 3 << 20];
        changed[(3 << 20) - 5] = 1;
        std::fs::write(&model, &changed).unwrap();
        let b = model_fingerprint(&model, None).unwrap();
        assert_ne!(a, b, "a change in the last MiB shows");
        let adapter = dir.path().join("lora");
        std::fs::create_dir(&adapter).unwrap();
        std::fs::write(adapter.join("adapter_config.json"), "{}").unwrap();
        assert_ne!(b, model_fingerprint(&model, Some(&adapter)).unwrap());
        assert!(model_fingerprint(&dir.path().join("missing.gguf"), None).is_err());
    }
}
