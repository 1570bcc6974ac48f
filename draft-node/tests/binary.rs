//! The `draft-node` binary on its own: flags and environment, and a clear error for a bad model path.
//! (Also makes `cargo test --workspace` build the binary the root e2e tests start.)

#[macro_use]
#[path = "../../node-support/tests/shared/node_binary.rs"]
mod node_binary;

node_binary_tests!(env!("CARGO_BIN_EXE_draft-node"));
