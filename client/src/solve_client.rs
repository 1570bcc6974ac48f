//! One connection to a coordinator and one way to run a Solve call on it: phase events go to the
//! caller as they come, the final result is returned.

use std::time::Duration;

use scot_proto::coordinator_service_client::CoordinatorServiceClient;
use scot_proto::limits::MAX_MESSAGE_BYTES;
use scot_proto::solve_event::Event;
use scot_proto::{SolveRequest, SolveResult};
use scot_tls::Tls;
use tonic::transport::Channel;
use tonic::Status;

/// How long a connection attempt may take before the coordinator counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Nothing answered at the coordinator's address, or the address is not one.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot connect to the coordinator at {url}: {message}")]
pub struct ConnectError {
    pub url: String,
    pub message: String,
}

/// For callers that report every failure as a status.
impl From<ConnectError> for Status {
    fn from(error: ConnectError) -> Self {
        Status::unavailable(error.to_string())
    }
}

/// A client of one coordinator connection; clones share the connection (HTTP/2 multiplexes their
/// calls), each [`SolveClient::connect`] opens its own.
#[derive(Debug, Clone)]
pub struct SolveClient {
    inner: CoordinatorServiceClient<Channel>,
}

impl SolveClient {
    /// Connects to the coordinator at `url` (fails fast when nothing listens there); with `tls`, over
    /// mTLS with this certificate (the coordinator's must come from the same CA and name the URL's host).
    pub async fn connect(url: &str, tls: Option<&Tls>) -> Result<Self, ConnectError> {
        let connect_error = |message: String| ConnectError {
            url: url.to_string(),
            message,
        };
        let channel = scot_tls::endpoint(url, tls, None)
            .map_err(|e| connect_error(scot_proto::error_chain(&e)))?
            .connect_timeout(CONNECT_TIMEOUT)
            .connect()
            .await
            .map_err(|e| connect_error(scot_proto::error_chain(&e)))?;
        // Drafts and reasoning can be long: lift tonic's 4 MiB decoding default to the contract's limit.
        Ok(Self {
            inner: CoordinatorServiceClient::new(channel)
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
        })
    }

    /// Runs one Solve call; `deadline` becomes the request's gRPC timeout. Every event but the
    /// result goes to `on_event` in stream order.
    pub async fn solve(
        &self,
        request: SolveRequest,
        deadline: Option<Duration>,
        mut on_event: impl FnMut(&Event),
    ) -> Result<SolveResult, Status> {
        let mut call = tonic::Request::new(request);
        if let Some(deadline) = deadline {
            call.set_timeout(deadline);
        }
        let mut stream = self.inner.clone().solve(call).await?.into_inner();
        while let Some(event) = stream.message().await? {
            match event.event {
                Some(Event::Result(result)) => return Ok(result),
                Some(event) => on_event(&event),
                None => {}
            }
        }
        Err(Status::unavailable(
            "the coordinator ended the stream without a result",
        ))
    }
}

/// A status as one line of text, `Code: message`, the way every caller reports a failed call.
pub fn status_text(status: &Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unreachable_coordinator_is_a_clear_error() {
        let err = SolveClient::connect("http://127.0.0.1:1", None)
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("cannot connect to the coordinator at http://127.0.0.1:1: "),
            "{text}"
        );
        assert!(text.len() > "cannot connect to the coordinator at http://127.0.0.1:1: ".len());
        assert_eq!(Status::from(err).code(), tonic::Code::Unavailable);
        let err = SolveClient::connect("not a url", None).await.unwrap_err();
        assert!(err.to_string().contains("not a url"), "{err}");
    }
}
