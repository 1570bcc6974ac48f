//! The gate every engine job passes: bounded admission (a full node answers RESOURCE_EXHAUSTED at
//! once), request preparation (rendering, tokenizing) on the blocking pool for admitted jobs only, then
//! a turn on the engine and the job's KV-cache reservation. Closed for good once a tensor-parallel rank
//! failed; closed to new jobs once draining. What it holds is reported to coordinators
//! ([`EngineGate::load_report`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use scot_proto::LoadReport;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tonic::Status;

use crate::kv_budget::{KvBudget, KvNeed, KvReservation};
use crate::node_failure::{NodeFailure, RankFailure};

/// Limits how many engine jobs run at once on this node (`running`), how many more may wait
/// (`queued`), and the KV cache they may reserve together.
#[derive(Debug, Clone)]
pub struct EngineGate {
    permits: Arc<Semaphore>,
    kv: KvBudget,
    failure: NodeFailure,
    /// Jobs accepted and not finished (preparing, waiting for a turn, or running).
    accepted: Arc<watch::Sender<usize>>,
    running: usize,
    queued: usize,
    context: usize,
    draining: Arc<AtomicBool>,
}

/// A job let in: it counts against the node's line until dropped.
pub struct Admitted {
    gate: EngineGate,
    accepted: Accepted,
}

/// A job's turn on the engine: its place in line, its engine permit and its KV reservation.
pub(crate) struct Ticket {
    _permit: OwnedSemaphorePermit,
    _kv: KvReservation,
    _accepted: Accepted,
}

struct Accepted(Arc<watch::Sender<usize>>);

impl Drop for Accepted {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}

impl EngineGate {
    /// `running` jobs at once (at least 1), up to `queued` more waiting, within `kv`; `context` is the
    /// model's (reported to coordinators).
    pub fn new(running: usize, queued: usize, kv: KvBudget, context: usize) -> Self {
        let running = running.max(1);
        Self {
            permits: Arc::new(Semaphore::new(running)),
            kv,
            failure: NodeFailure::default(),
            accepted: Arc::new(watch::Sender::new(0)),
            running,
            queued,
            context,
            draining: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Where this node's rank failure is recorded.
    pub fn failure(&self) -> &NodeFailure {
        &self.failure
    }

    pub fn kv(&self) -> &KvBudget {
        &self.kv
    }

    /// Jobs accepted and not yet finished.
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

    /// Lets a job in line, or refuses it at once: the node failed or is draining (UNAVAILABLE), or
    /// `running + queued` jobs are already accepted (RESOURCE_EXHAUSTED).
    pub fn admit(&self) -> Result<Admitted, Status> {
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
        Ok(Admitted {
            gate: self.clone(),
            accepted: Accepted(self.accepted.clone()),
        })
    }

    /// What this node holds now, for the coordinators.
    pub fn load_report(&self) -> LoadReport {
        let running = self.running - self.permits.available_permits().min(self.running);
        let waiting = self.accepted().saturating_sub(running);
        LoadReport {
            running: saturate(running),
            waiting: saturate(waiting),
            max_running: saturate(self.running),
            max_waiting: saturate(self.queued),
            kv_budget_tokens: self.kv.tokens().unwrap_or(0) as u64,
            kv_free_tokens: self.kv.free_tokens() as u64,
            kv_bytes_per_token: self.kv.bytes_per_token() as u64,
            context_length: saturate(self.context),
        }
    }

    /// Passes a job's result through; a rank failure is reported (health NOT_SERVING first) and
    /// closes the gate before the caller gets the error.
    pub(crate) async fn settle<T>(&self, result: Result<T, Status>) -> Result<T, Status> {
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

impl Admitted {
    /// Runs a request's preparation (template rendering, tokenizing: CPU work that grows with the
    /// request) on the blocking pool, off the async runtime.
    pub async fn prepare<T, F>(&self, prepare: F) -> Result<T, Status>
    where
        T: Send + 'static,
        F: FnOnce() -> Result<T, Status> + Send + 'static,
    {
        tokio::task::spawn_blocking(prepare)
            .await
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "request preparation panicked");
                Err(Status::internal("request preparation failed unexpectedly"))
            })
    }

    /// Refuses at once a job that can never fit the node's KV budget (with the numbers).
    pub(crate) fn check(&self, need: KvNeed) -> Result<(), Status> {
        self.gate.kv.check(need)
    }

    pub(crate) fn gate(&self) -> &EngineGate {
        &self.gate
    }

    /// Waits for a turn on the engine, then for the job's KV room (first come, first served).
    pub(crate) async fn turn(self, need: KvNeed) -> Result<Ticket, Status> {
        let Admitted { gate, accepted } = self;
        let closed = || match gate.failure.failed() {
            Some(failure) => failure.status(),
            None => Status::unavailable("node is shutting down"),
        };
        let permit = gate
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| closed())?;
        let kv = gate.kv.reserve(need).await?;
        Ok(Ticket {
            _permit: permit,
            _kv: kv,
            _accepted: accepted,
        })
    }
}

fn saturate(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}
