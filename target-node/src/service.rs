//! The TargetService: Select (unary, one prefill) and Generate (streamed). Each call is admitted by the
//! node's gate (or refused at once), prepared on the blocking pool and run as one engine job on a
//! blocking thread.

use scot_node_support::{record_steps, request_id, run_engine_job, spawn_engine_stream, NodeModel};
use scot_proto::target_service_server::TargetService;
use scot_proto::{GenerateEvent, GenerateRequest, SelectRequest, SelectResponse};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use std::sync::Arc;

use crate::selection_prior::SelectionPriors;
use crate::{generate_job, select_job};

pub struct TargetNodeService {
    node: NodeModel,
    priors: Arc<SelectionPriors>,
}

impl TargetNodeService {
    pub fn new(node: NodeModel, priors: SelectionPriors) -> Self {
        Self {
            node,
            priors: Arc::new(priors),
        }
    }
}

#[tonic::async_trait]
impl TargetService for TargetNodeService {
    async fn select(
        &self,
        request: Request<SelectRequest>,
    ) -> Result<Response<SelectResponse>, Status> {
        let deadline = scot_proto::deadline::grpc_timeout(request.metadata());
        let request = request.into_inner();
        let span = tracing::info_span!("select", request_id = %request_id(&request.request_id));
        let (node, priors) = (self.node.clone(), self.priors.clone());
        async move {
            let admitted = node.gate.admit()?;
            let job = admitted
                .prepare({
                    let (node, request) = (node.clone(), request.clone());
                    move || select_job::prepare(&node, &priors, &request)
                })
                .await?;
            if request.render_only {
                return Ok(Response::new(select_job::rendered(job)?));
            }
            tracing::info!(
                drafts = request.drafts.len(),
                orders = job.orders.len(),
                prompt_tokens = job.orders.first().map_or(0, |o| o.prompt.len()),
                prior = job.prior.is_some(),
                "selecting"
            );
            let model = node.model.clone();
            let need = job.kv_need();
            let response = run_engine_job(admitted, need, deadline, move |cancel| {
                let response = select_job::run(&model, job, cancel);
                record_steps(&model);
                response
            })
            .await?;
            tracing::info!(
                chosen = response.chosen,
                probs = ?response.option_probs,
                debiased = ?response.debiased_probs,
                elapsed_ms = response.elapsed_ms,
                "selected"
            );
            Ok(Response::new(response))
        }
        .instrument(span)
        .await
    }

    type GenerateStream = ReceiverStream<Result<GenerateEvent, Status>>;

    async fn generate(
        &self,
        request: Request<GenerateRequest>,
    ) -> Result<Response<Self::GenerateStream>, Status> {
        let deadline = scot_proto::deadline::grpc_timeout(request.metadata());
        let request = request.into_inner();
        let span = tracing::info_span!("generate", request_id = %request_id(&request.request_id));
        let node = self.node.clone();
        async move {
            let admitted = node.gate.admit()?;
            let accepted_draft = request.accepted_draft.is_some();
            let job = admitted
                .prepare({
                    let node = node.clone();
                    move || generate_job::prepare(&node, &request)
                })
                .await?;
            tracing::info!(
                accepted_draft,
                prompt_tokens = job.prompt.len(),
                "generating"
            );
            let need = job.kv_need();
            let stream = spawn_engine_stream(admitted, need, deadline, move |cancel, tx| {
                let result = generate_job::run(&node, job, cancel, tx);
                record_steps(&node.model);
                result
            })?;
            Ok(Response::new(stream))
        }
        .instrument(span)
        .await
    }
}
