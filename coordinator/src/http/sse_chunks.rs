//! Streaming: turns the Solver's events into `chat.completion.chunk`s. The target's thinking (and the
//! accepted draft) go out as `delta.reasoning_content`, answer tokens as `delta.content`; the last chunk
//! carries `finish_reason` and the `scot` stats, followed by a usage-only chunk (empty `choices`) when
//! the client asked for `stream_options.include_usage`.

use scot_proto::solve_event::Event as SolveEventKind;
use scot_proto::{GeneratePhase, SolveEvent};

use super::api_types::{ChatCompletionChunk, ChunkChoice, Delta};
use super::completion::{finish_reason, scot_stats, usage, CompletionMeta};

pub struct ChunkBuilder {
    meta: CompletionMeta,
    include_usage: bool,
    streamed_reasoning: bool,
    streamed_content: bool,
}

impl ChunkBuilder {
    pub fn new(meta: CompletionMeta, include_usage: bool) -> Self {
        Self {
            meta,
            include_usage,
            streamed_reasoning: false,
            streamed_content: false,
        }
    }

    fn chunk(&self, delta: Delta, finish_reason: Option<&'static str>) -> ChatCompletionChunk {
        ChatCompletionChunk {
            id: self.meta.id.clone(),
            object: "chat.completion.chunk",
            created: self.meta.created,
            model: self.meta.model.clone(),
            choices: vec![ChunkChoice {
                index: 0,
                delta,
                finish_reason,
                logprobs: None,
            }],
            usage: None,
            scot: None,
        }
    }

    /// The opening chunk: the assistant role.
    pub fn opening(&self) -> ChatCompletionChunk {
        self.chunk(
            Delta {
                role: Some("assistant"),
                content: Some(String::new()),
                reasoning_content: None,
            },
            None,
        )
    }

    fn reasoning(&mut self, text: String) -> ChatCompletionChunk {
        self.streamed_reasoning = true;
        self.chunk(
            Delta {
                reasoning_content: Some(text),
                ..Default::default()
            },
            None,
        )
    }

    fn content(&mut self, text: String) -> ChatCompletionChunk {
        self.streamed_content = true;
        self.chunk(
            Delta {
                content: Some(text),
                ..Default::default()
            },
            None,
        )
    }

    /// The chunks one Solver event turns into (none for progress events).
    pub fn on_event(&mut self, event: &SolveEvent) -> Vec<ChatCompletionChunk> {
        match &event.event {
            Some(SolveEventKind::Token(token)) if !token.text.is_empty() => {
                if token.phase == GeneratePhase::Thinking as i32 {
                    vec![self.reasoning(token.text.clone())]
                } else {
                    vec![self.content(token.text.clone())]
                }
            }
            Some(SolveEventKind::Result(result)) => {
                let mut chunks = Vec::new();
                // Text that was not streamed token by token (draft-only answers) goes out whole.
                if !self.streamed_reasoning && !result.reasoning.is_empty() {
                    chunks.push(self.reasoning(result.reasoning.clone()));
                }
                if !self.streamed_content && !result.answer.is_empty() {
                    chunks.push(self.content(result.answer.clone()));
                }
                let stats = result.stats.clone().unwrap_or_default();
                let mut last = self.chunk(Delta::default(), Some(finish_reason(&stats)));
                last.scot = Some(scot_stats(&result.request_id, &stats));
                chunks.push(last);
                if self.include_usage {
                    let mut usage_chunk = self.chunk(Delta::default(), None);
                    usage_chunk.choices.clear();
                    usage_chunk.usage = Some(usage(&stats));
                    chunks.push(usage_chunk);
                }
                chunks
            }
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scot_proto::{AnswerPath, GenerateToken, SelectionResult, SolveResult, SolveStats};

    fn builder(include_usage: bool) -> ChunkBuilder {
        ChunkBuilder::new(
            CompletionMeta {
                id: "chatcmpl-x".into(),
                created: 5,
                model: "scot".into(),
            },
            include_usage,
        )
    }

    fn token(text: &str, phase: GeneratePhase) -> SolveEvent {
        SolveEvent {
            event: Some(SolveEventKind::Token(GenerateToken {
                text: text.into(),
                phase: phase as i32,
                token_ids: Vec::new(),
            })),
        }
    }

    fn result(reasoning: &str, answer: &str) -> SolveEvent {
        SolveEvent {
            event: Some(SolveEventKind::Result(SolveResult {
                request_id: "x".into(),
                reasoning: reasoning.into(),
                answer: answer.into(),
                stats: Some(SolveStats {
                    path: AnswerPath::TargetCorrection as i32,
                    prompt_tokens: 10,
                    target_thinking_tokens: 3,
                    answer_tokens: 2,
                    ..Default::default()
                }),
            })),
        }
    }

    fn json(chunk: &ChatCompletionChunk) -> serde_json::Value {
        serde_json::to_value(chunk).unwrap()
    }

    #[test]
    fn thinking_then_answer_then_stats_and_usage() {
        let mut b = builder(true);
        let opening = json(&b.opening());
        assert_eq!(opening["object"], "chat.completion.chunk");
        assert_eq!(opening["choices"][0]["delta"]["role"], "assistant");
        assert!(b
            .on_event(&SolveEvent {
                event: Some(SolveEventKind::Selection(SelectionResult::default()))
            })
            .is_empty());
        let thinking = json(&b.on_event(&token("hmm", GeneratePhase::Thinking))[0]);
        assert_eq!(thinking["choices"][0]["delta"]["reasoning_content"], "hmm");
        assert!(thinking["choices"][0]["delta"].get("content").is_none());
        let answer = json(&b.on_event(&token("5", GeneratePhase::Answer))[0]);
        assert_eq!(answer["choices"][0]["delta"]["content"], "5");
        assert!(answer["choices"][0]["finish_reason"].is_null());
        let tail: Vec<_> = b.on_event(&result("hmm", "5")).iter().map(json).collect();
        assert_eq!(tail.len(), 2, "{tail:?}");
        assert_eq!(tail[0]["choices"][0]["finish_reason"], "stop");
        assert_eq!(tail[0]["scot"]["path"], "target_correction");
        assert_eq!(tail[1]["choices"].as_array().unwrap().len(), 0);
        assert_eq!(tail[1]["usage"]["completion_tokens"], 5);
        assert_eq!(tail[1]["usage"]["prompt_tokens"], 10);
    }

    #[test]
    fn unstreamed_text_is_sent_whole_and_usage_is_optional() {
        let mut b = builder(false);
        let tail: Vec<_> = b
            .on_event(&result("thought", "answer"))
            .iter()
            .map(json)
            .collect();
        assert_eq!(tail.len(), 3);
        assert_eq!(
            tail[0]["choices"][0]["delta"]["reasoning_content"],
            "thought"
        );
        assert_eq!(tail[1]["choices"][0]["delta"]["content"], "answer");
        assert!(tail[2].get("usage").is_none());
        assert!(b.on_event(&token("", GeneratePhase::Answer)).is_empty());
    }
}
