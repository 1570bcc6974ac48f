//! The one way in for both doors (gRPC Solve and HTTP chat completions): admission (one more than
//! `--max-concurrent-requests` is refused at once), validation (typed refusals each door words in its
//! own field names) including caps no node in routing can hold, the request-id rule, and the solve on
//! its own task.

use std::sync::Arc;
use std::time::{Duration, Instant};

use scot_proto::limits::MAX_REQUEST_ID;
use scot_proto::SolveRequest;

use crate::admission::Admission;
use crate::config::SolveDefaults;
use crate::event_queue::EventReceiver;
use crate::metrics::{metrics, Api, Outcome};
use crate::request_fit::check_fit;
use crate::solve::{SolveJob, Solver};
use crate::solve_task::spawn_solve;
use crate::validation::{validate_request, Field, InvalidRequest};

/// What the front door needs from the door a request came through.
#[derive(Debug, Clone, Copy)]
pub struct Door {
    pub api: Api,
    /// The caller's own deadline (gRPC's `grpc-timeout`); the server's default applies without one.
    pub timeout: Option<Duration>,
    /// What happens to a request id the rule refuses.
    pub bad_request_id: BadRequestId,
}

/// gRPC refuses a bad `request_id` (the client set it); HTTP replaces a bad `x-request-id` (a header the
/// client may not control).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadRequestId {
    Refuse,
    Replace,
}

/// Why a request was not started.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refused {
    #[error(
        "the server is at capacity ({limit} concurrent requests, max_concurrent_requests); retry later"
    )]
    OverCapacity { limit: usize },
    #[error(transparent)]
    Invalid(InvalidRequest),
}

impl Refused {
    pub fn outcome(&self) -> Outcome {
        match self {
            Refused::OverCapacity { .. } => Outcome::OverCapacity,
            Refused::Invalid(_) => Outcome::Invalid,
        }
    }
}

/// A started request: its id (given or generated) and its events, the last being the result or the
/// error. Dropping `events` cancels the request.
pub struct Started {
    pub request_id: String,
    pub events: EventReceiver,
}

pub struct FrontDoor {
    solver: Arc<Solver>,
    admission: Admission,
    defaults: SolveDefaults,
    default_timeout: Option<Duration>,
}

impl FrontDoor {
    pub fn new(
        solver: Arc<Solver>,
        admission: Admission,
        defaults: SolveDefaults,
        default_timeout: Option<Duration>,
    ) -> Self {
        Self {
            solver,
            admission,
            defaults,
            default_timeout,
        }
    }

    pub fn solver(&self) -> &Arc<Solver> {
        &self.solver
    }

    pub fn admission(&self) -> &Admission {
        &self.admission
    }

    /// Admits, validates and starts `request`; a refusal is counted (`scot_requests_total`) here.
    pub fn start(&self, request: SolveRequest, door: Door) -> Result<Started, Refused> {
        self.admit_and_start(request, door).inspect_err(|refused| {
            tracing::warn!(api = ?door.api, reason = %refused, "request refused");
            metrics().count_outcome(door.api, refused.outcome());
        })
    }

    fn admit_and_start(&self, request: SolveRequest, door: Door) -> Result<Started, Refused> {
        let admitted = self.admission.try_admit().ok_or(Refused::OverCapacity {
            limit: self.admission.limit(),
        })?;
        let settings = validate_request(&request, &self.defaults).map_err(Refused::Invalid)?;
        check_fit(
            &settings,
            self.solver.draft_pool().limits(),
            self.solver.target_pool().limits(),
        )
        .map_err(Refused::Invalid)?;
        let request_id =
            request_id(&request.request_id, door.bad_request_id).map_err(Refused::Invalid)?;
        let job = SolveJob {
            request_id: request_id.clone(),
            problem: request.problem,
            settings,
            deadline: door
                .timeout
                .or(self.default_timeout)
                .map(|t| Instant::now() + t),
        };
        let events = spawn_solve(self.solver.clone(), job, door.api, admitted);
        Ok(Started { request_id, events })
    }
}

/// The request id: the caller's when it is short and printable, a fresh one when it is empty (or bad
/// and the door replaces it).
fn request_id(given: &str, bad: BadRequestId) -> Result<String, InvalidRequest> {
    let acceptable = given.len() <= MAX_REQUEST_ID && !given.chars().any(|c| c.is_control());
    match (given.is_empty(), acceptable, bad) {
        (false, true, _) => Ok(given.to_string()),
        (true, _, _) | (false, false, BadRequestId::Replace) => Ok(uuid::Uuid::new_v4().to_string()),
        (false, false, BadRequestId::Refuse) => Err(InvalidRequest::new(
            Field::RequestId,
            format!(
                " must be at most {MAX_REQUEST_ID} printable characters (or empty for a generated one)"
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_kept_generated_refused_or_replaced() {
        use BadRequestId::{Refuse, Replace};
        assert_eq!(request_id("abc", Refuse).unwrap(), "abc");
        assert_eq!(request_id("", Refuse).unwrap().len(), 36);
        let long = "x".repeat(MAX_REQUEST_ID + 1);
        let refused = request_id(&long, Refuse).unwrap_err();
        assert_eq!(refused.field, Field::RequestId);
        assert!(refused
            .to_string()
            .starts_with("request_id must be at most 128"));
        assert!(request_id("a\nb", Refuse).is_err());
        assert_eq!(request_id(&long, Replace).unwrap().len(), 36);
        assert_eq!(request_id("a\nb", Replace).unwrap().len(), 36);
    }
}
