//! Calls straight to the nodes (not through a coordinator), for the commands that prepare a
//! deployment rather than serve it: `scot calibrate` and `scot collect`.

use std::time::Duration;

use futures::StreamExt;
use scot_proto::draft_event::Event as DraftEventKind;
use scot_proto::draft_service_client::DraftServiceClient;
use scot_proto::limits::MAX_MESSAGE_BYTES;
use scot_proto::target_service_client::TargetServiceClient;
use scot_proto::{Draft, DraftRequest};
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
