//! Engine work runs on blocking threads, never on the async runtime. Streaming jobs are cancelled when
//! the client drops the stream or the caller's deadline passes (the engine checks the CancelToken
//! between decoding steps). A job that fails because a tensor-parallel rank failed reports that to the
//! gate's [`NodeFailure`] (health NOT_SERVING) before its caller sees the error; after that the gate
//! turns every job away at once. The gate's line is bounded (a full node answers RESOURCE_EXHAUSTED at
//! once), and a draining gate refuses new jobs while those it accepted finish.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use scot_engine::CancelToken;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::Status;
use tracing::Instrument;

use crate::node_failure::{NodeFailure, RankFailure};

/// Limits how many engine jobs run at once on this node (`running`) and how many more may wait in line
/// (`queued`); past that a job is refused at once. Closed for good once a rank failed; closed to new
/// jobs once draining.
#[derive(Debug, Clone)]
pub struct EngineGate {
    permits: Arc<Semaphore>,
    failure: NodeFailure,
    /// Jobs accepted and not finished (running or waiting for a permit).
    accepted: Arc<watch::Sender<usize>>,
    running: usize,
    queued: usize,
    draining: Arc<AtomicBool>,
}

/// A job's place: it counts as accepted until dropped, and runs while it holds the permit.
struct Ticket {
    _permit: OwnedSemaphorePermit,
    _accepted: Accepted,
}

struct Accepted(Arc<watch::Sender<usize>>);

impl Drop for Accepted {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}

impl EngineGate {
    /// `running` jobs at once (at least 1), and up to `queued` more waiting.
    pub fn new(running: usize, queued: usize) -> Self {
        let running = running.max(1);
        Self {
            permits: Arc::new(Semaphore::new(running)),
            failure: NodeFailure::default(),
            accepted: Arc::new(watch::Sender::new(0)),
            running,
            queued,
            draining: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Where this node's rank failure is recorded.
    pub fn failure(&self) -> &NodeFailure {
        &self.failure
    }

    /// Jobs accepted and not yet finished (running or waiting).
    pub fn accepted(&self) -> usize {
        *self.accepted.borrow()
    }

    /// Refuses every later job (UNAVAILABLE, so callers go elsewhere); those already accepted go on.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Resolves once no accepted job is left.
    pub async fn drained(&self) {
        let mut accepted = self.accepted.subscribe();
        let _ = accepted.wait_for(|n| *n == 0).await;
    }

    async fn enter(&self) -> Result<Ticket, Status> {
        if let Some(failure) = self.failure.failed() {
            return Err(failure.status());
        }
        if self.draining.load(Ordering::SeqCst) {
            return Err(Status::unavailable(
                "node is draining (shutting down): retry on another node",
            ));
        }
        let limit = self.running + self.queued;
        let mut admitted = false;
        self.accepted.send_if_modified(|n| {
            admitted = *n < limit;
            if admitted {
                *n += 1;
            }
            admitted
        });
        if !admitted {
            return Err(Status::resource_exhausted(format!(
                "node is full: {} engine jobs running and {} waiting (--max-concurrent {}, --max-queued {})",
                self.running, self.queued, self.running, self.queued
            )));
        }
        let accepted = Accepted(self.accepted.clone());
        let permit = self.permits.clone().acquire_owned().await.map_err(|_| {
            match self.failure.failed() {
                Some(failure) => failure.status(),
                None => Status::unavailable("node is shutting down"),
            }
        })?;
        Ok(Ticket {
            _permit: permit,
            _accepted: accepted,
        })
    }

    /// Passes a job's result through; a rank failure is reported (health NOT_SERVING first) and
    /// closes the gate before the caller gets the error.
    async fn settle<T>(&self, result: Result<T, Status>) -> Result<T, Status> {
        if let Err(status) = &result {
            if let Some(failure) = RankFailure::from_status(status) {
                self.report_failure(failure).await;
            }
        }
        result
    }

    /// Records a rank failure and turns away every job still waiting and every later one.
    pub async fn report_failure(&self, failure: RankFailure) {
        self.failure.report(failure).await;
        self.permits.close();
    }
}

/// Where a streaming job sends its messages.
pub type JobSender<T> = mpsc::UnboundedSender<Result<T, Status>>;

/// Runs `job` on a blocking thread once the gate lets it in, and returns its message stream. The job
/// gets a CancelToken that fires when the receiver is dropped or `deadline` passes; an `Err` it
/// returns ends the stream with that status.
pub fn spawn_engine_stream<T, F>(
    gate: &EngineGate,
    deadline: Option<Duration>,
    job: F,
) -> UnboundedReceiverStream<Result<T, Status>>
where
    T: Send + 'static,
    F: FnOnce(&CancelToken, &JobSender<T>) -> Result<(), Status> + Send + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel();
    let gate = gate.clone();
    let deadline = deadline.map(|d| Instant::now() + d);
    let span = tracing::Span::current();
    tokio::spawn(
        async move {
            let expired = expiry(deadline);
            tokio::pin!(expired);
            let ticket = tokio::select! {
                ticket = gate.enter() => match ticket {
                    Ok(ticket) => ticket,
                    Err(status) => {
                        let _ = tx.send(Err(status));
                        return;
                    }
                },
                _ = tx.closed() => return,
                _ = &mut expired => {
                    let _ = tx.send(Err(deadline_status()));
                    return;
                }
            };
            let cancel = CancelToken::new();
            let job_cancel = cancel.clone();
            let job_tx = tx.clone();
            let mut handle = tokio::task::spawn_blocking(move || {
                let _ticket = ticket;
                job(&job_cancel, &job_tx)
            });
            let joined = tokio::select! {
                joined = &mut handle => joined,
                _ = tx.closed() => {
                    tracing::info!("client dropped the stream; cancelling");
                    cancel.cancel();
                    handle.await
                }
                _ = &mut expired => {
                    tracing::info!("deadline passed; cancelling");
                    cancel.cancel();
                    let _ = tx.send(Err(deadline_status()));
                    handle.await
                }
            };
            let result = joined.unwrap_or_else(|e| {
                tracing::error!(error = %e, "engine job panicked");
                Err(Status::internal("engine job failed unexpectedly"))
            });
            if let Err(status) = gate.settle(result).await {
                let _ = tx.send(Err(status));
            }
        }
        .instrument(span),
    );
    UnboundedReceiverStream::new(rx)
}

/// Runs a unary engine job on a blocking thread once the gate lets it in. The job's CancelToken fires
/// when `deadline` passes or the caller stops waiting (its call was cancelled); a deadline that passes
/// while the job waits in line answers DEADLINE_EXCEEDED without running it.
pub async fn run_engine_job<T, F>(
    gate: &EngineGate,
    deadline: Option<Duration>,
    job: F,
) -> Result<T, Status>
where
    T: Send + 'static,
    F: FnOnce(&CancelToken) -> Result<T, Status> + Send + 'static,
{
    let expired = expiry(deadline.map(|d| Instant::now() + d));
    tokio::pin!(expired);
    let ticket = tokio::select! {
        ticket = gate.enter() => ticket?,
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
    let result = joined.unwrap_or_else(|e| {
        tracing::error!(error = %e, "engine job panicked");
        Err(Status::internal("engine job failed unexpectedly"))
    });
    gate.settle(result).await
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
    use tokio_stream::StreamExt;

    #[tokio::test]
    async fn dropping_the_stream_cancels_the_job() {
        let gate = EngineGate::new(1, 4);
        let (seen_tx, seen_rx) = std::sync::mpsc::channel();
        let stream = spawn_engine_stream::<u32, _>(&gate, None, move |cancel, tx| {
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
        let gate = EngineGate::new(1, 4);
        let mut stream =
            spawn_engine_stream::<u32, _>(&gate, Some(Duration::from_millis(50)), |cancel, _tx| {
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
        let gate = EngineGate::new(1, 4);
        assert_eq!(run_engine_job(&gate, None, |_| Ok(7)).await.unwrap(), 7);
        let err = run_engine_job::<u32, _>(&gate, None, |_| Err(Status::invalid_argument("x")))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
    }

    #[tokio::test]
    async fn a_rank_failure_closes_the_gate() {
        let gate = EngineGate::new(1, 4);
        let failure = RankFailure {
            rank: 1,
            message: "tensor-parallel rank 1 failed: boom".into(),
        };
        let failed = failure.clone();
        let err = run_engine_job::<u32, _>(&gate, None, move |_| Err(failed.status()))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unavailable);
        assert_eq!(gate.failure().failed(), Some(failure.clone()));
        // Later jobs are turned away without running.
        let err = run_engine_job::<u32, _>(&gate, None, |_| panic!("must not run"))
            .await
            .unwrap_err();
        assert_eq!(RankFailure::from_status(&err), Some(failure.clone()));
        let mut stream = spawn_engine_stream::<u32, _>(&gate, None, |_, _| panic!("must not run"));
        let status = stream.next().await.unwrap().unwrap_err();
        assert_eq!(RankFailure::from_status(&status), Some(failure));
    }

    #[tokio::test]
    async fn a_full_gate_refuses_at_once_and_a_draining_one_finishes_what_it_took() {
        let gate = EngineGate::new(1, 1);
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let release_rx = Arc::new(std::sync::Mutex::new(release_rx));
        let running = {
            let release = release_rx.clone();
            spawn_engine_stream::<u32, _>(&gate, None, move |_, tx| {
                let _ = release.lock().unwrap().recv();
                let _ = tx.send(Ok(1));
                Ok(())
            })
        };
        let waiting = {
            let release = release_rx.clone();
            spawn_engine_stream::<u32, _>(&gate, None, move |_, tx| {
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
        let status = run_engine_job::<u32, _>(&gate, None, |_| panic!("must not run"))
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert!(status.message().contains("--max-queued 1"), "{status:?}");

        gate.start_draining();
        let status = run_engine_job::<u32, _>(&gate, None, |_| panic!("must not run"))
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
        let gate = EngineGate::new(1, 4);
        let (seen_tx, seen_rx) = std::sync::mpsc::channel();
        let running = tokio::spawn({
            let gate = gate.clone();
            async move {
                run_engine_job::<u32, _>(&gate, Some(Duration::from_millis(100)), move |cancel| {
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
        let queued =
            run_engine_job::<u32, _>(&gate, Some(Duration::from_millis(30)), |_| panic!("ran"))
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
}
