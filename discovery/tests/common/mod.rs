//! The real etcd every discovery test runs against lives in the crate (feature `test-etcd`), so
//! other crates' tests share it.

pub use scot_discovery::test_etcd::*;
