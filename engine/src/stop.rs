//! Per-sequence output bookkeeping: incremental UTF-8-safe detokenization, stop strings that may
//! span tokens, EOS and length limits.

use std::time::Instant;

use crate::error::Result;
use crate::generation::{FinishReason, SequenceOutput, StopCriteria, TokenEvent};
use crate::tokenizer::TextTokenizer;

/// Decodes a growing token list piece by piece. Each step decodes a short window (the tokens since
/// the last emitted text plus a few before, for context-dependent decoders) instead of everything,
/// and holds text back while it ends in an incomplete UTF-8 sequence.
#[derive(Debug, Default)]
pub(crate) struct IncrementalDecoder {
    tokens: Vec<u32>,
    prefix_offset: usize,
    read_offset: usize,
}

impl IncrementalDecoder {
    pub fn push(&mut self, tokenizer: &TextTokenizer, token: u32) -> Result<String> {
        self.tokens.push(token);
        let prefix = tokenizer.decode(&self.tokens[self.prefix_offset..self.read_offset], true)?;
        let full = tokenizer.decode(&self.tokens[self.prefix_offset..], true)?;
        if full.len() > prefix.len()
            && !full.ends_with('\u{FFFD}')
            && full.is_char_boundary(prefix.len())
        {
            let new = full[prefix.len()..].to_string();
            self.prefix_offset = self.read_offset;
            self.read_offset = self.tokens.len();
            return Ok(new);
        }
        Ok(String::new())
    }

    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }
}

/// One sequence being generated: its streamed text, stop checks and final output.
pub(crate) struct SequenceRun<'a> {
    tokenizer: &'a TextTokenizer,
    stop: &'a StopCriteria,
    eos: &'a [u32],
    decoder: IncrementalDecoder,
    text: String,
    /// Longest stop string in bytes, to bound the re-scanned tail.
    longest_stop: usize,
    started: Instant,
    /// Byte offset in `text` where a stop string matched.
    stop_at: Option<usize>,
}

impl<'a> SequenceRun<'a> {
    pub fn new(
        tokenizer: &'a TextTokenizer,
        stop: &'a StopCriteria,
        eos: &'a [u32],
        started: Instant,
    ) -> Self {
        Self {
            tokenizer,
            stop,
            eos,
            decoder: IncrementalDecoder::default(),
            text: String::new(),
            longest_stop: stop.stop_strings.iter().map(String::len).max().unwrap_or(0),
            started,
            stop_at: None,
        }
    }

    pub fn generated(&self) -> usize {
        self.decoder.tokens().len()
    }

    /// True when no token may be generated at all (`max_new_tokens == 0`).
    pub fn exhausted(&self) -> bool {
        self.generated() >= self.stop.max_new_tokens
    }

    /// Records a sampled token; returns its event and, if the sequence is now done, why.
    pub fn accept(&mut self, token: u32) -> Result<(TokenEvent, Option<FinishReason>)> {
        let index = self.generated();
        let piece = self.decoder.push(self.tokenizer, token)?;
        let scan_from = self
            .text
            .len()
            .saturating_sub(self.longest_stop.saturating_sub(1));
        self.text.push_str(&piece);
        let event = TokenEvent {
            token,
            text: piece,
            index,
        };
        if self.stop.stop_at_eos && self.eos.contains(&token) {
            return Ok((event, Some(FinishReason::Eos)));
        }
        if !event.text.is_empty() {
            if let Some((at, s)) = self.find_stop(scan_from) {
                self.stop_at = Some(at);
                return Ok((event, Some(FinishReason::StopString(s))));
            }
        }
        if self.generated() >= self.stop.max_new_tokens {
            return Ok((event, Some(FinishReason::Length)));
        }
        Ok((event, None))
    }

    /// The earliest stop string occurrence starting at or after byte `from` (rounded down to a
    /// char boundary).
    fn find_stop(&self, from: usize) -> Option<(usize, String)> {
        let mut from = from.min(self.text.len());
        while !self.text.is_char_boundary(from) {
            from -= 1;
        }
        let tail = &self.text[from..];
        self.stop
            .stop_strings
            .iter()
            .filter(|s| !s.is_empty())
            .filter_map(|s| tail.find(s.as_str()).map(|i| (from + i, s.clone())))
            .min_by_key(|(i, _)| *i)
    }

    pub fn finish(self, reason: FinishReason) -> Result<SequenceOutput> {
        let text = match self.stop_at {
            Some(at) => self.text[..at].to_string(),
            // A full decode also flushes a trailing incomplete character held back while streaming.
            None => self.tokenizer.decode(self.decoder.tokens(), true)?,
        };
        Ok(SequenceOutput {
            tokens: self.decoder.tokens().to_vec(),
            text,
            finish_reason: reason,
            elapsed: self.started.elapsed(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn smollm2_tokenizer() -> TextTokenizer {
        let dir = std::env::var("SCOT_MODEL_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|_| {
                std::path::PathBuf::from(std::env::var("HOME").unwrap_or_default())
                    .join(".cache/scot/models")
            });
        let path = dir.join("smollm2-135m-instruct-q4_1.gguf");
        let mut file = std::fs::File::open(&path).unwrap_or_else(|_| {
            panic!("{} is missing: run scripts/fetch-models.sh", path.display())
        });
        let content = candle_core::quantized::gguf_file::Content::read(&mut file).unwrap();
        TextTokenizer::from_gguf(&content, &path).unwrap()
    }

    #[test]
    fn incremental_decoding_holds_back_partial_utf8_and_matches_full_decode() {
        let tok = smollm2_tokenizer();
        let text = "Café 🙂 naïve — 日本語 ok";
        let ids = tok.encode(text, false).unwrap();
        let mut dec = IncrementalDecoder::default();
        let mut streamed = String::new();
        let mut empty_pieces = 0;
        for &id in &ids {
            let piece = dec.push(&tok, id).unwrap();
            if piece.is_empty() {
                empty_pieces += 1;
            }
            streamed.push_str(&piece);
        }
        assert_eq!(streamed, tok.decode(&ids, true).unwrap());
        assert_eq!(streamed, text);
        assert!(
            empty_pieces > 0,
            "multi-byte characters span byte-level tokens"
        );
    }

    #[test]
    fn stop_string_across_tokens_cuts_text_and_eos_and_length_stop() {
        let tok = smollm2_tokenizer();
        let ids = tok
            .encode("Let me think. </think> The answer is 4.", false)
            .unwrap();
        let stop = StopCriteria {
            max_new_tokens: 100,
            stop_strings: vec!["</think>".into()],
            stop_at_eos: true,
        };
        let mut run = SequenceRun::new(&tok, &stop, &[2], Instant::now());
        let mut finished = None;
        let mut used = 0;
        for &id in &ids {
            used += 1;
            if let (_, Some(reason)) = run.accept(id).unwrap() {
                finished = Some(reason);
                break;
            }
        }
        assert_eq!(finished, Some(FinishReason::StopString("</think>".into())));
        assert!(
            used < ids.len(),
            "stopped at the stop string, not at the end"
        );
        let out = run
            .finish(FinishReason::StopString("</think>".into()))
            .unwrap();
        assert_eq!(out.text, "Let me think. ");
        assert_eq!(out.tokens, ids[..used]);

        let mut run = SequenceRun::new(&tok, &stop, &[2], Instant::now());
        assert_eq!(run.accept(ids[0]).unwrap().1, None);
        assert_eq!(run.accept(2).unwrap().1, Some(FinishReason::Eos));

        let short = StopCriteria {
            max_new_tokens: 2,
            ..stop.clone()
        };
        let mut run = SequenceRun::new(&tok, &short, &[2], Instant::now());
        assert_eq!(run.accept(ids[0]).unwrap().1, None);
        assert_eq!(run.accept(ids[1]).unwrap().1, Some(FinishReason::Length));
    }
}
