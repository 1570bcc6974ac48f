//! Engine work runs on blocking threads, never on the async runtime. Streaming jobs are cancelled when
//! the client drops the stream or the caller's deadline passes (the engine checks the CancelToken
//! between decoding steps). A job that fails because a tensor-parallel rank failed reports that to the
//! gate's [`NodeFailure`] (health NOT_SERVING) before its caller sees the error; after that the gate
//! turns every job away at once.

use std::sync::Arc;
use std::time::Duration;

use scot_engine::CancelToken;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::Status;
use tracing::Instrument;

use crate::node_failure::{NodeFailure, RankFailure};

/// Limits how many engine jobs run at once on this node; the rest wait in line. Closed for good once
/// a rank failed.
#[derive(Debug, Clone)]
pub struct EngineGate {
    permits: Arc<Semaphore>,
    failure: NodeFailure,
}

impl EngineGate {
    pub fn new(max_concurrent: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
            failure: NodeFailure::default(),
        }
    }

    /// Where this node's rank failure is recorded.
    pub fn failure(&self) -> &NodeFailure {
        &self.failure
    }

    async fn enter(&self) -> Result<OwnedSemaphorePermit, Status> {
        if let Some(failure) = self.failure.failed() {
            return Err(failure.status());
        }
        self.permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| match self.failure.failed() {
                Some(failure) => failure.status(),
                None => Status::unavailable("node is shutting down"),
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
            let expired = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::pin!(expired);
            let permit = tokio::select! {
                permit = gate.enter() => match permit {
                    Ok(permit) => permit,
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
                let _permit = permit;
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

/// Runs a unary engine job on a blocking thread once the gate lets it in.
pub async fn run_engine_job<T, F>(gate: &EngineGate, job: F) -> Result<T, Status>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, Status> + Send + 'static,
{
    let permit = gate.enter().await?;
    let result = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        job()
    })
    .await
    .unwrap_or_else(|e| {
        tracing::error!(error = %e, "engine job panicked");
        Err(Status::internal("engine job failed unexpectedly"))
    });
    gate.settle(result).await
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
        let gate = EngineGate::new(1);
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
        let gate = EngineGate::new(1);
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
        let gate = EngineGate::new(1);
        assert_eq!(run_engine_job(&gate, || Ok(7)).await.unwrap(), 7);
        let err = run_engine_job::<u32, _>(&gate, || Err(Status::invalid_argument("x")))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
    }

    #[tokio::test]
    async fn a_rank_failure_closes_the_gate() {
        let gate = EngineGate::new(1);
        let failure = RankFailure {
            rank: 1,
            message: "tensor-parallel rank 1 failed: boom".into(),
        };
        let failed = failure.clone();
        let err = run_engine_job::<u32, _>(&gate, move || Err(failed.status()))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unavailable);
        assert_eq!(gate.failure().failed(), Some(failure.clone()));
        // Later jobs are turned away without running.
        let err = run_engine_job::<u32, _>(&gate, || panic!("must not run"))
            .await
            .unwrap_err();
        assert_eq!(RankFailure::from_status(&err), Some(failure.clone()));
        let mut stream = spawn_engine_stream::<u32, _>(&gate, None, |_, _| panic!("must not run"));
        let status = stream.next().await.unwrap().unwrap_err();
        assert_eq!(RankFailure::from_status(&status), Some(failure));
    }
}
