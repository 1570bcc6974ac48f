//! One admitted request run on its own task, the same for both front doors: its events (and its
//! phase/outcome metrics) go to its `event_queue`, whose last item is the Result event or the error.
//! Dropping the receiver (client gone) cancels the request and its work on the nodes; its deadline
//! applies.

use std::future::Future;
use std::sync::Arc;

use scot_proto::solve_event::Event as SolveEventKind;
use scot_proto::SolveEvent;
use tonic::Status;
use tracing::Instrument;

use crate::admission::Admitted;
use crate::event_queue::{event_queue, EventReceiver};
use crate::metrics::{Api, RequestTracker};
use crate::solve::{SolveJob, Solver};
use crate::timing::Deadline;

/// Runs `job` on the Solver on a new task; `admitted` (its place) is held until it ends.
pub fn spawn_solve(
    solver: Arc<Solver>,
    job: SolveJob,
    api: Api,
    admitted: Admitted,
) -> EventReceiver {
    let (tx, rx) = event_queue();
    let span = tracing::info_span!("solve", request_id = %job.request_id);
    tokio::spawn(
        async move {
            tracing::info!(mode = ?job.settings.mode, n = job.settings.n, "solve started");
            let tracker = Arc::new(RequestTracker::start(api));
            let events = tx.clone();
            let observer = tracker.clone();
            let emit = move |event: SolveEvent| {
                observer.observe(&event);
                events.send(Ok(event));
            };
            let work = solver.solve(&job, &emit);
            let outcome = tokio::select! {
                _ = tx.closed() => {
                    tracing::info!("client went away; request cancelled");
                    return;
                }
                () = admitted.aborted() => Err(Status::unavailable(
                    "the coordinator is shutting down and its drain timeout passed before this request finished; retry it",
                )),
                outcome = with_deadline(job.deadline, work) => outcome,
            };
            match outcome {
                Ok(result) => {
                    tracker.succeeded(&result);
                    if let Some(stats) = &result.stats {
                        tracing::info!(
                            path = stats.path,
                            total_ms = stats.total_ms,
                            chosen = stats.chosen,
                            "solve finished"
                        );
                    }
                    tx.send(Ok(SolveEvent {
                        event: Some(SolveEventKind::Result(result)),
                    }));
                }
                Err(status) => {
                    tracker.failed(&status);
                    tracing::warn!(code = ?status.code(), error = %status.message(), "solve failed");
                    tx.send(Err(status));
                }
            }
        }
        .instrument(span),
    );
    rx
}

async fn with_deadline<T>(
    deadline: Deadline,
    work: impl Future<Output = Result<T, Status>>,
) -> Result<T, Status> {
    match deadline {
        None => work.await,
        Some(deadline) => tokio::time::timeout_at(deadline.into(), work)
            .await
            .unwrap_or_else(|_| Err(Status::deadline_exceeded("the request's deadline passed"))),
    }
}
