//! Reading a model folder's text files (config.json, tokenizer.json, ...) with a size limit, so a
//! huge or endless file (`/dev/zero` behind a symlink) is an error instead of an allocation abort.

use std::io::Read;
use std::path::Path;

/// config.json, generation_config.json, tokenizer_config.json, adapter_config.json and
/// chat_template.jinja: kilobytes in practice.
pub(crate) const MAX_CONFIG_BYTES: u64 = 16 << 20;
/// tokenizer.json: a few MiB in practice (~35 MiB for 256k-token vocabularies).
pub(crate) const MAX_TOKENIZER_BYTES: u64 = 256 << 20;

/// The file as UTF-8 text; a file over `limit` bytes is an `InvalidData` error.
pub(crate) fn read_text(path: &Path, limit: u64) -> std::io::Result<String> {
    let file = std::fs::File::open(path)?;
    let mut text = String::new();
    file.take(limit.saturating_add(1))
        .read_to_string(&mut text)?;
    if text.len() as u64 > limit {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("the file is larger than the limit of {limit} bytes"),
        ));
    }
    Ok(text)
}
