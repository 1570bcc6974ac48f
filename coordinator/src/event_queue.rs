//! A request's events on their way to its client, bounded without making anyone wait: answer or
//! thinking tokens the client has not read yet are merged into one event of their phase (as vLLM's
//! per-request output collector merges deltas), so a slow or stalled reader holds at most the text it
//! has not read plus a handful of events, never one message per token, and the nodes and the request
//! never wait on a client (a stalled reader cannot hold a node's engine slot). The request's deadline
//! bounds how long an unread stream is kept. Dropping the receiver (client gone) is what `closed` sees.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use futures::Stream;
use scot_proto::solve_event::Event as SolveEventKind;
use scot_proto::SolveEvent;
use tokio::sync::Notify;
use tonic::Status;

pub type EventResult = Result<SolveEvent, Status>;

/// The events as a stream (the gRPC response body, the SSE body).
pub type EventStream = Pin<Box<dyn Stream<Item = EventResult> + Send>>;

#[derive(Default)]
struct State {
    queue: VecDeque<EventResult>,
    senders: usize,
    receiver_gone: bool,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    readable: Notify,
    closed: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A new queue: the request's end and the client's end.
pub fn event_queue() -> (EventSender, EventReceiver) {
    let shared = Arc::new(Shared::default());
    shared.lock().senders = 1;
    (EventSender(shared.clone()), EventReceiver(shared))
}

pub struct EventSender(Arc<Shared>);

impl EventSender {
    /// Queues `event` without waiting; a token of the same phase as the last unread event joins it.
    /// Dropped when the client is gone.
    pub fn send(&self, event: EventResult) {
        let mut state = self.0.lock();
        if state.receiver_gone {
            return;
        }
        if let (
            Some(Ok(SolveEvent {
                event: Some(SolveEventKind::Token(unread)),
            })),
            Ok(SolveEvent {
                event: Some(SolveEventKind::Token(token)),
            }),
        ) = (state.queue.back_mut(), &event)
        {
            if unread.phase == token.phase {
                unread.text.push_str(&token.text);
                unread.token_ids.extend_from_slice(&token.token_ids);
                return;
            }
        }
        state.queue.push_back(event);
        drop(state);
        self.0.readable.notify_one();
    }

    /// Resolves once the receiver is dropped (the client went away).
    pub async fn closed(&self) {
        loop {
            let notified = self.0.closed.notified();
            if self.0.lock().receiver_gone {
                return;
            }
            notified.await;
        }
    }
}

impl Clone for EventSender {
    fn clone(&self) -> Self {
        self.0.lock().senders += 1;
        Self(self.0.clone())
    }
}

impl Drop for EventSender {
    fn drop(&mut self) {
        let last = {
            let mut state = self.0.lock();
            state.senders -= 1;
            state.senders == 0
        };
        if last {
            self.0.readable.notify_one();
        }
    }
}

pub struct EventReceiver(Arc<Shared>);

impl EventReceiver {
    /// The next event; None once every sender is gone and everything was read.
    pub async fn recv(&mut self) -> Option<EventResult> {
        loop {
            // Created before the check so a send in between is not missed (notify_one keeps a permit).
            let notified = self.0.readable.notified();
            {
                let mut state = self.0.lock();
                if let Some(event) = state.queue.pop_front() {
                    return Some(event);
                }
                if state.senders == 0 {
                    return None;
                }
            }
            notified.await;
        }
    }

    /// Unread events now (merged tokens count once).
    #[cfg(test)]
    fn unread(&self) -> usize {
        self.0.lock().queue.len()
    }

    pub fn into_stream(self) -> EventStream {
        Box::pin(futures::stream::unfold(self, |mut receiver| async move {
            receiver.recv().await.map(|event| (event, receiver))
        }))
    }
}

impl Drop for EventReceiver {
    fn drop(&mut self) {
        {
            let mut state = self.0.lock();
            state.receiver_gone = true;
            state.queue.clear();
        }
        self.0.closed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use scot_proto::{DraftingStarted, GeneratePhase, GenerateToken};

    use super::*;

    fn token(text: &str, phase: GeneratePhase) -> EventResult {
        Ok(SolveEvent {
            event: Some(SolveEventKind::Token(GenerateToken {
                text: text.to_string(),
                phase: phase as i32,
                token_ids: Vec::new(),
            })),
        })
    }

    fn text(event: &EventResult) -> (String, i32) {
        match event {
            Ok(SolveEvent {
                event: Some(SolveEventKind::Token(t)),
            }) => (t.text.clone(), t.phase),
            other => panic!("not a token: {other:?}"),
        }
    }

    #[tokio::test]
    async fn unread_tokens_of_one_phase_merge_and_nothing_else_does() {
        let (tx, mut rx) = event_queue();
        tx.send(Ok(SolveEvent {
            event: Some(SolveEventKind::DraftingStarted(DraftingStarted {
                n: 2,
                nodes: vec![],
            })),
        }));
        for piece in ["Two ", "plus ", "three"] {
            tx.send(token(piece, GeneratePhase::Thinking));
        }
        tx.send(token("\\boxed{", GeneratePhase::Answer));
        tx.send(token("5}", GeneratePhase::Answer));
        tx.send(Err(Status::internal("late")));
        tx.send(token("after the error", GeneratePhase::Answer));
        assert_eq!(rx.unread(), 5);
        assert!(matches!(
            rx.recv().await,
            Some(Ok(SolveEvent {
                event: Some(SolveEventKind::DraftingStarted(_))
            }))
        ));
        let thinking = GeneratePhase::Thinking as i32;
        let answer = GeneratePhase::Answer as i32;
        assert_eq!(
            text(&rx.recv().await.unwrap()),
            ("Two plus three".into(), thinking)
        );
        assert_eq!(
            text(&rx.recv().await.unwrap()),
            ("\\boxed{5}".into(), answer)
        );
        assert!(rx.recv().await.unwrap().is_err());
        assert_eq!(
            text(&rx.recv().await.unwrap()),
            ("after the error".into(), answer)
        );
        drop(tx);
        assert!(rx.recv().await.is_none());
    }

    #[tokio::test]
    async fn a_reader_that_never_reads_holds_one_event_per_phase() {
        let (tx, mut rx) = event_queue();
        for _ in 0..100_000 {
            tx.send(token("x", GeneratePhase::Answer));
        }
        assert_eq!(rx.unread(), 1);
        assert_eq!(text(&rx.recv().await.unwrap()).0.len(), 100_000);
        // Read as they come, tokens stay apart.
        tx.send(token("a", GeneratePhase::Answer));
        assert_eq!(text(&rx.recv().await.unwrap()).0, "a");
        tx.send(token("b", GeneratePhase::Answer));
        assert_eq!(text(&rx.recv().await.unwrap()).0, "b");
    }

    #[tokio::test]
    async fn the_receiver_waits_for_senders_and_ends_with_the_last() {
        let (tx, mut rx) = event_queue();
        let second = tx.clone();
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(event) = rx.recv().await {
                got.push(text(&event).0);
            }
            got
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        tx.send(token("one", GeneratePhase::Answer));
        drop(tx);
        tokio::time::sleep(Duration::from_millis(20)).await;
        second.send(token("two", GeneratePhase::Thinking));
        drop(second);
        assert_eq!(reader.await.unwrap(), ["one", "two"]);
    }

    #[tokio::test]
    async fn dropping_the_receiver_closes_and_later_events_are_dropped() {
        let (tx, rx) = event_queue();
        let waiter = {
            let tx = tx.clone();
            tokio::spawn(async move { tx.closed().await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        drop(rx);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("closed() did not see the receiver go")
            .unwrap();
        tx.send(token("nobody reads this", GeneratePhase::Answer));
        assert_eq!(tx.0.lock().queue.len(), 0);
        // Already closed: resolves at once.
        tokio::time::timeout(Duration::from_secs(5), tx.closed())
            .await
            .unwrap();
    }
}
