//! target-node (work in progress)
