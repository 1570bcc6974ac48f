//! The `target-node` binary on its own: flags and environment, and a clear error for a bad model path.
//! (Also makes `cargo test --workspace` build the binary the root e2e tests start.)

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_target-node");

#[test]
fn help_lists_the_configuration_flags() {
    let output = Command::new(BIN)
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
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
    assert!(
        help.contains("SCOT_MODEL"),
        "flags can come from the environment:\n{help}"
    );
}

#[test]
fn a_missing_model_file_is_a_clear_startup_error() {
    let output = Command::new(BIN)
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

#[test]
fn an_unknown_device_is_rejected() {
    let output = Command::new(BIN)
        .args(["--model", "/x.gguf", "--device", "tpu"])
        .output()
        .expect("binary runs");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("cpu, cuda or cuda:N"));
}
