//! The `scot` command line's library: a local cluster of real node processes on loopback (what
//! `scot run` / `scot up` start, and what the integration tests use), the default models, the Solve
//! client and the report printed after a solve.

pub mod client;
pub mod cluster;
pub mod models;
pub mod report;
pub mod solve_args;

pub use cluster::{ClusterError, ClusterSpec, LocalCluster};
