//! scot's coordinator: the front door. It fans a request's drafts over the draft pool, runs selection
//! and the answer on a target node, and streams phase events and the final answer with its stats.

pub mod admission;
pub mod config;
pub mod discovered_nodes;
pub mod draft_pool;
pub mod drafting;
pub mod http;
pub mod metrics;
pub mod node_health;
pub mod node_pool;
pub mod node_source;
pub mod placement;
pub mod selection_policy;
pub mod service;
pub mod solve;
pub mod solve_task;
pub mod straggler;
pub mod target_pool;
pub mod timing;
pub mod validation;
pub mod wait_queue;

pub use config::{CoordinatorConfig, SolveDefaults};
pub use discovered_nodes::DiscoveredNodes;
pub use draft_pool::DraftPool;
pub use node_source::{NodeSource, PoolMember, StaticNodes};
pub use service::{
    build_service, build_service_with_sources, serve, CoordinatorError, CoordinatorServiceImpl,
};
pub use target_pool::TargetPool;
