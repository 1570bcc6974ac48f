//! The HTTP API's routes, errors and admission without models: the target node's address is a closed
//! port, so every solve fails the way an unreachable target does.

mod common;

use common::{coordinator_config, http_request, serve_coordinator_http};
use scot_coordinator::{serve_http, Coordinator};
use tokio_util::sync::CancellationToken;

const DEAD_TARGET: &str = "127.0.0.1:9";
const PROBLEM: &str =
    r#"{"model": "scot", "messages": [{"role": "user", "content": "What is 2+2?"}]}"#;

fn json(body: &str) -> serde_json::Value {
    let start = body.find('{').unwrap_or(0);
    let end = body.rfind('}').map_or(body.len(), |i| i + 1);
    serde_json::from_str(&body[start..end]).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_models_metrics_and_openai_errors() {
    let config = coordinator_config(&[
        "--target-node",
        DEAD_TARGET,
        "--health-timeout-ms",
        "300",
        "--served-model-name",
        "scot-test",
    ]);
    let addr = serve_coordinator_http(&config, CancellationToken::new()).await;

    let (status, _, body) = http_request(addr, "GET", "/health", &[], "").await;
    assert_eq!((status, json(&body)["status"].as_str()), (200, Some("ok")));

    let (status, _, body) = http_request(addr, "GET", "/ready", &[], "").await;
    let ready = json(&body);
    assert_eq!(status, 503, "{body}");
    assert_eq!(ready["target"]["ready"], false);
    // Nodes are named by id; their addresses stay inside the cluster.
    assert_eq!(ready["target"]["node"], "target-0");
    assert!(!body.contains(DEAD_TARGET), "{body}");

    let (status, _, body) = http_request(addr, "GET", "/v1/models", &[], "").await;
    assert_eq!(status, 200);
    assert_eq!(json(&body)["data"][0]["id"], "scot-test");

    let (status, _, body) = http_request(addr, "GET", "/nope", &[], "").await;
    assert_eq!(status, 404);
    assert_eq!(json(&body)["error"]["type"], "invalid_request_error");

    let cases = [
        ("{not json", None),
        (
            r#"{"model": "scot-test", "messages": []}"#,
            Some("messages"),
        ),
        (
            r#"{"model": "scot-test", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}"#,
            Some("max_tokens"),
        ),
        (
            r#"{"model": "scot-test", "messages": [{"role": "user", "content": "hi"}], "scot": {"select_after_k": 9, "n": 2}}"#,
            Some("scot.select_after_k"),
        ),
    ];
    for (request, param) in cases {
        let (status, _, body) =
            http_request(addr, "POST", "/v1/chat/completions", &[], request).await;
        assert_eq!(status, 400, "{request}: {body}");
        let error = &json(&body)["error"];
        assert_eq!(error["type"], "invalid_request_error", "{body}");
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert_eq!(error["param"].as_str(), param, "{body}");
        assert!(error.get("code").is_some(), "{body}");
    }
    let (status, _, body) = http_request(addr, "POST", "/v1/chat/completions", &[], PROBLEM).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(json(&body)["error"]["code"], "model_not_found");

    let request = PROBLEM.replace("\"scot\"", "\"scot-test\"");
    let (status, head, body) = http_request(
        addr,
        "POST",
        "/v1/chat/completions",
        &[("x-request-id", "req-42")],
        &request,
    )
    .await;
    assert_eq!(status, 503, "an unreachable target is a 503: {body}");
    assert!(
        head.to_ascii_lowercase().contains("x-request-id: req-42"),
        "{head}"
    );
    let error = &json(&body)["error"];
    assert_eq!(error["code"], "unavailable", "{body}");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("target-0 (") && !message.contains(DEAD_TARGET),
        "{body}"
    );

    // Once the 200 of a stream is out, a failure is an error object in the stream, then [DONE].
    let streamed = request.replace("\"messages\"", "\"stream\": true, \"messages\"");
    let (status, head, body) =
        http_request(addr, "POST", "/v1/chat/completions", &[], &streamed).await;
    assert_eq!(status, 200, "{body}");
    assert!(head.contains("text/event-stream"), "{head}");
    assert!(body.contains("\"role\":\"assistant\""), "{body}");
    assert!(body.contains("data: {\"error\":{"), "{body}");
    assert!(body.contains("data: [DONE]"), "{body}");

    let (status, head, body) = http_request(addr, "GET", "/metrics", &[], "").await;
    assert_eq!(status, 200);
    assert!(head.contains("text"), "{head}");
    for line in [
        "scot_requests_total{api=\"http\",outcome=\"invalid\"}",
        "scot_requests_total{api=\"http\",outcome=\"unavailable\"}",
        "scot_http_max_concurrent_requests ",
        "scot_draft_pool_nodes{state=\"reachable\"} 0",
        "# EOF",
    ] {
        assert!(body.contains(line), "/metrics lacks {line}:\n{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_capacity_is_a_429() {
    let config = coordinator_config(&[
        "--target-node",
        DEAD_TARGET,
        "--max-concurrent-requests",
        "2",
    ]);
    let coordinator = Coordinator::build(&config).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve_http(
        listener,
        coordinator.http_router(),
        config.http.connection_limits(),
        CancellationToken::new(),
    ));

    // Two requests in flight fill the server.
    let held = coordinator
        .admission()
        .permits()
        .acquire_many_owned(2)
        .await
        .unwrap();
    let (status, head, body) =
        http_request(addr, "POST", "/v1/chat/completions", &[], PROBLEM).await;
    assert_eq!(status, 429, "{body}");
    assert!(
        head.to_ascii_lowercase().contains("retry-after: 1"),
        "{head}"
    );
    let error = &json(&body)["error"];
    assert_eq!(error["code"], "over_capacity", "{body}");
    assert_eq!(error["type"], "rate_limit_error", "{body}");

    drop(held);
    let (status, _, body) = http_request(addr, "POST", "/v1/chat/completions", &[], PROBLEM).await;
    assert_eq!(status, 503, "admitted once capacity frees up: {body}");
}

/// With API keys the `/v1` routes need `Authorization: Bearer` (401 in OpenAI's shape otherwise), the
/// probes stay open, a rewritten keys file takes effect without a restart, and a key over its rate
/// gets a 429.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_guard_the_api_and_rotate_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let keys_file = dir.path().join("api-keys");
    std::fs::write(&keys_file, "# team a\nsk-file-old\n").unwrap();
    let config = coordinator_config(&[
        "--target-node",
        DEAD_TARGET,
        "--health-timeout-ms",
        "300",
        "--api-keys-file",
        keys_file.to_str().unwrap(),
        "--api-keys",
        "sk-env",
        "--api-key-rate-limit",
        "3",
    ]);
    let addr = serve_coordinator_http(&config, CancellationToken::new()).await;
    let get = |path: &'static str, key: Option<&'static str>| async move {
        let header = key.map(|k| format!("Bearer {k}"));
        let headers: Vec<(&str, &str)> = header
            .as_deref()
            .map(|h| vec![("Authorization", h)])
            .unwrap_or_default();
        http_request(addr, "GET", path, &headers, "").await
    };

    for key in [None, Some("sk-wrong"), Some("")] {
        let (status, _, body) = get("/v1/models", key).await;
        assert_eq!(status, 401, "{key:?}: {body}");
        let error = &json(&body)["error"];
        assert_eq!(error["code"], "invalid_api_key", "{body}");
        assert_eq!(error["type"], "invalid_request_error", "{body}");
    }
    let (status, _, body) = http_request(addr, "POST", "/v1/chat/completions", &[], PROBLEM).await;
    assert_eq!(status, 401, "a completion without a key: {body}");
    for path in ["/health", "/metrics"] {
        let (status, _, body) = get(path, None).await;
        assert_eq!(status, 200, "{path} stays open: {body}");
    }
    let (status, _, body) = get("/v1/models", Some("sk-file-old")).await;
    assert_eq!(status, 200, "{body}");

    // Rotation: the file now holds only the new key; within a few seconds the old one is refused.
    std::fs::write(&keys_file, "sk-file-new\n").unwrap();
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(10);
    std::fs::File::options()
        .write(true)
        .open(&keys_file)
        .unwrap()
        .set_modified(later)
        .unwrap();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if get("/v1/models", Some("sk-file-new")).await.0 == 200 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new key never took effect"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(get("/v1/models", Some("sk-file-old")).await.0, 401);

    // sk-env: 3 per minute, then 429 with the limit named.
    for _ in 0..3 {
        assert_eq!(get("/v1/models", Some("sk-env")).await.0, 200);
    }
    let (status, head, body) = get("/v1/models", Some("sk-env")).await;
    assert_eq!(status, 429, "{body}");
    assert!(head.to_ascii_lowercase().contains("retry-after"), "{head}");
    assert_eq!(
        json(&body)["error"]["code"],
        "rate_limit_exceeded",
        "{body}"
    );
    assert!(
        json(&body)["error"]["message"]
            .as_str()
            .unwrap()
            .contains("3 requests per minute"),
        "{body}"
    );
}

/// An unreadable keys file stops the coordinator at start, naming the file.
#[tokio::test]
async fn a_missing_keys_file_is_a_start_error() {
    let config = coordinator_config(&[
        "--target-node",
        DEAD_TARGET,
        "--api-keys-file",
        "/nonexistent/scot-api-keys",
    ]);
    let error = Coordinator::build(&config).err().expect("refused");
    assert!(
        error.to_string().contains("/nonexistent/scot-api-keys"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_listener_takes_ready_and_metrics_off_the_api_port() {
    let config = coordinator_config(&[
        "--target-node",
        DEAD_TARGET,
        "--admin-listen",
        "127.0.0.1:0",
        "--health-timeout-ms",
        "300",
    ]);
    let coordinator = Coordinator::build(&config).unwrap();
    let limits = config.http.connection_limits();
    let serve = |router: axum::Router| async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve_http(
            listener,
            router,
            limits,
            CancellationToken::new(),
        ));
        addr
    };
    let api = serve(coordinator.http_router()).await;
    let admin = serve(coordinator.admin_router()).await;

    for path in ["/ready", "/metrics"] {
        let (status, _, body) = http_request(api, "GET", path, &[], "").await;
        assert_eq!(status, 404, "{path} on the API port: {body}");
        assert_eq!(json(&body)["error"]["type"], "invalid_request_error");
    }
    let (status, _, _) = http_request(api, "GET", "/health", &[], "").await;
    assert_eq!(status, 200);
    let (status, _, _) = http_request(api, "GET", "/v1/models", &[], "").await;
    assert_eq!(status, 200);

    let (status, _, body) = http_request(admin, "GET", "/ready", &[], "").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(json(&body)["target"]["node"], "target-0");
    let (status, _, body) = http_request(admin, "GET", "/metrics", &[], "").await;
    assert_eq!(status, 200);
    assert!(body.contains("# EOF"), "{body}");
    let (status, _, _) = http_request(admin, "GET", "/health", &[], "").await;
    assert_eq!(status, 200);
    let (status, _, _) = http_request(admin, "GET", "/v1/models", &[], "").await;
    assert_eq!(status, 404, "the API is not on the admin port");
}
