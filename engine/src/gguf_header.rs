//! A bounded walk over a GGUF header before candle parses it: every count, length, dimension and
//! the alignment that candle would trust (or divide by) is checked against scot's limits first.
//!
//! candle 0.11 already checks lengths against the file size, but it accepts `general.alignment = 0`
//! (a division by zero), builds ~32 bytes of `Value` per 1-byte array element (a 1 GiB file can ask
//! for ~32 GiB) and multiplies tensor dimensions unchecked. This walk reads the header once, keeps
//! nothing but a few counters, and rejects such files with a typed error.

use std::io::{Read, Seek, SeekFrom};

/// Limits on what a GGUF header may declare. Real models are far below each: the largest
/// vocabularies have ~256k tokens (and as many merges), chat templates are tens of KiB.
pub mod limits {
    /// Tensors in one file (a 1000-layer model has ~10k).
    pub const MAX_TENSORS: u64 = 1 << 16;
    /// Metadata key/value entries.
    pub const MAX_METADATA_ENTRIES: u64 = 1 << 16;
    /// Bytes of one metadata key or tensor name.
    pub const MAX_KEY_BYTES: u64 = 1 << 16;
    /// Bytes of one string value (the chat template is the longest string in practice).
    pub const MAX_STRING_BYTES: u64 = 1 << 24;
    /// Elements of one metadata array (vocabulary, merges, token types).
    pub const MAX_ARRAY_ELEMENTS: u64 = 1 << 22;
    /// Metadata values in all, nested ones included: each costs ~32 bytes once parsed.
    pub const MAX_TOTAL_VALUES: u64 = 1 << 23;
    /// String bytes in all (keys, values, tensor names).
    pub const MAX_TOTAL_STRING_BYTES: u64 = 1 << 28;
    /// Arrays inside arrays (GGUF models use none; candle allows 64).
    pub const MAX_NESTING: u32 = 2;
    /// Dimensions of one tensor (ggml's GGML_MAX_DIMS).
    pub const MAX_TENSOR_DIMS: u32 = 4;
    /// Elements of one tensor (2^40: a 1-trillion-element tensor is no model we can load).
    pub const MAX_TENSOR_ELEMENTS: u64 = 1 << 40;
    /// Largest `general.alignment` (llama.cpp writes 32; it must be a power of two).
    pub const MAX_ALIGNMENT: u64 = 1 << 16;
}

use limits::*;

/// Why a GGUF header was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GgufHeaderError {
    #[error("read failed: {0}")]
    Io(String),
    #[error("not a GGUF file (magic 0x{0:08x})")]
    Magic(u32),
    #[error("unsupported GGUF version {0}")]
    Version(u32),
    #[error("{what} is {value}, more than the limit {limit}")]
    TooLarge {
        what: String,
        value: u64,
        limit: u64,
    },
    #[error("{what}: {reason}")]
    Invalid { what: String, reason: String },
}

/// What the walk learned, for tests and diagnostics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GgufHeaderSummary {
    pub version: u32,
    pub tensor_count: u64,
    pub metadata_count: u64,
    /// The alignment of tensor data (32 unless `general.alignment` says otherwise).
    pub alignment: u64,
}

const KEY_ALIGNMENT: &str = "general.alignment";
const DEFAULT_ALIGNMENT: u64 = 32;

// GGUF value types (gguf.md).
const T_U8: u32 = 0;
const T_I8: u32 = 1;
const T_U16: u32 = 2;
const T_I16: u32 = 3;
const T_U32: u32 = 4;
const T_I32: u32 = 5;
const T_F32: u32 = 6;
const T_BOOL: u32 = 7;
const T_STRING: u32 = 8;
const T_ARRAY: u32 = 9;
const T_U64: u32 = 10;
const T_I64: u32 = 11;
const T_F64: u32 = 12;

/// Bytes of a value of a fixed-size type.
fn fixed_size(ty: u32) -> Option<u64> {
    match ty {
        T_U8 | T_I8 | T_BOOL => Some(1),
        T_U16 | T_I16 => Some(2),
        T_U32 | T_I32 | T_F32 => Some(4),
        T_U64 | T_I64 | T_F64 => Some(8),
        _ => None,
    }
}

struct Walker<'r, R> {
    reader: &'r mut R,
    file_size: u64,
    /// Version 1 has 32-bit lengths, 2 and 3 64-bit.
    wide: bool,
    total_values: u64,
    total_string_bytes: u64,
}

fn too_large(what: impl Into<String>, value: u64, limit: u64) -> GgufHeaderError {
    GgufHeaderError::TooLarge {
        what: what.into(),
        value,
        limit,
    }
}

fn invalid(what: impl Into<String>, reason: impl Into<String>) -> GgufHeaderError {
    GgufHeaderError::Invalid {
        what: what.into(),
        reason: reason.into(),
    }
}

fn io(e: std::io::Error) -> GgufHeaderError {
    GgufHeaderError::Io(e.to_string())
}

impl<R: Read + Seek> Walker<'_, R> {
    fn bytes<const N: usize>(&mut self) -> Result<[u8; N], GgufHeaderError> {
        let mut b = [0u8; N];
        self.reader.read_exact(&mut b).map_err(io)?;
        Ok(b)
    }

    fn u32(&mut self) -> Result<u32, GgufHeaderError> {
        Ok(u32::from_le_bytes(self.bytes()?))
    }

    fn u64(&mut self) -> Result<u64, GgufHeaderError> {
        Ok(u64::from_le_bytes(self.bytes()?))
    }

    fn length(&mut self) -> Result<u64, GgufHeaderError> {
        if self.wide {
            self.u64()
        } else {
            self.u32().map(u64::from)
        }
    }

    fn remaining(&mut self) -> Result<u64, GgufHeaderError> {
        let pos = self.reader.stream_position().map_err(io)?;
        Ok(self.file_size.saturating_sub(pos))
    }

    fn skip(&mut self, n: u64, what: &str) -> Result<(), GgufHeaderError> {
        if n > self.remaining()? {
            return Err(invalid(what, "runs past the end of the file"));
        }
        let n = i64::try_from(n).map_err(|_| too_large(what, n, i64::MAX as u64))?;
        self.reader.seek(SeekFrom::Current(n)).map_err(io)?;
        Ok(())
    }

    /// A string's bytes, skipped (`keep`: returned, for keys and names).
    fn string(
        &mut self,
        what: &str,
        limit: u64,
        keep: bool,
    ) -> Result<Option<Vec<u8>>, GgufHeaderError> {
        let len = self.length()?;
        if len > limit {
            return Err(too_large(format!("{what} length"), len, limit));
        }
        self.total_string_bytes = self.total_string_bytes.saturating_add(len);
        if self.total_string_bytes > MAX_TOTAL_STRING_BYTES {
            return Err(too_large(
                "total string bytes",
                self.total_string_bytes,
                MAX_TOTAL_STRING_BYTES,
            ));
        }
        if !keep {
            self.skip(len, what)?;
            return Ok(None);
        }
        if len > self.remaining()? {
            return Err(invalid(what, "runs past the end of the file"));
        }
        let mut buf = vec![0u8; len as usize];
        self.reader.read_exact(&mut buf).map_err(io)?;
        Ok(Some(buf))
    }

    fn count_value(&mut self, n: u64) -> Result<(), GgufHeaderError> {
        self.total_values = self.total_values.saturating_add(n);
        if self.total_values > MAX_TOTAL_VALUES {
            return Err(too_large(
                "metadata values in all",
                self.total_values,
                MAX_TOTAL_VALUES,
            ));
        }
        Ok(())
    }

    /// One value of type `ty`; returns it as an integer when it is one (for `general.alignment`).
    fn value(&mut self, ty: u32, key: &str, depth: u32) -> Result<Option<i128>, GgufHeaderError> {
        self.count_value(1)?;
        if let Some(n) = fixed_size(ty) {
            let mut b = [0u8; 8];
            let n = n as usize;
            self.reader.read_exact(&mut b[..n]).map_err(io)?;
            let int = match ty {
                T_U8 => Some(i128::from(b[0])),
                T_I8 => Some(i128::from(b[0] as i8)),
                T_U16 => Some(i128::from(u16::from_le_bytes([b[0], b[1]]))),
                T_I16 => Some(i128::from(i16::from_le_bytes([b[0], b[1]]))),
                T_U32 => Some(i128::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))),
                T_I32 => Some(i128::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))),
                T_U64 => Some(i128::from(u64::from_le_bytes(b))),
                T_I64 => Some(i128::from(i64::from_le_bytes(b))),
                T_BOOL if b[0] > 1 => {
                    return Err(invalid(key, format!("bool byte {} is not 0 or 1", b[0])))
                }
                _ => None,
            };
            return Ok(int);
        }
        match ty {
            T_STRING => {
                self.string(&format!("value of `{key}`"), MAX_STRING_BYTES, false)?;
                Ok(None)
            }
            T_ARRAY => {
                if depth >= MAX_NESTING {
                    return Err(too_large(
                        format!("array nesting of `{key}`"),
                        u64::from(depth) + 1,
                        u64::from(MAX_NESTING),
                    ));
                }
                let elem = self.u32()?;
                let len = self.length()?;
                if len > MAX_ARRAY_ELEMENTS {
                    return Err(too_large(
                        format!("array length of `{key}`"),
                        len,
                        MAX_ARRAY_ELEMENTS,
                    ));
                }
                // Charge the whole array up front so a long one fails before it is walked.
                if self.total_values.saturating_add(len) > MAX_TOTAL_VALUES {
                    return Err(too_large(
                        "metadata values in all",
                        self.total_values.saturating_add(len),
                        MAX_TOTAL_VALUES,
                    ));
                }
                if let Some(size) = fixed_size(elem) {
                    // Fixed-size elements are skipped in one seek (candle checks their values).
                    self.total_values += len;
                    return self
                        .skip(len.saturating_mul(size), &format!("array `{key}`"))
                        .map(|()| None);
                }
                for _ in 0..len {
                    self.value(elem, key, depth + 1)?;
                }
                Ok(None)
            }
            other => Err(invalid(key, format!("unknown value type {other}"))),
        }
    }
}

/// Walks the header of the GGUF file in `reader` (from its current position) and checks it against
/// `limits`. The reader is left somewhere inside the file; seek back before parsing it again.
pub fn check_gguf_header<R: Read + Seek>(
    reader: &mut R,
) -> Result<GgufHeaderSummary, GgufHeaderError> {
    let start = reader.stream_position().map_err(io)?;
    let end = reader.seek(SeekFrom::End(0)).map_err(io)?;
    reader.seek(SeekFrom::Start(start)).map_err(io)?;
    let mut w = Walker {
        reader,
        file_size: end,
        wide: true,
        total_values: 0,
        total_string_bytes: 0,
    };
    let magic = w.u32()?;
    // candle accepts both byte orders of the magic (and then reads little-endian either way).
    if magic != 0x4655_4747 && magic != 0x4747_5546 {
        return Err(GgufHeaderError::Magic(magic));
    }
    let version = w.u32()?;
    if !(1..=3).contains(&version) {
        return Err(GgufHeaderError::Version(version));
    }
    w.wide = version >= 2;
    let tensor_count = w.length()?;
    let metadata_count = w.length()?;
    if tensor_count > MAX_TENSORS {
        return Err(too_large("tensor count", tensor_count, MAX_TENSORS));
    }
    if metadata_count > MAX_METADATA_ENTRIES {
        return Err(too_large(
            "metadata entry count",
            metadata_count,
            MAX_METADATA_ENTRIES,
        ));
    }
    let mut alignment = DEFAULT_ALIGNMENT;
    for _ in 0..metadata_count {
        let key = w
            .string("metadata key", MAX_KEY_BYTES, true)?
            .unwrap_or_default();
        let key = String::from_utf8_lossy(&key).into_owned();
        let ty = w.u32()?;
        let int = w.value(ty, &key, 0)?;
        if key.trim_end_matches('\0') == KEY_ALIGNMENT {
            alignment = check_alignment(ty, int)?;
        }
    }
    for _ in 0..tensor_count {
        let name = w
            .string("tensor name", MAX_KEY_BYTES, true)?
            .unwrap_or_default();
        let name = String::from_utf8_lossy(&name).into_owned();
        let n_dims = w.u32()?;
        if n_dims > MAX_TENSOR_DIMS {
            return Err(too_large(
                format!("dimensions of tensor `{name}`"),
                u64::from(n_dims),
                u64::from(MAX_TENSOR_DIMS),
            ));
        }
        let mut elements: u64 = 1;
        for _ in 0..n_dims {
            let dim = w.length()?;
            elements = elements.saturating_mul(dim);
        }
        if elements > MAX_TENSOR_ELEMENTS {
            return Err(too_large(
                format!("elements of tensor `{name}`"),
                elements,
                MAX_TENSOR_ELEMENTS,
            ));
        }
        let _dtype = w.u32()?;
        let offset = w.u64()?;
        if offset > w.file_size {
            return Err(invalid(
                format!("tensor `{name}`"),
                format!(
                    "data offset {offset} is past the end of the file (truncated or corrupt file?)"
                ),
            ));
        }
    }
    Ok(GgufHeaderSummary {
        version,
        tensor_count,
        metadata_count,
        alignment,
    })
}

/// `general.alignment` must be a positive power of two of an integer type candle reads (it ignores
/// 64-bit ones and would silently use 32, reading the tensors at the wrong offsets).
fn check_alignment(ty: u32, value: Option<i128>) -> Result<u64, GgufHeaderError> {
    let bad = |reason: String| invalid(KEY_ALIGNMENT, reason);
    if !matches!(ty, T_U8 | T_I8 | T_U16 | T_I16 | T_U32 | T_I32) {
        return Err(bad(format!(
            "must be a 32-bit or smaller integer (type {ty})"
        )));
    }
    let v = value.unwrap_or(0);
    if v <= 0 || v > i128::from(MAX_ALIGNMENT) || (v as u64).count_ones() != 1 {
        return Err(bad(format!(
            "{v} is not a power of two between 1 and {MAX_ALIGNMENT}"
        )));
    }
    Ok(v as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn header(version: u32, tensors: u64, kvs: &[(&str, u32, Vec<u8>)]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend(0x4655_4747u32.to_le_bytes());
        b.extend(version.to_le_bytes());
        b.extend(tensors.to_le_bytes());
        b.extend((kvs.len() as u64).to_le_bytes());
        for (k, ty, v) in kvs {
            b.extend((k.len() as u64).to_le_bytes());
            b.extend(k.as_bytes());
            b.extend(ty.to_le_bytes());
            b.extend(v);
        }
        b
    }

    fn check(bytes: Vec<u8>) -> Result<GgufHeaderSummary, GgufHeaderError> {
        check_gguf_header(&mut Cursor::new(bytes))
    }

    #[test]
    fn alignment_zero_and_non_powers_of_two_are_refused() {
        for v in [0u32, 3, 48, 1 << 20] {
            let err = check(header(
                3,
                0,
                &[(KEY_ALIGNMENT, T_U32, v.to_le_bytes().to_vec())],
            ))
            .unwrap_err();
            assert!(err.to_string().contains("general.alignment"), "{err}");
        }
        let ok = check(header(
            3,
            0,
            &[(KEY_ALIGNMENT, T_U32, 64u32.to_le_bytes().to_vec())],
        ));
        assert_eq!(ok.unwrap().alignment, 64);
        let err = check(header(
            3,
            0,
            &[(KEY_ALIGNMENT, T_U64, 32u64.to_le_bytes().to_vec())],
        ))
        .unwrap_err();
        assert!(err.to_string().contains("32-bit"), "{err}");
    }

    #[test]
    fn huge_counts_and_lengths_are_refused_before_reading() {
        let err = check(header(3, u64::MAX, &[])).unwrap_err();
        assert!(matches!(err, GgufHeaderError::TooLarge { .. }), "{err}");
        let mut array = T_U8.to_le_bytes().to_vec();
        array.extend((MAX_ARRAY_ELEMENTS + 1).to_le_bytes());
        let err = check(header(3, 0, &[("a", T_ARRAY, array)])).unwrap_err();
        assert!(err.to_string().contains("array length"), "{err}");
        let mut string = (MAX_STRING_BYTES + 1).to_le_bytes().to_vec();
        string.extend(b"xx");
        let err = check(header(3, 0, &[("s", T_STRING, string)])).unwrap_err();
        assert!(err.to_string().contains("value of `s` length"), "{err}");
    }

    #[test]
    fn truncated_headers_are_io_errors() {
        let mut b = header(
            3,
            0,
            &[(KEY_ALIGNMENT, T_U32, 32u32.to_le_bytes().to_vec())],
        );
        b.truncate(b.len() - 2);
        assert!(matches!(check(b).unwrap_err(), GgufHeaderError::Io(_)));
    }
}
