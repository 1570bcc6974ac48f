//! A tower layer for scot's gRPC servers: each call gets a `grpc.server` span parented on the caller's
//! trace context (W3C `traceparent` in the metadata), and is counted in the process registry: calls by
//! method and final status, calls in flight, and call duration. A call lasts until its response stream
//! ends (streamed work happens after the response headers), so the span and the in-flight gauge follow
//! the response body.

use std::future::Future;
use std::pin::Pin;
use std::sync::LazyLock;
use std::task::{Context, Poll};
use std::time::Instant;

use http_body::{Body, Frame, SizeHint};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use tower::{Layer, Service};
use tracing::Instrument;

use crate::propagation::set_parent_from_headers;
use crate::registry::register;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    method: String,
    code: String,
}

struct GrpcMetrics {
    calls: Family<CallLabels, Counter>,
    in_flight: Family<MethodLabels, Gauge>,
    duration: Family<MethodLabels, Histogram>,
}

static METRICS: LazyLock<GrpcMetrics> = LazyLock::new(|| {
    let metrics = GrpcMetrics {
        calls: Family::default(),
        in_flight: Family::default(),
        duration: Family::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.005, 2.0, 18))
        }),
    };
    register(
        "scot_grpc_server_calls",
        "gRPC calls served, by method and final status (CANCELLED: the caller dropped the stream)",
        metrics.calls.clone(),
    );
    register(
        "scot_grpc_server_in_flight",
        "gRPC calls being served now (until their response stream ends), by method",
        metrics.in_flight.clone(),
    );
    register(
        "scot_grpc_server_call_duration_seconds",
        "gRPC call duration from request to the end of the response stream, by method",
        metrics.duration.clone(),
    );
    metrics
});

/// Tracing and metrics for a tonic server: `Server::builder().layer(GrpcServerLayer)`.
#[derive(Clone, Copy, Debug, Default)]
pub struct GrpcServerLayer;

impl<S> Layer<S> for GrpcServerLayer {
    type Service = GrpcServerService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcServerService { inner }
    }
}

#[derive(Clone, Debug)]
pub struct GrpcServerService<S> {
    inner: S,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, ResBody> Service<http::Request<B>> for GrpcServerService<S>
where
    S: Service<http::Request<B>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: 'static,
    ResBody: Body + Send + 'static,
{
    type Response = http::Response<TrackedBody<ResBody>>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let method = request.uri().path().to_string();
        let span = tracing::info_span!(
            "grpc.server",
            otel.name = %method,
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.method = %method,
        );
        set_parent_from_headers(&span, request.headers());
        // Labels only from routed methods: a caller must not grow the label set with made-up paths.
        let call = CallRecord::start(scot_proto::methods::method_label(&method).to_string());
        let response = self.inner.call(request).instrument(span.clone());
        Box::pin(async move {
            let response = response.await?;
            let mut call = call;
            // A trailers-only response (an error before any message) has its status in the headers.
            if let Some(code) = grpc_status(response.headers()) {
                call.code = Some(code);
            }
            Ok(response.map(|body| TrackedBody {
                inner: Box::pin(body),
                call: Some(call),
                _span: span,
            }))
        })
    }
}

/// The response body of a tracked call: finishes the call's record when the stream ends or is dropped.
pub struct TrackedBody<B> {
    inner: Pin<Box<B>>,
    call: Option<CallRecord>,
    _span: tracing::Span,
}

impl<B: Body> Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = self.inner.as_mut().poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(code) = frame.trailers_ref().and_then(grpc_status) {
                    if let Some(call) = self.call.as_mut() {
                        call.code = Some(code);
                    }
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(call) = self.call.as_mut() {
                    call.code = Some("TRANSPORT_ERROR".to_string());
                }
                self.call = None;
            }
            Poll::Ready(None) => self.call = None,
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// One call in flight; dropping it records the call.
struct CallRecord {
    method: String,
    started: Instant,
    code: Option<String>,
}

impl CallRecord {
    fn start(method: String) -> Self {
        METRICS
            .in_flight
            .get_or_create(&MethodLabels {
                method: method.clone(),
            })
            .inc();
        Self {
            method,
            started: Instant::now(),
            code: None,
        }
    }
}

impl Drop for CallRecord {
    fn drop(&mut self) {
        let labels = MethodLabels {
            method: std::mem::take(&mut self.method),
        };
        METRICS.in_flight.get_or_create(&labels).dec();
        METRICS
            .duration
            .get_or_create(&labels)
            .observe(self.started.elapsed().as_secs_f64());
        // No status seen: the body was dropped before its trailers, i.e. the caller went away.
        let code = self.code.take().unwrap_or_else(|| "CANCELLED".to_string());
        METRICS
            .calls
            .get_or_create(&CallLabels {
                method: labels.method,
                code,
            })
            .inc();
    }
}

fn grpc_status(headers: &http::HeaderMap) -> Option<String> {
    let value = headers.get("grpc-status")?.to_str().ok()?;
    let code = value.parse::<i32>().ok()?;
    Some(code_name(tonic::Code::from_i32(code)).to_string())
}

fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_are_named() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(grpc_status(&headers), None);
        headers.insert("grpc-status", http::HeaderValue::from_static("3"));
        assert_eq!(grpc_status(&headers).as_deref(), Some("INVALID_ARGUMENT"));
        headers.insert("grpc-status", http::HeaderValue::from_static("0"));
        assert_eq!(grpc_status(&headers).as_deref(), Some("OK"));
    }
}
