//! What scot's draft and target nodes share: model flags and loading, the model's chat format for the
//! prompt templates, engine jobs run off the async runtime (with cancellation and deadlines), the
//! mapping of engine errors to gRPC statuses, and logging/shutdown.

pub mod discovery_registration;
pub mod engine_chat;
pub mod engine_job;
pub mod model_args;
pub mod runtime;
pub mod status;

pub use discovery_registration::serve_registered;
pub use engine_chat::{EngineChat, ThinkingPrompt};
pub use engine_job::{run_engine_job, spawn_engine_stream, EngineGate};
pub use model_args::{parse_device, ModelArgs, NodeModel};
pub use runtime::{init_tracing, shutdown_signal};
pub use status::{engine_status, template_status};
