//! The SIMULATED accelerator of one node: a continuous-batching loop on a virtual clock. Jobs queue
//! for a prefill (charged per prompt token, one job at a time), then their sequences join the running
//! batch; every decode step advances all running sequences by one token and costs the step time of the
//! current batch size, so packing many sequences on one node is slower per token than spreading them.
//! Prefills and decode steps alternate so running sequences keep moving while new jobs arrive.
//!
//! Time: the loop adds each charge to its virtual clock and sleeps until the clock when it is more than
//! a millisecond ahead of wall time, so sub-millisecond steps (small time scales) batch up between
//! sleeps. When the process cannot keep up (the harness itself is CPU-starved) the clock is allowed to
//! trail wall time by at most `MAX_LAG`; anything beyond is counted as `lag` so a run can say when its
//! timings were bent by the harness.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::cost_profile::{scaled, SimulatedModelCost};

/// How far the virtual clock may trail wall time before the difference is dropped (and counted).
const MAX_LAG: Duration = Duration::from_millis(20);

/// What the scheduler tells a job.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SchedulerEvent {
    /// The job's prompt is in the (simulated) cache.
    Prefilled { prompt_tokens: usize },
    /// Sequence `seq` has `generated` tokens (every `report_every` tokens, and not on the last one).
    Token { seq: usize, generated: usize },
    /// Sequence `seq` is done after `generated` tokens.
    Finished { seq: usize, generated: usize },
}

/// The receiving end of one job (a service call turns events into its gRPC messages).
pub trait JobSink: Send {
    /// Delivers an event; false when the caller went away (the job is then dropped).
    fn deliver(&mut self, event: SchedulerEvent) -> bool;
    /// True when the caller went away before the job ran.
    fn is_cancelled(&self) -> bool;
}

/// One unit of work for a node: a prefill, then `sequence_tokens.len()` sequences decoding together.
pub struct SimulatedJob {
    pub prefill_tokens: usize,
    /// Tokens each sequence generates; empty = a prefill-only job (selection).
    pub sequence_tokens: Vec<usize>,
    /// Token events go out every this many tokens of a sequence (1 = every token).
    pub report_every: usize,
    pub sink: Box<dyn JobSink>,
}

/// Counters of one node's simulated accelerator.
#[derive(Debug, Default)]
pub struct SchedulerStats {
    pub jobs: AtomicU64,
    pub prefill_tokens: AtomicU64,
    pub decode_steps: AtomicU64,
    /// Sum over decode steps of the batch size (mean batch = this / decode_steps).
    pub batched_tokens: AtomicU64,
    /// Virtual busy time (scaled, microseconds).
    pub busy_us: AtomicU64,
    /// Time the virtual clock fell behind wall time beyond `MAX_LAG` and was dropped (microseconds).
    pub lag_us: AtomicU64,
}

impl SchedulerStats {
    pub fn mean_batch(&self) -> f64 {
        let steps = self.decode_steps.load(Ordering::Relaxed);
        if steps == 0 {
            0.0
        } else {
            self.batched_tokens.load(Ordering::Relaxed) as f64 / steps as f64
        }
    }
}

/// Handle to a node's scheduler loop (which runs until every handle is dropped).
#[derive(Clone)]
pub struct SimulatedBatchScheduler {
    jobs: mpsc::UnboundedSender<SimulatedJob>,
    stats: Arc<SchedulerStats>,
}

impl SimulatedBatchScheduler {
    /// Starts the loop on the current tokio runtime.
    pub fn spawn(cost: SimulatedModelCost, time_scale: f64) -> Self {
        let (jobs, rx) = mpsc::unbounded_channel();
        let stats = Arc::new(SchedulerStats::default());
        tokio::spawn(run_loop(cost, time_scale, rx, stats.clone()));
        Self { jobs, stats }
    }

    /// Queues a job; false when the loop has stopped.
    pub fn submit(&self, job: SimulatedJob) -> bool {
        self.jobs.send(job).is_ok()
    }

    pub fn stats(&self) -> Arc<SchedulerStats> {
        self.stats.clone()
    }
}

struct RunningSequence {
    target: usize,
    generated: usize,
}

struct RunningJob {
    sink: Box<dyn JobSink>,
    report_every: usize,
    sequences: Vec<RunningSequence>,
    live: usize,
    cancelled: bool,
}

impl RunningJob {
    /// Advances every unfinished sequence by one token.
    fn step(&mut self) {
        for (seq, sequence) in self.sequences.iter_mut().enumerate() {
            if self.cancelled || sequence.generated >= sequence.target {
                continue;
            }
            sequence.generated += 1;
            let event = if sequence.generated >= sequence.target {
                self.live -= 1;
                SchedulerEvent::Finished {
                    seq,
                    generated: sequence.generated,
                }
            } else if sequence.generated % self.report_every == 0 {
                SchedulerEvent::Token {
                    seq,
                    generated: sequence.generated,
                }
            } else {
                continue;
            };
            if !self.sink.deliver(event) {
                self.cancelled = true;
            }
        }
    }
}

struct VirtualClock {
    now: Instant,
    time_scale: f64,
    stats: Arc<SchedulerStats>,
}

impl VirtualClock {
    /// Charges `model_ms` of model time and waits until the clock when it is ahead of wall time.
    async fn charge(&mut self, model_ms: f64) {
        let cost = scaled(model_ms, self.time_scale);
        self.stats
            .busy_us
            .fetch_add(cost.as_micros() as u64, Ordering::Relaxed);
        self.now += cost;
        let wall = Instant::now();
        if self.now > wall + Duration::from_millis(1) {
            tokio::time::sleep_until(self.now.into()).await;
        } else if wall > self.now + MAX_LAG {
            let dropped = wall - self.now - MAX_LAG;
            self.stats
                .lag_us
                .fetch_add(dropped.as_micros() as u64, Ordering::Relaxed);
            self.now = wall - MAX_LAG;
        }
    }

    /// After an idle wait the clock restarts at wall time.
    fn wake(&mut self) {
        self.now = self.now.max(Instant::now());
    }
}

async fn run_loop(
    cost: SimulatedModelCost,
    time_scale: f64,
    mut rx: mpsc::UnboundedReceiver<SimulatedJob>,
    stats: Arc<SchedulerStats>,
) {
    let mut clock = VirtualClock {
        now: Instant::now(),
        time_scale,
        stats: stats.clone(),
    };
    let mut waiting: VecDeque<SimulatedJob> = VecDeque::new();
    let mut running: Vec<RunningJob> = Vec::new();
    loop {
        if running.is_empty() && waiting.is_empty() {
            match rx.recv().await {
                Some(job) => waiting.push_back(job),
                None => return,
            }
            clock.wake();
        }
        while let Ok(job) = rx.try_recv() {
            waiting.push_back(job);
        }
        waiting.retain(|job| !job.sink.is_cancelled());

        let batch: usize = running.iter().map(|job| job.live).sum();
        let fits = waiting.front().is_some_and(|job| {
            batch == 0 || batch + job.sequence_tokens.len() <= cost.max_batch.max(1)
        });
        if fits {
            if let Some(mut job) = waiting.pop_front() {
                stats.jobs.fetch_add(1, Ordering::Relaxed);
                stats
                    .prefill_tokens
                    .fetch_add(job.prefill_tokens as u64, Ordering::Relaxed);
                clock.charge(cost.prefill_ms(job.prefill_tokens)).await;
                let alive = job.sink.deliver(SchedulerEvent::Prefilled {
                    prompt_tokens: job.prefill_tokens,
                });
                if alive && !job.sequence_tokens.is_empty() {
                    let sequences: Vec<RunningSequence> = job
                        .sequence_tokens
                        .iter()
                        .map(|&target| RunningSequence {
                            target: target.max(1),
                            generated: 0,
                        })
                        .collect();
                    running.push(RunningJob {
                        sink: job.sink,
                        report_every: job.report_every.max(1),
                        live: sequences.len(),
                        sequences,
                        cancelled: false,
                    });
                }
            }
        }

        let batch: usize = running.iter().map(|job| job.live).sum();
        if batch > 0 {
            stats.decode_steps.fetch_add(1, Ordering::Relaxed);
            stats
                .batched_tokens
                .fetch_add(batch as u64, Ordering::Relaxed);
            clock.charge(cost.decode_step_ms(batch)).await;
            for job in running.iter_mut() {
                if !job.cancelled && job.sink.is_cancelled() {
                    job.cancelled = true;
                }
                job.step();
            }
            running.retain(|job| job.live > 0 && !job.cancelled);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    struct Recorder(Arc<Mutex<Vec<SchedulerEvent>>>);

    impl JobSink for Recorder {
        fn deliver(&mut self, event: SchedulerEvent) -> bool {
            self.0.lock().unwrap().push(event);
            true
        }
        fn is_cancelled(&self) -> bool {
            false
        }
    }

    fn cost() -> SimulatedModelCost {
        SimulatedModelCost {
            prefill_ms_per_token: 1.0,
            decode_step_ms_batch1: 1.0,
            decode_step_ms_batch_n: 2.0,
            batch_n: 2,
            max_batch: 8,
        }
    }

    #[tokio::test]
    async fn sequences_finish_with_their_lengths_and_progress() {
        let scheduler = SimulatedBatchScheduler::spawn(cost(), 0.001);
        let events = Arc::new(Mutex::new(Vec::new()));
        assert!(scheduler.submit(SimulatedJob {
            prefill_tokens: 10,
            sequence_tokens: vec![3, 5],
            report_every: 2,
            sink: Box::new(Recorder(events.clone())),
        }));
        for _ in 0..200 {
            if events.lock().unwrap().len() >= 6 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let events = events.lock().unwrap().clone();
        assert_eq!(
            events,
            vec![
                SchedulerEvent::Prefilled { prompt_tokens: 10 },
                SchedulerEvent::Token {
                    seq: 0,
                    generated: 2
                },
                SchedulerEvent::Token {
                    seq: 1,
                    generated: 2
                },
                SchedulerEvent::Finished {
                    seq: 0,
                    generated: 3
                },
                SchedulerEvent::Token {
                    seq: 1,
                    generated: 4
                },
                SchedulerEvent::Finished {
                    seq: 1,
                    generated: 5
                },
            ]
        );
        let stats = scheduler.stats();
        assert_eq!(stats.decode_steps.load(Ordering::Relaxed), 5);
        // Steps at batch 2, 2, 2, 1, 1.
        assert!((stats.mean_batch() - 1.6).abs() < 1e-9);
    }
}
