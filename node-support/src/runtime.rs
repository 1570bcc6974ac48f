//! Graceful shutdown, the same for every scot binary.

pub use scot_telemetry::shutdown_signal;
