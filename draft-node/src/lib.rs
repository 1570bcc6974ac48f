//! draft-node (work in progress)
