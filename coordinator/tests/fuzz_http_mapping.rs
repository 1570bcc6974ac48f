//! Property tests of the HTTP body's parsing, validation and mapping, through the API's own router
//! in this process (no socket): any bytes and any JSON built from the OpenAI fields with values of
//! any type get a status in OpenAI's error shape, never a 500 or a panic. A request that passes
//! validation reaches the target pool, which has no live node here (503).

#[path = "../../engine/tests/fuzz/cases.rs"]
mod cases;
mod common;

use std::sync::OnceLock;

use axum::body::Body;
use axum::http::Request;
use proptest::prelude::*;
use serde_json::{json, Map, Value};
use tower::ServiceExt;

fn router() -> axum::Router {
    static COORDINATOR: OnceLock<scot_coordinator::Coordinator> = OnceLock::new();
    let coordinator = COORDINATOR.get_or_init(|| {
        let config = common::coordinator_config(&[
            "--target-node",
            "127.0.0.1:9",
            "--health-timeout-ms",
            "200",
        ]);
        scot_coordinator::Coordinator::build(&config).expect("coordinator")
    });
    coordinator.http_router()
}

/// The status and the body's JSON of one POST to the chat route.
fn post(body: Vec<u8>) -> (u16, Value) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let request = Request::post("/v1/chat/completions")
            .header("content-type", "application/json")
            .body(Body::from(body))
            .unwrap();
        let response = router().oneshot(request).await.unwrap();
        let status = response.status().as_u16();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    })
}

/// Any JSON value, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        any::<String>().prop_map(Value::from),
        Just(json!("user")),
        Just(json!("What is 2 + 3?")),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

const FIELDS: &[&str] = &[
    "model",
    "messages",
    "stream",
    "stream_options",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "seed",
    "n",
    "n_drafts",
    "stop",
    "logprobs",
    "tools",
    "scot",
    "user",
];

/// A request object: some of the known fields, each with a value of any type (messages often
/// well formed, so validation gets past them).
fn request_object() -> impl Strategy<Value = Value> {
    let message = (
        prop::sample::select(vec!["user", "system", "assistant", "tool", ""]),
        prop_oneof![any::<String>().prop_map(Value::from), any_json()],
    )
        .prop_map(|(role, content)| json!({"role": role, "content": content}));
    let messages = prop_oneof![
        3 => prop::collection::vec(message, 0..3).prop_map(Value::from),
        1 => any_json(),
    ];
    (
        messages,
        prop::collection::vec((prop::sample::select(FIELDS.to_vec()), any_json()), 0..5),
    )
        .prop_map(|(messages, fields)| {
            let mut object = Map::new();
            object.insert("messages".into(), messages);
            for (name, value) in fields {
                if name != "messages" {
                    object.insert(name.into(), value);
                }
            }
            Value::Object(object)
        })
}

fn is_openai_error(body: &Value) -> bool {
    body["error"]["message"].is_string() && body["error"]["type"].is_string()
}

proptest! {
    #![proptest_config(cases::config())]

    #[test]
    fn any_bytes_get_a_client_error(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let (status, body) = post(bytes);
        prop_assert!(status == 400 || status == 503, "{status} {body}");
        prop_assert!(is_openai_error(&body), "{body}");
    }

    #[test]
    fn any_request_object_is_mapped_or_refused_in_openai_shape(request in request_object()) {
        let (status, body) = post(serde_json::to_vec(&request).unwrap());
        // A valid streamed request starts its event stream (200) and reports the failure in it.
        if status == 200 {
            prop_assert_eq!(&request["stream"], &json!(true), "{}", request);
            return Ok(());
        }
        // 400 invalid, 404 unknown model; a request that passes validation is solved, and with no
        // target node up that is a 503. Never a 500.
        prop_assert!(matches!(status, 400 | 404 | 503), "{status} for {request}: {body}");
        prop_assert!(is_openai_error(&body), "{request}: {body}");
    }
}

/// The baseline the properties rest on: a well-formed request passes validation and reaches the
/// (dead) target pool.
#[test]
fn a_valid_request_reaches_the_pool() {
    let request = json!({"messages": [{"role": "user", "content": "What is 2 + 3?"}]});
    let (status, body) = post(serde_json::to_vec(&request).unwrap());
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
}
