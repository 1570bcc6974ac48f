//! When each SIMULATED node call of a request was in progress (handler entry to last message), kept
//! in-process so the benchmark can tell node time from the time the coordinator (and the network) adds.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeCallKind {
    Draft,
    Select,
    Generate,
}

#[derive(Debug, Clone, Copy)]
pub struct NodeCall {
    pub kind: NodeCallKind,
    pub start: Instant,
    pub end: Instant,
}

/// Shared by every simulated node of a run; keyed by request id.
#[derive(Debug, Clone, Default)]
pub struct SimulatedCallLedger {
    calls: Arc<Mutex<HashMap<String, Vec<NodeCall>>>>,
}

impl SimulatedCallLedger {
    pub fn record(&self, request_id: &str, call: NodeCall) {
        if let Ok(mut calls) = self.calls.lock() {
            calls.entry(request_id.to_string()).or_default().push(call);
        }
    }

    pub fn calls(&self, request_id: &str) -> Vec<NodeCall> {
        self.calls
            .lock()
            .ok()
            .and_then(|calls| calls.get(request_id).cloned())
            .unwrap_or_default()
    }

    /// Time within [start, end] during which at least one of the request's node calls was running.
    pub fn node_time(&self, request_id: &str, start: Instant, end: Instant) -> Duration {
        covered(&self.calls(request_id), start, end)
    }
}

/// Length of the union of the calls' intervals, clipped to [start, end].
pub fn covered(calls: &[NodeCall], start: Instant, end: Instant) -> Duration {
    let mut spans: Vec<(Instant, Instant)> = calls
        .iter()
        .map(|c| (c.start.max(start), c.end.min(end)))
        .filter(|(s, e)| s < e)
        .collect();
    spans.sort_by_key(|&(s, _)| s);
    let mut total = Duration::ZERO;
    let mut current: Option<(Instant, Instant)> = None;
    for (s, e) in spans {
        current = match current {
            Some((cs, ce)) if s <= ce => Some((cs, ce.max(e))),
            Some((cs, ce)) => {
                total += ce - cs;
                Some((s, e))
            }
            None => Some((s, e)),
        };
    }
    if let Some((cs, ce)) = current {
        total += ce - cs;
    }
    total
}

/// Records a call's end when dropped (also when the caller went away mid-stream).
pub struct CallRecorder {
    ledger: SimulatedCallLedger,
    request_id: String,
    kind: NodeCallKind,
    start: Instant,
    done: bool,
}

impl CallRecorder {
    pub fn start(ledger: &SimulatedCallLedger, request_id: &str, kind: NodeCallKind) -> Self {
        Self {
            ledger: ledger.clone(),
            request_id: request_id.to_string(),
            kind,
            start: Instant::now(),
            done: false,
        }
    }

    pub fn started(&self) -> Instant {
        self.start
    }

    pub fn finish(&mut self) {
        if !self.done {
            self.done = true;
            self.ledger.record(
                &self.request_id,
                NodeCall {
                    kind: self.kind,
                    start: self.start,
                    end: Instant::now(),
                },
            );
        }
    }
}

impl Drop for CallRecorder {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn union_of_overlapping_calls() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let call = |s, e| NodeCall {
            kind: NodeCallKind::Draft,
            start: at(s),
            end: at(e),
        };
        let calls = [call(10, 50), call(20, 60), call(70, 80), call(95, 200)];
        // [10,60] + [70,80] + [95,100] clipped to end 100.
        assert_eq!(covered(&calls, at(0), at(100)), Duration::from_millis(65));
        assert_eq!(covered(&[], at(0), at(100)), Duration::ZERO);
    }
}
