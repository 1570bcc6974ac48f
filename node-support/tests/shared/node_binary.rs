//! Checks every node binary (`draft-node`, `target-node`) passes on its own: flags and environment, a
//! clear error for a bad model path or device. Included by each node crate's `tests/binary.rs` with
//! `#[path]`, called with that crate's `CARGO_BIN_EXE_…`.

use std::process::Command;

pub fn help_lists_the_configuration_flags(bin: &str) {
    let output = Command::new(bin)
        .arg("--help")
        .output()
        .expect("binary runs");
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in [
        "--listen",
        "--model",
        "--lora",
        "--device",
        "--max-context",
        "--templates-dir",
        "--tp",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
    assert!(
        !help.contains("fault-inject"),
        "test hooks stay out of --help:\n{help}"
    );
    assert!(
        help.contains("SCOT_MODEL"),
        "flags can come from the environment:\n{help}"
    );
}

pub fn a_missing_model_file_is_a_clear_startup_error(bin: &str) {
    let output = Command::new(bin)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--model",
            "/nonexistent/model.gguf",
        ])
        .env("RUST_LOG", "off")
        .output()
        .expect("binary runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("/nonexistent/model.gguf"), "{stderr}");
}

pub fn zero_tensor_parallel_ranks_are_rejected(bin: &str) {
    let output = Command::new(bin)
        .args(["--model", "/x.gguf", "--tp", "0"])
        .output()
        .expect("binary runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("at least 1"), "{stderr}");
}

pub fn an_unknown_device_is_rejected(bin: &str) {
    let output = Command::new(bin)
        .args(["--model", "/x.gguf", "--device", "tpu"])
        .output()
        .expect("binary runs");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("cpu, cuda or cuda:N"));
}

/// The checks above as `#[test]`s for the binary `$bin` (a `CARGO_BIN_EXE_…` path).
macro_rules! node_binary_tests {
    ($bin:expr) => {
        #[test]
        fn help_lists_the_configuration_flags() {
            node_binary::help_lists_the_configuration_flags($bin);
        }

        #[test]
        fn a_missing_model_file_is_a_clear_startup_error() {
            node_binary::a_missing_model_file_is_a_clear_startup_error($bin);
        }

        #[test]
        fn zero_tensor_parallel_ranks_are_rejected() {
            node_binary::zero_tensor_parallel_ranks_are_rejected($bin);
        }

        #[test]
        fn an_unknown_device_is_rejected() {
            node_binary::an_unknown_device_is_rejected($bin);
        }
    };
}
