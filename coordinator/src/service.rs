//! The gRPC door: CoordinatorService.Solve through the front door, its refusals as gRPC statuses, its
//! events as the response stream. The request stops (and cancels its work on the nodes) when the client
//! goes away or its deadline passes.

use std::sync::Arc;

use scot_proto::coordinator_service_server::CoordinatorService;
use scot_proto::SolveRequest;
use tonic::{Request, Response, Status};

use crate::event_queue::EventStream;
use crate::front_door::{BadRequestId, Door, FrontDoor, Refused};
use crate::metrics::Api;

pub struct CoordinatorServiceImpl {
    front: Arc<FrontDoor>,
}

impl CoordinatorServiceImpl {
    pub fn new(front: Arc<FrontDoor>) -> Self {
        Self { front }
    }
}

#[tonic::async_trait]
impl CoordinatorService for CoordinatorServiceImpl {
    type SolveStream = EventStream;

    async fn solve(
        &self,
        request: Request<SolveRequest>,
    ) -> Result<Response<Self::SolveStream>, Status> {
        let door = Door {
            api: Api::Grpc,
            timeout: scot_proto::deadline::grpc_timeout(request.metadata()),
            bad_request_id: BadRequestId::Refuse,
        };
        let started = self
            .front
            .start(request.into_inner(), door)
            .map_err(|refused| refusal_status(&refused))?;
        Ok(Response::new(started.events.into_stream()))
    }
}

fn refusal_status(refused: &Refused) -> Status {
    match refused {
        Refused::OverCapacity { .. } => Status::resource_exhausted(refused.to_string()),
        Refused::Invalid(invalid) => Status::invalid_argument(invalid.to_string()),
    }
}
