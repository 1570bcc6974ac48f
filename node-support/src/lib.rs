//! scot-node-support: the node runtime scot's draft and target nodes share.
//!
//! Loading: the model flags ([`ModelArgs`]) load a [`NodeModel`] (model, template sets, engine gate)
//! with the model's [fingerprint](model_fingerprint), and optionally a speculative draft beside it
//! ([`SpeculativeArgs`]). Requests: the node's [`EngineGate`] admits a
//! call or refuses it at once ([`Admitted`]); [`NodeModel::prompts`] builds its prompts with the
//! model's chat format and fits them to the context, on the blocking pool; the engine job runs off the
//! async runtime once it has a turn and its [`KvBudget`] room (jobs running at once share the
//! model's decoding steps: the engine batches them; [`record_steps`] counts the batches) ([`spawn_engine_stream`],
//! [`run_engine_job`]), with cancellation and deadlines; [`NodeLoadServer`] reports what the gate holds
//! to coordinators. [`finish_reason`], [`engine_status`] and [`template_status`] put engine results in
//! the contract's words; [`request_id`] names the call in the logs. Serving: [`serve_node`] runs the
//! gRPC server and health (NOT_SERVING once a tensor-parallel rank failed, see [`NodeFailure`]);
//! [`serve_registered`] announces the node in etcd; a [`NodeStop`] drains both (NOT_SERVING and out
//! of etcd first, accepted work finished within a grace period). Processes: [`run_node_process`] is a
//! node binary's process (telemetry, metrics, etcd), on [`run_server_process`], which any scot server
//! process shares.

mod discovery_registration;
mod engine_chat;
mod engine_gate;
mod engine_job;
mod finish_reason;
mod grpc_server;
mod kv_budget;
mod model_args;
mod model_identity;
mod node_failure;
mod node_load;
mod node_model;
mod node_process;
mod node_stop;
mod request_id;
mod runtime;
mod speculation;
mod status;
mod step_metrics;
mod stream_chunks;

pub use discovery_registration::serve_registered;
pub use engine_chat::ThinkingPrompt;
pub use engine_gate::{Admitted, EngineGate};
pub use engine_job::{run_engine_job, spawn_engine_stream, JobSender, STREAM_BUFFER};
pub use finish_reason::finish_reason;
pub use grpc_server::{serve_node, NodeError};
pub use kv_budget::{default_cpu_budget_bytes, mib_to_bytes, KvBudget, KvNeed};
pub use model_args::{
    parse_device, LoadError, ModelArgs, RankFault, DEFAULT_MAX_CONCURRENT, DEFAULT_MAX_QUEUED,
};
pub use model_identity::{model_fingerprint, FingerprintError};
pub use node_failure::{NodeFailure, RankFailure};
pub use node_load::NodeLoadServer;
pub use node_model::{FittedPrompt, NodeModel, NodePrompts};
pub use node_process::{run_node_process, NodeProcessArgs, NodeProcessError};
pub use node_stop::{NodeStop, DEFAULT_DRAIN_GRACE_SECS};
pub use request_id::request_id;
pub use runtime::{run_server_process, shutdown_signal, ProcessError};
pub use speculation::{record_speculation, SpeculativeArgs, DEFAULT_SPECULATIVE_TOKENS};
pub use status::{engine_status, template_status};
pub use step_metrics::record_steps;
pub use stream_chunks::{ChunkPolicy, TokenChunk, TokenChunker};
