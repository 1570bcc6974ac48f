//! What the model's engine loop batched (continuous batching), as node counters: decoding batches
//! and the sequences stepped in them (their ratio is the mean batch size), and passes run alone.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex, PoisonError};

use prometheus_client::metrics::counter::Counter;
use scot_engine::{Model, StepStats};

struct StepCounters {
    batches: Counter,
    rows: Counter,
    others: Counter,
    /// What each model's loop had run when last recorded (keyed by the model's address: a test
    /// process may hold several nodes).
    seen: Mutex<HashMap<usize, StepStats>>,
}

static COUNTERS: LazyLock<StepCounters> = LazyLock::new(|| {
    let counters = StepCounters {
        batches: Counter::default(),
        rows: Counter::default(),
        others: Counter::default(),
        seen: Mutex::new(HashMap::new()),
    };
    scot_telemetry::register(
        "scot_node_decode_batches",
        "Decoding batches the engine loop ran (one forward pass each, all requests' sequences together)",
        counters.batches.clone(),
    );
    scot_telemetry::register(
        "scot_node_decode_rows",
        "Sequences stepped in those batches (rows / batches = mean batch size)",
        counters.rows.clone(),
    );
    scot_telemetry::register(
        "scot_node_single_passes",
        "Forward passes the engine loop ran alone (prefill chunks, speculative verifications)",
        counters.others.clone(),
    );
    counters
});

/// Adds what `model`'s engine loop ran since the last call to the node's counters.
pub fn record_steps(model: &Model) {
    let now = model.step_stats();
    let counters = &*COUNTERS;
    let mut seen = counters.seen.lock().unwrap_or_else(PoisonError::into_inner);
    let before = seen
        .insert(model as *const Model as usize, now)
        .unwrap_or_default();
    counters
        .batches
        .inc_by(now.decode_batches.saturating_sub(before.decode_batches));
    counters
        .rows
        .inc_by(now.decode_rows.saturating_sub(before.decode_rows));
    counters
        .others
        .inc_by(now.other_passes.saturating_sub(before.other_passes));
}
