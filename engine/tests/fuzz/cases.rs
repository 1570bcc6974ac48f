//! The case count every property test runs (shared by the engine's and the templates' fuzz tests):
//! 64 in a normal `cargo test`, `PROPTEST_CASES` for a longer run (SECURITY.md).

use proptest::test_runner::Config as ProptestConfig;

pub fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    ProptestConfig {
        cases,
        // Failures print their minimal input; no regression files in the source tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}
