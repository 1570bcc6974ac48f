//! Streamed tokens grouped into fewer messages, as a request's `StreamChunking` asks: every message
//! a node streams costs the relaying coordinator about the same, whatever it holds.

use std::time::{Duration, Instant};

use scot_proto::StreamChunking;

/// When held tokens go out (see `StreamChunking` in the contract).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChunkPolicy {
    /// 0: no bound by count.
    max_tokens: usize,
    /// None: no bound by age.
    max_wait: Option<Duration>,
}

impl ChunkPolicy {
    /// The request's policy; unset (or both bounds 0): one message per token.
    pub fn from_request(chunking: Option<&StreamChunking>) -> Self {
        let Some(c) = chunking else {
            return Self::default();
        };
        Self {
            max_tokens: c.max_tokens as usize,
            max_wait: (c.max_ms > 0).then(|| Duration::from_millis(u64::from(c.max_ms))),
        }
    }

    fn per_token(&self) -> bool {
        self.max_tokens == 0 && self.max_wait.is_none()
    }
}

/// Text and the token ids it came from, ready to stream.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TokenChunk {
    pub text: String,
    pub token_ids: Vec<u32>,
}

/// Holds streamed tokens until the policy lets them go. Text held back by the decoder (half a UTF-8
/// character) keeps its ids waiting for the next text, so a message never splits a character. The
/// age bound is checked as tokens arrive: a message is at most `max_wait` plus one token late.
#[derive(Debug)]
pub struct TokenChunker {
    policy: ChunkPolicy,
    held: TokenChunk,
    oldest: Option<Instant>,
}

impl TokenChunker {
    pub fn new(policy: ChunkPolicy) -> Self {
        Self {
            policy,
            held: TokenChunk::default(),
            oldest: None,
        }
    }

    /// Adds one token and its newly decoded text; returns a chunk when one is due.
    pub fn push(&mut self, token: u32, text: &str) -> Option<TokenChunk> {
        self.push_at(token, text, Instant::now())
    }

    fn push_at(&mut self, token: u32, text: &str, now: Instant) -> Option<TokenChunk> {
        self.held.token_ids.push(token);
        self.held.text.push_str(text);
        let oldest = *self.oldest.get_or_insert(now);
        if self.held.text.is_empty() {
            return None;
        }
        let p = &self.policy;
        let full = p.max_tokens > 0 && self.held.token_ids.len() >= p.max_tokens;
        let old = p
            .max_wait
            .is_some_and(|wait| now.duration_since(oldest) >= wait);
        (p.per_token() || full || old).then(|| self.take())
    }

    /// Whatever is held (at the end of a phase); None when nothing is.
    pub fn flush(&mut self) -> Option<TokenChunk> {
        (!self.held.token_ids.is_empty() || !self.held.text.is_empty()).then(|| self.take())
    }

    fn take(&mut self) -> TokenChunk {
        self.oldest = None;
        std::mem::take(&mut self.held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(max_tokens: u32, max_ms: u32) -> ChunkPolicy {
        ChunkPolicy::from_request(Some(&StreamChunking { max_tokens, max_ms }))
    }

    #[test]
    fn unset_or_zero_streams_every_token_with_text() {
        for p in [ChunkPolicy::from_request(None), policy(0, 0)] {
            let mut c = TokenChunker::new(p);
            assert_eq!(
                c.push(1, "a"),
                Some(TokenChunk {
                    text: "a".into(),
                    token_ids: vec![1]
                })
            );
            // Half a character: held, then sent with the rest of it.
            assert_eq!(c.push(2, ""), None);
            assert_eq!(
                c.push(3, "é"),
                Some(TokenChunk {
                    text: "é".into(),
                    token_ids: vec![2, 3]
                })
            );
            assert_eq!(c.flush(), None);
        }
    }

    #[test]
    fn a_chunk_goes_out_at_the_count_or_the_age_whichever_first() {
        let mut c = TokenChunker::new(policy(3, 0));
        assert_eq!(c.push(1, "a"), None);
        assert_eq!(c.push(2, "b"), None);
        let chunk = c.push(3, "c").unwrap();
        assert_eq!(
            (chunk.text.as_str(), chunk.token_ids),
            ("abc", vec![1, 2, 3])
        );
        assert_eq!(c.push(4, "d"), None);
        assert_eq!(c.flush().unwrap().token_ids, vec![4], "the phase's end");

        let start = Instant::now();
        let mut c = TokenChunker::new(policy(100, 50));
        assert_eq!(c.push_at(1, "a", start), None);
        assert_eq!(c.push_at(2, "b", start + Duration::from_millis(49)), None);
        let chunk = c
            .push_at(3, "c", start + Duration::from_millis(50))
            .unwrap();
        assert_eq!(chunk.token_ids, vec![1, 2, 3]);
        // The age counts from the oldest token held now.
        assert_eq!(c.push_at(4, "d", start + Duration::from_millis(60)), None);
        assert!(c
            .push_at(5, "e", start + Duration::from_millis(110))
            .is_some());
    }

    #[test]
    fn ids_without_text_wait_even_when_the_count_is_reached() {
        let mut c = TokenChunker::new(policy(2, 0));
        assert_eq!(c.push(1, ""), None);
        assert_eq!(c.push(2, ""), None);
        assert_eq!(c.push(3, "x").unwrap().token_ids, vec![1, 2, 3]);
        assert_eq!(c.push(4, "").map(|_| ()), None);
        assert_eq!(
            c.flush(),
            Some(TokenChunk {
                text: String::new(),
                token_ids: vec![4]
            }),
            "ids left at the end still go out: a migration resumes from them"
        );
    }
}
