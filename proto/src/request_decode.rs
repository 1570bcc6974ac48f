//! A server layer for every scot gRPC server: a request message the server cannot decode (a string
//! field that is not UTF-8, a truncated message) is the caller's error, INVALID_ARGUMENT, where
//! tonic answers INTERNAL for any protobuf decode failure.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::HeaderValue;

/// How tonic-prost words a decode failure (prost's `DecodeError` display).
const DECODE_FAILURE: &str = "failed to decode Protobuf message";
const GRPC_STATUS: &str = "grpc-status";
const GRPC_MESSAGE: &str = "grpc-message";
const CODE_INTERNAL: &str = "13";
const CODE_INVALID_ARGUMENT: &str = "3";

/// `Server::builder().layer(RequestDecodeLayer)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestDecodeLayer;

impl<S> tower::Layer<S> for RequestDecodeLayer {
    type Service = RequestDecode<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestDecode { inner }
    }
}

#[derive(Debug, Clone)]
pub struct RequestDecode<S> {
    inner: S,
}

impl<S, B, R> tower::Service<http::Request<B>> for RequestDecode<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let future = self.inner.call(request);
        Box::pin(async move {
            let mut response = future.await?;
            // A request that fails to decode gets a trailers-only response: the status is in the
            // headers, before any message.
            let headers = response.headers_mut();
            let decode_failure = headers.get(GRPC_STATUS).map(HeaderValue::as_bytes)
                == Some(CODE_INTERNAL.as_bytes())
                && headers
                    .get(GRPC_MESSAGE)
                    .and_then(|m| m.to_str().ok())
                    .is_some_and(|m| m.replace("%20", " ").starts_with(DECODE_FAILURE));
            if decode_failure {
                headers.insert(GRPC_STATUS, HeaderValue::from_static(CODE_INVALID_ARGUMENT));
            }
            Ok(response)
        })
    }
}
