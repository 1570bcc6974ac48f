//! scot-node-support: the node runtime scot's draft and target nodes share.
//!
//! Loading: the model flags ([`ModelArgs`]) load a [`NodeModel`] (model, template sets, engine gate)
//! with the model's [fingerprint](model_fingerprint). Requests: [`NodeModel::prompts`] builds one
//! request's prompts with the model's chat format and fits them to its context; engine work runs off
//! the async runtime behind a bounded [`EngineGate`] ([`spawn_engine_stream`], [`run_engine_job`])
//! with cancellation and deadlines; [`finish_reason`], [`engine_status`] and [`template_status`] put
//! engine results in the contract's words; [`request_id`] names the call in the logs. Serving:
//! [`serve_node`] runs the gRPC server and health (NOT_SERVING once a tensor-parallel rank failed, see
//! [`NodeFailure`]); [`serve_registered`] announces the node in etcd; a [`NodeStop`] drains both
//! (NOT_SERVING and out of etcd first, accepted work finished within a grace period). Processes:
//! [`run_node_process`] is a node binary's process (telemetry, metrics, etcd), on
//! [`run_server_process`], which any scot server process shares.

mod discovery_registration;
mod engine_chat;
mod engine_job;
mod finish_reason;
mod grpc_server;
mod model_args;
mod model_identity;
mod node_failure;
mod node_model;
mod node_process;
mod node_stop;
mod request_id;
mod runtime;
mod status;

pub use discovery_registration::serve_registered;
pub use engine_chat::ThinkingPrompt;
pub use engine_job::{run_engine_job, spawn_engine_stream, EngineGate, JobSender};
pub use finish_reason::finish_reason;
pub use grpc_server::{serve_node, NodeError};
pub use model_args::{parse_device, LoadError, ModelArgs, RankFault, DEFAULT_MAX_QUEUED};
pub use model_identity::{model_fingerprint, FingerprintError};
pub use node_failure::{NodeFailure, RankFailure};
pub use node_model::{FittedPrompt, NodeModel, NodePrompts};
pub use node_process::{run_node_process, NodeProcessArgs, NodeProcessError};
pub use node_stop::{NodeStop, DEFAULT_DRAIN_GRACE_SECS};
pub use request_id::request_id;
pub use runtime::{run_server_process, shutdown_signal, ProcessError};
pub use status::{engine_status, template_status};
