//! The DraftService: each call is admitted by the node's gate (or refused at once), prepared on the
//! blocking pool and run as one engine job on a blocking thread; dropping the stream or passing the
//! deadline cancels it.

use scot_node_support::{record_steps, request_id, spawn_engine_stream, NodeModel};
use scot_proto::draft_service_server::DraftService;
use scot_proto::{DraftEvent, DraftRequest};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::draft_job;

pub struct DraftNodeService {
    node: NodeModel,
}

impl DraftNodeService {
    pub fn new(node: NodeModel) -> Self {
        Self { node }
    }
}

#[tonic::async_trait]
impl DraftService for DraftNodeService {
    type DraftStream = ReceiverStream<Result<DraftEvent, Status>>;

    async fn draft(
        &self,
        request: Request<DraftRequest>,
    ) -> Result<Response<Self::DraftStream>, Status> {
        let deadline = scot_proto::deadline::grpc_timeout(request.metadata());
        let request = request.into_inner();
        let span = tracing::info_span!("draft", request_id = %request_id(&request.request_id));
        let node = self.node.clone();
        let request_render_only = request.render_only;
        async move {
            let admitted = node.gate.admit()?;
            let job = admitted
                .prepare({
                    let node = node.clone();
                    move || draft_job::prepare(&node, &request)
                })
                .await?;
            if request_render_only {
                let (tx, rx) = tokio::sync::mpsc::channel(1);
                // Cannot fail: the channel is new, with room for this one message.
                let _ = tx.try_send(Ok(draft_job::rendered(job, &node.fingerprint)));
                return Ok(Response::new(ReceiverStream::new(rx)));
            }
            tracing::info!(
                drafts = ?job.indices,
                prompt_tokens = job.prompt.len(),
                max_tokens = job.stop.max_new_tokens,
                "drafting"
            );
            let model = node.model.clone();
            let stream =
                spawn_engine_stream(admitted, job.kv_need(), deadline, move |cancel, tx| {
                    let result = draft_job::run(&model, job, cancel, tx);
                    record_steps(&model);
                    result
                })?;
            Ok(Response::new(stream))
        }
        .instrument(span)
        .await
    }
}
