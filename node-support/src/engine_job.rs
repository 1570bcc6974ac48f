//! Engine work runs on blocking threads, never on the async runtime, once the [`EngineGate`] gave it
//! a turn and its KV room. Streaming jobs are cancelled when the client drops the stream or the
//! caller's deadline passes (the engine checks the CancelToken between decoding steps and prefill
//! chunks); their messages go through a bounded buffer, so a caller that reads slowly slows its own
//! job instead of growing the node's memory. A job that fails because a tensor-parallel rank failed
//! reports that to the gate's [`NodeFailure`](crate::NodeFailure) (health NOT_SERVING) before its
//! caller sees the error.

use std::time::Duration;

use scot_engine::CancelToken;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::Status;
use tracing::Instrument;

use crate::engine_gate::Admitted;
use crate::kv_budget::KvNeed;

/// Messages of one stream buffered between the engine and the caller.
pub const STREAM_BUFFER: usize = 256;

/// How long the last message of a stream (an error) waits for room before it is given up.
const LAST_MESSAGE_WAIT: Duration = Duration::from_secs(5);

/// Where a streaming job sends its messages, from its engine thread.
#[derive(Debug, Clone)]
pub struct JobSender<T> {
    tx: mpsc::Sender<Result<T, Status>>,
    stopped: CancellationToken,
}

impl<T> JobSender<T> {
    /// A sender whose waits for room end when `stopped` fires (the job was cancelled).
    pub fn new(tx: mpsc::Sender<Result<T, Status>>, stopped: CancellationToken) -> Self {
        Self { tx, stopped }
    }

    /// A sender and its receiver for a job run outside a stream (tests, tools): `capacity` messages
    /// fit before `send` waits for the receiver.
    pub fn buffered(capacity: usize) -> (Self, mpsc::Receiver<Result<T, Status>>) {
        let (tx, rx) = mpsc::channel(capacity);
        (Self::new(tx, CancellationToken::new()), rx)
    }

    /// Sends one message, waiting while the buffer is full (the caller reads slower than the engine
    /// writes). False once the caller is gone or the job was stopped. Call it from a blocking
    /// thread, never from async code.
    pub fn send(&self, message: Result<T, Status>) -> bool {
        match self.tx.try_send(message) {
            Ok(()) => true,
            Err(TrySendError::Closed(_)) => false,
            Err(TrySendError::Full(message)) => futures::executor::block_on(async {
                tokio::select! {
                    sent = self.tx.send(message) => sent.is_ok(),
                    () = self.stopped.cancelled() => false,
                }
            }),
        }
    }
}

/// Runs `job` on a blocking thread once `admitted` got a turn and `need`'s KV room, and returns its
/// message stream (a need beyond the node's whole budget is refused before waiting). The job gets a
/// CancelToken that fires when the receiver is dropped or `deadline` passes; an `Err` it returns ends
/// the stream with that status.
pub fn spawn_engine_stream<T, F>(
    admitted: Admitted,
    need: KvNeed,
    deadline: Option<Duration>,
    job: F,
) -> Result<ReceiverStream<Result<T, Status>>, Status>
where
    T: Send + 'static,
    F: FnOnce(&CancelToken, &JobSender<T>) -> Result<(), Status> + Send + 'static,
{
    admitted.check(need)?;
    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
    let gate = admitted.gate().clone();
    let deadline = deadline.map(|d| Instant::now() + d);
    let span = tracing::Span::current();
    tokio::spawn(
        async move {
            let expired = expiry(deadline);
            tokio::pin!(expired);
            let ticket = tokio::select! {
                ticket = admitted.turn(need) => match ticket {
                    Ok(ticket) => ticket,
                    Err(status) => {
                        send_last(&tx, status).await;
                        return;
                    }
                },
                _ = tx.closed() => return,
                _ = &mut expired => {
                    send_last(&tx, deadline_status()).await;
                    return;
                }
            };
            let cancel = CancelToken::new();
            let stopped = CancellationToken::new();
            let job_cancel = cancel.clone();
            let job_tx = JobSender::new(tx.clone(), stopped.clone());
            let stop = || {
                cancel.cancel();
                stopped.cancel();
            };
            let mut handle = tokio::task::spawn_blocking(move || {
                let _ticket = ticket;
                job(&job_cancel, &job_tx)
            });
            let joined = tokio::select! {
                joined = &mut handle => joined,
                _ = tx.closed() => {
                    tracing::info!("client dropped the stream; cancelling");
                    stop();
                    handle.await
                }
                _ = &mut expired => {
                    tracing::info!("deadline passed; cancelling");
                    stop();
                    let joined = handle.await;
                    send_last(&tx, deadline_status()).await;
                    joined
                }
            };
            let result = job_result(joined);
            if let Err(status) = gate.settle(result).await {
                send_last(&tx, status).await;
            }
        }
        .instrument(span),
    );
    Ok(ReceiverStream::new(rx))
}

/// Runs a unary engine job on a blocking thread once `admitted` got a turn and `need`'s KV room. The
/// job's CancelToken fires when `deadline` passes or the caller stops waiting (its call was
/// cancelled); a deadline that passes while the job waits in line answers DEADLINE_EXCEEDED without
/// running it.
pub async fn run_engine_job<T, F>(
    admitted: Admitted,
    need: KvNeed,
    deadline: Option<Duration>,
    job: F,
) -> Result<T, Status>
where
    T: Send + 'static,
    F: FnOnce(&CancelToken) -> Result<T, Status> + Send + 'static,
{
    admitted.check(need)?;
    let gate = admitted.gate().clone();
    let expired = expiry(deadline.map(|d| Instant::now() + d));
    tokio::pin!(expired);
    let ticket = tokio::select! {
        ticket = admitted.turn(need) => ticket?,
        _ = &mut expired => return Err(deadline_status()),
    };
    let cancel = CancelToken::new();
    // Dropped with this future (the caller went away) or at the deadline: the job stops at its next
    // check.
    let _cancel_on_drop = CancelOnDrop(cancel.clone());
    let job_cancel = cancel.clone();
    let mut handle = tokio::task::spawn_blocking(move || {
        let _ticket = ticket;
        job(&job_cancel)
    });
    let joined = tokio::select! {
        joined = &mut handle => joined,
        _ = &mut expired => {
            tracing::info!("deadline passed; cancelling");
            cancel.cancel();
            let _ = handle.await;
            return Err(deadline_status());
        }
    };
    let result = job_result(joined);
    gate.settle(result).await
}

/// A finished blocking job's result; a panic in it is INTERNAL (and logged), never the node's end.
fn job_result<T>(joined: Result<Result<T, Status>, tokio::task::JoinError>) -> Result<T, Status> {
    joined.unwrap_or_else(|e| {
        tracing::error!(error = %e, "engine job panicked");
        Err(Status::internal("engine job failed unexpectedly"))
    })
}

/// A stream's last message (an error): waits a little for room, then gives up (the caller stopped
/// reading; the stream ends when the job's task does).
async fn send_last<T>(tx: &mpsc::Sender<Result<T, Status>>, status: Status) {
    let _ = tokio::time::timeout(LAST_MESSAGE_WAIT, tx.send(Err(status))).await;
}

/// Cancels its token when dropped.
struct CancelOnDrop(CancelToken);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// Resolves when `deadline` passes; never without one.
async fn expiry(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn deadline_status() -> Status {
    Status::deadline_exceeded("the caller's deadline passed")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine_gate::EngineGate;
    use crate::kv_budget::KvBudget;
    use crate::node_failure::RankFailure;
    use std::sync::Arc;
    use tokio_stream::StreamExt;

    const NEED: KvNeed = KvNeed {
        sequences: 1,
        positions: 16,
    };

    fn gate(running: usize, queued: usize) -> EngineGate {
        EngineGate::new(running, queued, KvBudget::unlimited(1, 1024), 1024)
    }

    fn stream<T, F>(
        gate: &EngineGate,
        deadline: Option<Duration>,
        job: F,
    ) -> ReceiverStream<Result<T, Status>>
    where
        T: Send + 'static,
        F: FnOnce(&CancelToken, &JobSender<T>) -> Result<(), Status> + Send + 'static,
    {
        spawn_engine_stream(gate.admit().expect("admitted"), NEED, deadline, job).expect("started")
    }

    async fn unary<T, F>(gate: &EngineGate, deadline: Option<Duration>, job: F) -> Result<T, Status>
    where
        T: Send + 'static,
        F: FnOnce(&CancelToken) -> Result<T, Status> + Send + 'static,
    {
        run_engine_job(gate.admit()?, NEED, deadline, job).await
    }

    #[tokio::test]
    async fn dropping_the_stream_cancels_the_job() {
        let gate = gate(1, 4);
        let (seen_tx, seen_rx) = std::sync::mpsc::channel();
        let stream = stream::<u32, _>(&gate, None, move |cancel, tx| {
            let _ = tx.send(Ok(1));
            while !cancel.is_cancelled() {
                std::thread::sleep(Duration::from_millis(5));
            }
            let _ = seen_tx.send(true);
            Ok(())
        });
        let mut stream = stream;
        assert_eq!(stream.next().await.unwrap().unwrap(), 1);
        drop(stream);
        let cancelled =
            tokio::task::spawn_blocking(move || seen_rx.recv_timeout(Duration::from_secs(10)))
                .await
                .unwrap();
        assert_eq!(cancelled, Ok(true));
    }

    #[tokio::test]
    async fn deadline_cancels_and_reports() {
        let gate = gate(1, 4);
        let mut stream = stream::<u32, _>(&gate, Some(Duration::from_millis(50)), |cancel, _tx| {
            while !cancel.is_cancelled() {
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(())
        });
        let status = stream.next().await.unwrap().unwrap_err();
        assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
    }

    #[tokio::test]
    async fn unary_jobs_return_their_value() {
        let gate = gate(1, 4);
        assert_eq!(unary(&gate, None, |_| Ok(7)).await.unwrap(), 7);
        let err = unary::<u32, _>(&gate, None, |_| Err(Status::invalid_argument("x")))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
    }

    #[tokio::test]
    async fn a_rank_failure_closes_the_gate() {
        let gate = gate(1, 4);
        let failure = RankFailure {
            rank: 1,
            message: "tensor-parallel rank 1 failed: boom".into(),
        };
        let failed = failure.clone();
        let err = unary::<u32, _>(&gate, None, move |_| Err(failed.status()))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unavailable);
        assert_eq!(gate.failure().failed(), Some(failure.clone()));
        // Later jobs are turned away without running.
        let err = unary::<u32, _>(&gate, None, |_| panic!("must not run"))
            .await
            .unwrap_err();
        assert_eq!(RankFailure::from_status(&err), Some(failure.clone()));
        let status = gate.admit().err().expect("refused");
        assert_eq!(RankFailure::from_status(&status), Some(failure));
    }

    #[tokio::test]
    async fn a_full_gate_refuses_at_once_and_a_draining_one_finishes_what_it_took() {
        let gate = gate(1, 1);
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let release_rx = Arc::new(std::sync::Mutex::new(release_rx));
        let running = {
            let release = release_rx.clone();
            stream::<u32, _>(&gate, None, move |_, tx| {
                let _ = release.lock().unwrap().recv();
                let _ = tx.send(Ok(1));
                Ok(())
            })
        };
        let waiting = {
            let release = release_rx.clone();
            stream::<u32, _>(&gate, None, move |_, tx| {
                let _ = release.lock().unwrap().recv();
                let _ = tx.send(Ok(2));
                Ok(())
            })
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while gate.accepted() < 2 {
            assert!(Instant::now() < deadline, "both jobs were not accepted");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // One running, one waiting: the third is refused without waiting.
        let status = unary::<u32, _>(&gate, None, |_| panic!("must not run"))
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert!(status.message().contains("--max-queued 1"), "{status:?}");

        gate.start_draining();
        let status = unary::<u32, _>(&gate, None, |_| panic!("must not run"))
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert!(status.message().contains("draining"), "{status:?}");
        let drained = tokio::spawn({
            let gate = gate.clone();
            async move { gate.drained().await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!drained.is_finished(), "drained with two jobs accepted");
        release_tx.send(()).unwrap();
        release_tx.send(()).unwrap();
        // Both accepted jobs finish and deliver their output; then the gate is drained.
        let outputs: Vec<u32> = running.chain(waiting).map(|m| m.unwrap()).collect().await;
        assert_eq!(outputs, vec![1, 2]);
        tokio::time::timeout(Duration::from_secs(10), drained)
            .await
            .expect("drained after the jobs finished")
            .unwrap();
        assert_eq!(gate.accepted(), 0);
    }

    #[tokio::test]
    async fn a_unary_job_past_its_deadline_is_cancelled_and_one_in_line_never_runs() {
        let gate = gate(1, 4);
        let (seen_tx, seen_rx) = std::sync::mpsc::channel();
        let running = tokio::spawn({
            let gate = gate.clone();
            async move {
                unary::<u32, _>(&gate, Some(Duration::from_millis(100)), move |cancel| {
                    while !cancel.is_cancelled() {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    let _ = seen_tx.send(true);
                    Ok(1)
                })
                .await
            }
        });
        // In line behind the running job, with a shorter deadline: refused without running.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let queued = unary::<u32, _>(&gate, Some(Duration::from_millis(30)), |_| panic!("ran"))
            .await
            .unwrap_err();
        assert_eq!(queued.code(), tonic::Code::DeadlineExceeded);
        let status = running.await.unwrap().unwrap_err();
        assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
        let cancelled =
            tokio::task::spawn_blocking(move || seen_rx.recv_timeout(Duration::from_secs(10)))
                .await
                .unwrap();
        assert_eq!(cancelled, Ok(true), "the job saw its cancellation");
    }

    #[tokio::test]
    async fn jobs_wait_for_kv_room_in_turn_and_the_report_shows_it() {
        // 1 KiB per position, 1 MiB = 1024 positions; each job needs 700, which the cache allocates
        // as 1024 (it grows in steps of 512).
        let budget = KvBudget::new(Some(crate::kv_budget::mib_to_bytes(1)), 1024, 4096);
        let gate = EngineGate::new(2, 4, budget, 4096);
        let need = KvNeed {
            sequences: 1,
            positions: 700,
        };
        let too_big = KvNeed {
            sequences: 3,
            positions: 700,
        };
        let status = run_engine_job::<u32, _>(gate.admit().unwrap(), too_big, None, |_| {
            panic!("must not run")
        })
        .await
        .unwrap_err();
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert!(
            status.message().contains("needs 3072 positions"),
            "{status:?}"
        );
        assert_eq!(gate.accepted(), 0, "the refused job left the line");

        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let first =
            spawn_engine_stream::<u32, _>(gate.admit().unwrap(), need, None, move |_, tx| {
                let _ = release_rx.recv();
                tx.send(Ok(1));
                Ok(())
            })
            .unwrap();
        let second_ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let second = spawn_engine_stream::<u32, _>(gate.admit().unwrap(), need, None, {
            let ran = second_ran.clone();
            move |_, tx| {
                ran.store(true, std::sync::atomic::Ordering::SeqCst);
                tx.send(Ok(2));
                Ok(())
            }
        })
        .unwrap();
        // Two engine slots, but KV room for one job: the second waits although a slot is free.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let report = gate.load_report();
            if report.kv_free_tokens == 0 && report.running == 2 && report.waiting == 0 {
                break; // the second holds its slot and waits for KV inside it
            }
            assert!(Instant::now() < deadline, "{report:?}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !second_ran.load(std::sync::atomic::Ordering::SeqCst),
            "ran without KV room"
        );
        let report = gate.load_report();
        assert_eq!(
            (
                report.max_running,
                report.max_waiting,
                report.kv_budget_tokens
            ),
            (2, 4, 1024)
        );
        assert_eq!(
            (report.kv_bytes_per_token, report.context_length),
            (1024, 4096)
        );
        release_tx.send(()).unwrap();
        let outputs: Vec<u32> = first.chain(second).map(|m| m.unwrap()).collect().await;
        assert_eq!(outputs, vec![1, 2]);
        let deadline = Instant::now() + Duration::from_secs(10);
        while gate.load_report().kv_free_tokens != 1024 {
            assert!(Instant::now() < deadline, "KV room not given back");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn a_slow_reader_holds_its_job_back_and_a_dropped_one_releases_it() {
        let gate = gate(1, 4);
        let (sent_tx, sent_rx) = std::sync::mpsc::channel();
        let mut messages = stream::<usize, _>(&gate, None, move |_, tx| {
            let mut sent = 0;
            while sent < 10 * STREAM_BUFFER && tx.send(Ok(sent)) {
                sent += 1;
                let _ = sent_tx.send(sent);
            }
            Ok(())
        });
        // Nobody reads: the job stops at the buffer's size.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let sent = sent_rx.try_iter().last().unwrap_or(0);
        assert!(
            (STREAM_BUFFER..=STREAM_BUFFER + 1).contains(&sent),
            "sent {sent} with nobody reading"
        );
        assert_eq!(messages.next().await.unwrap().unwrap(), 0);
        drop(messages);
        // The blocked send ends when the stream is dropped; the job finishes and leaves the gate.
        let deadline = Instant::now() + Duration::from_secs(10);
        while gate.accepted() > 0 {
            assert!(Instant::now() < deadline, "the job stayed blocked");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}
