//! What scot's draft and target nodes share: model flags and loading, the model's chat format for the
//! prompt templates, engine jobs run off the async runtime (with cancellation and deadlines), the
//! model's fingerprint, the mapping of engine errors to gRPC statuses, the gRPC server and its health (NOT_SERVING once a
//! tensor-parallel rank failed), the binaries' process bootstrap, and logging/shutdown.

pub mod discovery_registration;
pub mod engine_chat;
pub mod engine_job;
pub mod grpc_server;
pub mod model_args;
pub mod model_identity;
pub mod node_failure;
pub mod node_process;
pub mod runtime;
pub mod status;

pub use discovery_registration::serve_registered;
pub use engine_chat::{EngineChat, ThinkingPrompt};
pub use engine_job::{run_engine_job, spawn_engine_stream, EngineGate};
pub use grpc_server::{serve_node, NodeError};
pub use model_args::{parse_device, ModelArgs, NodeModel, RankFault};
pub use model_identity::{model_fingerprint, FingerprintError};
pub use node_failure::{NodeFailure, RankFailure};
pub use node_process::{run_node_process, NodeProcessArgs, NodeProcessError};
pub use runtime::{init_tracing, shutdown_signal};
pub use status::{engine_status, template_status};
