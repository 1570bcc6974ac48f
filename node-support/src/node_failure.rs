//! A failed tensor-parallel rank poisons the model: the node cannot answer again until it is restarted.
//! [`NodeFailure`] is where that is recorded once: it turns the gRPC health NOT_SERVING *before* the
//! failure is visible anywhere else (so load balancers stop sending work first), then wakes the server,
//! which stops and ends the process with the failure.

use std::sync::Arc;

use tokio::sync::{watch, Mutex};
use tonic::Status;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

/// gRPC metadata key that marks a status as a rank failure; its value is the failed rank.
pub const RANK_FAILED_METADATA: &str = "scot-rank-failed";

/// Which rank failed, and the status message that says why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RankFailure {
    pub rank: usize,
    pub message: String,
}

impl RankFailure {
    /// The failure a status carries (see [`crate::engine_status`]), if it is one.
    pub fn from_status(status: &Status) -> Option<RankFailure> {
        let rank = status
            .metadata()
            .get(RANK_FAILED_METADATA)?
            .to_str()
            .ok()?
            .parse()
            .ok()?;
        Some(RankFailure {
            rank,
            message: status.message().to_string(),
        })
    }

    /// What a request gets once the node has failed.
    pub fn status(&self) -> Status {
        let mut status = Status::unavailable(self.message.clone());
        if let Ok(value) = self.rank.to_string().parse() {
            status.metadata_mut().insert(RANK_FAILED_METADATA, value);
        }
        status
    }
}

/// Shared by the engine gate (which reports failures) and the gRPC server (which watches for them).
#[derive(Debug, Clone)]
pub struct NodeFailure(Arc<Shared>);

#[derive(Debug)]
struct Shared {
    /// The health services to turn NOT_SERVING; the lock also orders concurrent reports.
    health: Mutex<Option<(HealthReporter, String)>>,
    failed: watch::Sender<Option<RankFailure>>,
}

impl Default for NodeFailure {
    fn default() -> Self {
        Self(Arc::new(Shared {
            health: Mutex::new(None),
            failed: watch::Sender::new(None),
        }))
    }
}

impl NodeFailure {
    /// The health reporter (and the node's service name) a failure turns NOT_SERVING.
    pub async fn attach_health(&self, reporter: HealthReporter, service: &str) {
        *self.0.health.lock().await = Some((reporter, service.to_string()));
    }

    /// Records the first failure: health NOT_SERVING first (overall and the node's service), then an
    /// error log, then the failure becomes visible to [`NodeFailure::failed`] and [`NodeFailure::wait`].
    /// Later reports only wait for the first to finish.
    pub async fn report(&self, failure: RankFailure) {
        let health = self.0.health.lock().await;
        if self.0.failed.borrow().is_some() {
            return;
        }
        if let Some((reporter, service)) = health.as_ref() {
            reporter
                .set_service_status("", ServingStatus::NotServing)
                .await;
            reporter
                .set_service_status(service, ServingStatus::NotServing)
                .await;
        }
        scot_telemetry::set_ready(false);
        tracing::error!(
            rank = failure.rank,
            error = %failure.message,
            "a tensor-parallel rank failed: health is NOT_SERVING and the node stops"
        );
        self.0.failed.send_replace(Some(failure));
    }

    /// The failure, once one was reported.
    pub fn failed(&self) -> Option<RankFailure> {
        self.0.failed.borrow().clone()
    }

    /// Resolves with the first reported failure.
    pub async fn wait(&self) -> RankFailure {
        let mut failed = self.0.failed.subscribe();
        loop {
            if let Some(failure) = failed.borrow_and_update().clone() {
                return failure;
            }
            if failed.changed().await.is_err() {
                // The sender lives in `self`, so it cannot be dropped while we wait.
                std::future::pending::<()>().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_health::pb::health_check_response::ServingStatus as PbStatus;
    use tonic_health::pb::health_server::Health;
    use tonic_health::pb::HealthCheckRequest;

    #[test]
    fn a_failure_round_trips_through_its_status() {
        let failure = RankFailure {
            rank: 3,
            message: "tensor-parallel rank 3 failed: boom".into(),
        };
        let status = failure.status();
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert_eq!(RankFailure::from_status(&status), Some(failure));
        assert_eq!(RankFailure::from_status(&Status::internal("x")), None);
    }

    #[tokio::test]
    async fn health_turns_not_serving_before_the_failure_is_seen() {
        let reporter = HealthReporter::new();
        let service = tonic_health::server::HealthService::from_health_reporter(reporter.clone());
        reporter
            .set_service_status("scot.v1.X", ServingStatus::Serving)
            .await;
        let failure = NodeFailure::default();
        failure.attach_health(reporter, "scot.v1.X").await;
        let watcher = failure.clone();
        let seen = tokio::spawn(async move { watcher.wait().await });
        let first = RankFailure {
            rank: 1,
            message: "first".into(),
        };
        failure.report(first.clone()).await;
        failure
            .report(RankFailure {
                rank: 0,
                message: "second".into(),
            })
            .await;
        assert_eq!(seen.await.unwrap(), first);
        assert_eq!(failure.failed(), Some(first));
        for name in ["", "scot.v1.X"] {
            let response = service
                .check(tonic::Request::new(HealthCheckRequest {
                    service: name.into(),
                }))
                .await
                .unwrap()
                .into_inner();
            assert_eq!(response.status, PbStatus::NotServing as i32, "{name:?}");
        }
    }
}
