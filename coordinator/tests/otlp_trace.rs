//! One request is one trace across the coordinator, the draft node and the target node: the spans
//! arrive at a loopback OTLP/gRPC receiver, and the nodes' server spans are children of the
//! coordinator's solve span through the W3C trace context carried in gRPC metadata.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{http_request, start_cluster};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::Span;

#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<Vec<Span>>>);

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.0.lock().unwrap();
        for resource in request.into_inner().resource_spans {
            for scope in resource.scope_spans {
                spans.extend(scope.spans);
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_spans_coordinator_and_nodes() {
    let receiver = Receiver::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let otlp = listener.local_addr().unwrap();
    let server = receiver.clone();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(server))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
            .unwrap()
    });
    // Set before any thread reads the environment (the exporter reads it at init).
    std::env::set_var("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{otlp}"));
    std::env::set_var("OTEL_BSP_SCHEDULE_DELAY", "200");
    let telemetry = Arc::new(scot_telemetry::init("scot-test").expect("telemetry"));
    assert!(telemetry.exporting());

    // The paper's read-out always runs the selection prefill, so its spans are in every trace.
    let cluster = start_cluster(&["--default-selection-policy", "paper"]).await;
    // A caller's trace context on the HTTP request becomes the trace of the whole request.
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let traceparent = format!("00-{trace_id}-00f067aa0ba902b7-01");
    let body = r#"{"messages": [{"role": "user", "content": "What is 1+1?"}], "max_tokens": 8,
        "n_drafts": 2, "scot": {"draft_max_tokens": 16, "thinking_max_tokens": 16}}"#;
    let (status, _, response) = http_request(
        cluster.http,
        "POST",
        "/v1/chat/completions",
        &[("traceparent", &traceparent)],
        body,
    )
    .await;
    assert_eq!(status, 200, "{response}");

    let wanted = [
        "POST /v1/chat/completions",
        "solve",
        "/scot.v1.DraftService/Draft",
        "draft",
        "/scot.v1.TargetService/Select",
        "select",
        "/scot.v1.TargetService/Generate",
        "generate",
    ];
    let deadline = Instant::now() + Duration::from_secs(60);
    let spans: Vec<Span> = loop {
        let flushing = telemetry.clone();
        tokio::task::spawn_blocking(move || flushing.flush())
            .await
            .unwrap();
        let spans: Vec<Span> = receiver
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|s| hex(&s.trace_id) == trace_id)
            .cloned()
            .collect();
        let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
        if wanted.iter().all(|w| names.contains(w)) {
            break spans;
        }
        assert!(
            Instant::now() < deadline,
            "spans of the trace never all arrived; got {names:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let by_id: HashMap<String, &Span> = spans.iter().map(|s| (hex(&s.span_id), s)).collect();
    let parent_name = |span: &Span| -> Option<&str> {
        by_id
            .get(&hex(&span.parent_span_id))
            .map(|p| p.name.as_str())
    };
    let named = |name: &str| -> &Span { spans.iter().find(|s| s.name == name).unwrap() };
    // The HTTP span's parent is the caller's (remote) span.
    assert_eq!(
        hex(&named("POST /v1/chat/completions").parent_span_id),
        "00f067aa0ba902b7"
    );
    assert_eq!(
        parent_name(named("solve")),
        Some("POST /v1/chat/completions")
    );
    for rpc in [
        "/scot.v1.DraftService/Draft",
        "/scot.v1.TargetService/Select",
        "/scot.v1.TargetService/Generate",
    ] {
        assert_eq!(parent_name(named(rpc)), Some("solve"), "{rpc}'s parent");
    }
    assert_eq!(
        parent_name(named("draft")),
        Some("/scot.v1.DraftService/Draft")
    );
    assert_eq!(
        parent_name(named("select")),
        Some("/scot.v1.TargetService/Select")
    );
    assert_eq!(
        parent_name(named("generate")),
        Some("/scot.v1.TargetService/Generate")
    );
    cluster.stop.cancel();
}
