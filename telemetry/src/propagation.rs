//! W3C trace context (`traceparent`, `tracestate`) across process boundaries: injected into the
//! metadata of outgoing gRPC requests, extracted from incoming HTTP/gRPC headers to parent the
//! server's span, so one request is one trace across the coordinator and its nodes.

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TraceContextExt as _;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// Writes propagation fields into tonic metadata.
pub struct MetadataInjector<'a>(pub &'a mut MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            MetadataKey::from_bytes(key.as_bytes()),
            MetadataValue::try_from(value.as_str()),
        ) {
            self.0.insert(key, value);
        }
    }
}

/// Reads propagation fields from HTTP headers (gRPC metadata is HTTP/2 headers).
pub struct HeaderExtractor<'a>(pub &'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|key| key.as_str()).collect()
    }
}

/// Adds the current span's trace context to outgoing gRPC metadata (nothing when tracing is off).
pub fn inject_current_context(metadata: &mut MetadataMap) {
    let context = tracing::Span::current().context();
    if !context.span().span_context().is_valid() {
        return;
    }
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut MetadataInjector(metadata))
    });
}

/// The remote trace context in `headers` (an empty context when there is none).
pub fn extract_context(headers: &http::HeaderMap) -> opentelemetry::Context {
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&HeaderExtractor(headers))
    })
}

/// Makes `span` a child of the caller's span when the headers carry a valid trace context.
pub fn set_parent_from_headers(span: &tracing::Span, headers: &http::HeaderMap) {
    let context = extract_context(headers);
    if context.span().span_context().is_valid() {
        // Fails only when the span is disabled or already started; then there is nothing to parent.
        let _ = span.set_parent(context);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::propagation::TextMapPropagator;
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
    use opentelemetry_sdk::propagation::TraceContextPropagator;

    #[test]
    fn traceparent_round_trips_through_metadata_and_headers() {
        let span_context = SpanContext::new(
            TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").unwrap(),
            SpanId::from_hex("b7ad6b7169203331").unwrap(),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        );
        let context = opentelemetry::Context::new().with_remote_span_context(span_context.clone());
        let propagator = TraceContextPropagator::new();
        let mut metadata = MetadataMap::new();
        propagator.inject_context(&context, &mut MetadataInjector(&mut metadata));
        assert_eq!(
            metadata.get("traceparent").unwrap().to_str().unwrap(),
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        );
        let headers = metadata.into_headers();
        let extracted = propagator.extract(&HeaderExtractor(&headers));
        assert_eq!(
            extracted.span().span_context().trace_id(),
            span_context.trace_id()
        );
        assert!(extracted.span().span_context().is_remote());
    }

    #[test]
    fn missing_or_garbled_headers_give_no_parent() {
        let propagator = TraceContextPropagator::new();
        let mut headers = http::HeaderMap::new();
        assert!(!propagator
            .extract(&HeaderExtractor(&headers))
            .span()
            .span_context()
            .is_valid());
        headers.insert("traceparent", http::HeaderValue::from_static("00-zz-yy-01"));
        assert!(!propagator
            .extract(&HeaderExtractor(&headers))
            .span()
            .span_context()
            .is_valid());
    }
}
