//! Calls straight to the nodes (not through a coordinator), for the commands that prepare a
//! deployment rather than serve it: `scot calibrate` and `scot collect`.

use std::time::Duration;

use futures::StreamExt;
use scot_proto::draft_event::Event as DraftEventKind;
use scot_proto::draft_service_client::DraftServiceClient;
use scot_proto::generate_event::Event as GenerateEventKind;
use scot_proto::limits::MAX_MESSAGE_BYTES;
use scot_proto::target_service_client::TargetServiceClient;
use scot_proto::{Draft, DraftPrompt, DraftRequest, GenerateRequest, GenerateResult};
use tonic::transport::Channel;

use crate::error::EvalError;

async fn connect(endpoint: &str, tls: &scot_tls::TlsArgs) -> Result<Channel, EvalError> {
    let err = |message: String| EvalError::NodeConnect {
        endpoint: endpoint.to_string(),
        message,
    };
    let tls = tls.load().map_err(|e| err(e.to_string()))?;
    scot_tls::endpoint(endpoint, tls.as_ref(), None)
        .map_err(|e| err(e.to_string()))?
        .connect_timeout(Duration::from_secs(10))
        .connect()
        .await
        .map_err(|e| err(format!("{e:?}")))
}

pub async fn target_client(
    endpoint: &str,
    tls: &scot_tls::TlsArgs,
) -> Result<TargetServiceClient<Channel>, EvalError> {
    Ok(TargetServiceClient::new(connect(endpoint, tls).await?)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES))
}

pub async fn draft_client(
    endpoint: &str,
    tls: &scot_tls::TlsArgs,
) -> Result<DraftServiceClient<Channel>, EvalError> {
    Ok(DraftServiceClient::new(connect(endpoint, tls).await?)
        .max_decoding_message_size(MAX_MESSAGE_BYTES))
}

/// How a draft node writes the drafts of a problem for `scot calibrate` and `scot collect`: the
/// evaluation's settings by default, so the drafts look like those a request gets.
#[derive(Debug, Clone, clap::Args)]
pub struct DraftSettings {
    /// Drafts per problem.
    #[arg(long, default_value_t = 5)]
    pub n: u32,
    /// Draft token cap for --draft-node.
    #[arg(long, default_value_t = 512)]
    pub draft_max_tokens: u32,
    #[arg(long, default_value_t = 0.6)]
    pub draft_temperature: f32,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Template set (empty = the nodes' default).
    #[arg(long, default_value = "")]
    pub template: String,
}

impl DraftSettings {
    /// The Draft call for one problem.
    pub fn request(&self, request_id: String, problem: &str) -> DraftRequest {
        DraftRequest {
            request_id,
            problem: problem.to_string(),
            draft_indices: (0..self.n).collect(),
            temperature: self.draft_temperature,
            max_tokens: self.draft_max_tokens,
            seed: self.seed,
            template: self.template.clone(),
            ..Default::default()
        }
    }
}

/// Every draft a Draft call writes, in index order.
pub async fn write_drafts(
    client: &mut DraftServiceClient<Channel>,
    request: DraftRequest,
) -> Result<Vec<Draft>, EvalError> {
    let node_err =
        |s: tonic::Status| EvalError::InvalidArgument(format!("draft node: {}", s.message()));
    let mut stream = client.draft(request).await.map_err(node_err)?.into_inner();
    let mut drafts = Vec::new();
    while let Some(event) = stream.next().await {
        if let Some(DraftEventKind::Draft(d)) = event.map_err(node_err)?.event {
            drafts.push(d);
        }
    }
    drafts.sort_by_key(|d| d.index);
    Ok(drafts)
}

/// A node's gRPC refusal as an error naming what was asked: `{what}: {code:?}: {message}`.
pub fn refusal(what: String) -> impl Fn(tonic::Status) -> EvalError {
    move |s| EvalError::InvalidArgument(format!("{what}: {:?}: {}", s.code(), s.message()))
}

/// The first event of a node's stream that `pick` keeps; None when the stream ends without one.
async fn first_of<E, T>(
    mut stream: tonic::Streaming<E>,
    refused: impl Fn(tonic::Status) -> EvalError,
    pick: impl Fn(E) -> Option<T>,
) -> Result<Option<T>, EvalError> {
    while let Some(event) = stream.next().await {
        if let Some(found) = pick(event.map_err(&refused)?) {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

/// A render-only Draft call (`request.render_only`): the draft prompt as the node drafts from.
pub async fn render_draft_prompt(
    client: &mut DraftServiceClient<Channel>,
    problem_id: &str,
    request: DraftRequest,
) -> Result<DraftPrompt, EvalError> {
    let refused = refusal(format!(
        "the draft node refused to render problem {problem_id}"
    ));
    let stream = client.draft(request).await.map_err(&refused)?.into_inner();
    first_of(stream, refused, |e| match e.event {
        Some(DraftEventKind::Prompt(prompt)) => Some(prompt),
        _ => None,
    })
    .await?
    .ok_or_else(|| {
        EvalError::InvalidArgument(format!(
            "the draft node rendered no prompt for problem {problem_id} (is it older than render-only calls?)"
        ))
    })
}

/// A Generate call without an accepted draft (the target thinks, then answers): its result.
pub async fn think_from_scratch(
    client: &mut TargetServiceClient<Channel>,
    problem_id: &str,
    request: GenerateRequest,
) -> Result<GenerateResult, EvalError> {
    let refused = refusal(format!("the target node failed on problem {problem_id}"));
    let stream = client
        .generate(request)
        .await
        .map_err(&refused)?
        .into_inner();
    first_of(stream, refused, |e| match e.event {
        Some(GenerateEventKind::Result(result)) => Some(result),
        _ => None,
    })
    .await?
    .ok_or_else(|| {
        EvalError::InvalidArgument(format!(
            "the target node's stream for problem {problem_id} ended without a result"
        ))
    })
}
