//! The `scot` command line's library: a local cluster of real node processes on loopback (what
//! `scot run` / `scot up` start, and what the integration tests use), the default models, the
//! request flags and the report printed after a solve (the Solve client is `scot_client`), and what
//! the local-cluster benchmarks share.

pub mod cluster;
pub mod local_bench;
pub mod models;
pub mod report;
pub mod solve_args;

pub use cluster::{ClusterError, ClusterSpec, LocalCluster};
