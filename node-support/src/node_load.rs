//! The NodeLoadService every node serves beside its own: what its engine gate holds now (jobs running
//! and waiting, the KV budget and what is free of it, the context), so that every coordinator routing
//! to the node sees the same room, not only its own calls.

use scot_proto::node_load_service_server::NodeLoadService;
use scot_proto::{LoadReport, LoadRequest};
use tonic::{Request, Response, Status};

use crate::engine_gate::EngineGate;

pub struct NodeLoadServer {
    gate: EngineGate,
}

impl NodeLoadServer {
    pub fn new(gate: EngineGate) -> Self {
        Self { gate }
    }
}

#[tonic::async_trait]
impl NodeLoadService for NodeLoadServer {
    async fn load(&self, _request: Request<LoadRequest>) -> Result<Response<LoadReport>, Status> {
        Ok(Response::new(self.gate.load_report()))
    }
}
