//! scot's coordinator: the front door. It fans a request's drafts over the draft pool, runs selection
//! and the answer on a target node, and streams phase events and the final answer with its stats.
//!
//! - wiring: `config` (flags) → `server` (pools, Solver, front door; serves both doors)
//! - doors: `service` (gRPC Solve), `http` (OpenAI-compatible API, probes, metrics) → `front_door`
//!   (admission, `validation`, `request_fit` against the nodes' reported limits, request id) →
//!   `solve_task` (one request on its own task, its events to the client through `event_queue`)
//! - one request: `solve` (the phases, recorded by `solve_stats`) → `drafting` (places the drafts and
//!   reads their streams onto the `draft_board`; `straggler`) → `selection_policy` → `request_target`
//!   (selection and the answer on a target, made again on another when one fails before any output)
//! - pools: `draft_pool` / `target_pool` over `node_pool` (members from a discovery through
//!   `pool_members`; `node_health` with each node's load report, `wait_queue`, `placement`)
//! - `metrics`, `timing`

mod admission;
mod config;
mod draft_board;
mod draft_pool;
mod drafting;
mod event_queue;
mod front_door;
mod http;
mod metrics;
mod node_health;
mod node_pool;
mod placement;
mod pool_members;
mod request_fit;
mod request_target;
mod selection_policy;
mod server;
mod service;
mod solve;
mod solve_stats;
mod solve_task;
mod straggler;
mod target_pool;
mod timing;
mod validation;
mod wait_queue;

pub use config::{CoordinatorConfig, HttpConfig, SolveDefaults};
pub use draft_pool::DraftPool;
pub use http::{serve_http, ConnectionLimits};
pub use server::{serve, Coordinator, CoordinatorError};
pub use solve::Solver;
pub use target_pool::TargetPool;
