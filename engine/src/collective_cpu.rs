//! `CpuCollective`: the collective operations between rank threads of one process.
//!
//! A generation barrier (Mutex + Condvar): each rank deposits its tensor; the last to arrive
//! combines them in rank order (so every run, and every rank, gets the same bits) and wakes the
//! others. `abort` marks the collective failed for good: ranks waiting in it, and any rank that
//! enters it later, return `EngineError::RankFailed` at once instead of waiting for a rank that
//! will never come.

use std::sync::{Condvar, Mutex, MutexGuard};

use candle_core::Tensor;

use crate::collective::Collective;
use crate::error::{EngineError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Sum,
    Gather(usize),
}

#[derive(Debug)]
struct State {
    /// Completed rounds; a waiter is done once this moves past the round it joined.
    generation: u64,
    op: Option<Op>,
    inputs: Vec<Option<Tensor>>,
    arrived: usize,
    /// The last completed round's combined tensor (or why combining failed).
    result: Option<std::result::Result<Tensor, String>>,
    /// The first failure: (rank, reason).
    failed: Option<(usize, String)>,
}

#[derive(Debug)]
pub struct CpuCollective {
    world: usize,
    state: Mutex<State>,
    wake: Condvar,
}

impl CpuCollective {
    pub fn new(world: usize) -> Self {
        Self {
            world,
            state: Mutex::new(State {
                generation: 0,
                op: None,
                inputs: vec![None; world],
                arrived: 0,
                result: None,
                failed: None,
            }),
            wake: Condvar::new(),
        }
    }

    /// The first failure reported through `abort` (or by a mismatched call), if any.
    pub fn failure(&self) -> Option<(usize, String)> {
        self.lock().failed.clone()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking rank never holds this lock while running model code; recover regardless.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn failed_error(failed: &(usize, String)) -> EngineError {
        EngineError::RankFailed {
            rank: failed.0,
            reason: failed.1.clone(),
        }
    }

    fn exchange(&self, rank: usize, t: &Tensor, op: Op) -> Result<Tensor> {
        if rank >= self.world {
            return Err(EngineError::InvalidRequest(format!(
                "rank {rank} is outside a world of {}",
                self.world
            )));
        }
        let mut state = self.lock();
        if let Some(failed) = &state.failed {
            return Err(Self::failed_error(failed));
        }
        if state.inputs[rank].is_some() {
            return self.fail_locked(state, rank, "entered a collective twice in one round");
        }
        match state.op {
            None => state.op = Some(op),
            Some(current) if current != op => {
                let why = format!("called {op:?} while the other ranks called {current:?}");
                return self.fail_locked(state, rank, &why);
            }
            Some(_) => {}
        }
        state.inputs[rank] = Some(t.clone());
        state.arrived += 1;
        if state.arrived == self.world {
            let inputs: Vec<Tensor> = state.inputs.iter_mut().filter_map(Option::take).collect();
            let combined = combine(&inputs, op).map_err(|e| e.to_string());
            state.arrived = 0;
            state.op = None;
            state.generation = state.generation.wrapping_add(1);
            state.result = Some(combined.clone());
            self.wake.notify_all();
            return match combined {
                Ok(t) => Ok(t),
                Err(why) => self.fail_locked(state, rank, &why),
            };
        }
        let joined = state.generation;
        loop {
            state = self.wake.wait(state).unwrap_or_else(|p| p.into_inner());
            if state.generation != joined {
                // The round completed; the next cannot complete without this rank, so the
                // stored result is still this round's.
                return match &state.result {
                    Some(Ok(t)) => Ok(t.clone()),
                    Some(Err(why)) => Err(EngineError::RankFailed {
                        rank,
                        reason: why.clone(),
                    }),
                    None => Err(EngineError::InvalidRequest(
                        "collective lost its result".into(),
                    )),
                };
            }
            if let Some(failed) = &state.failed {
                return Err(Self::failed_error(failed));
            }
        }
    }

    fn fail_locked(
        &self,
        mut state: MutexGuard<'_, State>,
        rank: usize,
        reason: &str,
    ) -> Result<Tensor> {
        let failed = state
            .failed
            .get_or_insert_with(|| (rank, reason.to_string()))
            .clone();
        self.wake.notify_all();
        Err(Self::failed_error(&failed))
    }
}

/// Sum in rank order, or concatenation in rank order.
fn combine(inputs: &[Tensor], op: Op) -> Result<Tensor> {
    match op {
        Op::Sum => {
            let mut iter = inputs.iter();
            let first = iter
                .next()
                .ok_or_else(|| EngineError::InvalidRequest("no inputs".into()))?;
            let mut acc = first.clone();
            for t in iter {
                acc = (acc + t)?;
            }
            Ok(acc)
        }
        Op::Gather(dim) => Ok(Tensor::cat(inputs, dim)?),
    }
}

impl Collective for CpuCollective {
    fn world_size(&self) -> usize {
        self.world
    }

    fn all_reduce_sum(&self, rank: usize, t: &Tensor) -> Result<Tensor> {
        if self.world == 1 {
            return Ok(t.clone());
        }
        self.exchange(rank, t, Op::Sum)
    }

    fn all_gather(&self, rank: usize, t: &Tensor, dim: usize) -> Result<Tensor> {
        if self.world == 1 {
            return Ok(t.clone());
        }
        self.exchange(rank, t, Op::Gather(dim))
    }

    fn abort(&self, failed_rank: usize, reason: &str) {
        let mut state = self.lock();
        if state.failed.is_none() {
            state.failed = Some((failed_rank, reason.to_string()));
        }
        self.wake.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use candle_core::Device;

    use super::*;

    fn vec_of(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1().unwrap()
    }

    #[test]
    fn all_reduce_and_all_gather_give_every_rank_the_same_result() {
        let world = 3;
        let c = Arc::new(CpuCollective::new(world));
        let results: Vec<(Vec<f32>, Vec<f32>)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..world)
                .map(|rank| {
                    let c = c.clone();
                    s.spawn(move || {
                        let mut sums = Vec::new();
                        let mut gathered = Vec::new();
                        for round in 0..50 {
                            let t = Tensor::new(&[[rank as f32 + round as f32, 1.0]], &Device::Cpu)
                                .unwrap();
                            sums = vec_of(&c.all_reduce_sum(rank, &t).unwrap());
                            // Uneven contributions along dim 1.
                            let g = Tensor::new(vec![rank as f32; rank + 1], &Device::Cpu)
                                .unwrap()
                                .reshape((1, rank + 1))
                                .unwrap();
                            gathered = vec_of(&c.all_gather(rank, &g, 1).unwrap());
                        }
                        (sums, gathered)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (sums, gathered) in &results {
            assert_eq!(sums, &vec![3.0 + 3.0 * 49.0, 3.0]);
            assert_eq!(gathered, &vec![0.0, 1.0, 1.0, 2.0, 2.0, 2.0]);
        }
    }

    #[test]
    fn abort_releases_waiting_and_later_ranks() {
        let c = Arc::new(CpuCollective::new(3));
        let started = Instant::now();
        let outcomes: Vec<Result<Tensor>> = std::thread::scope(|s| {
            let waiters: Vec<_> = (0..2)
                .map(|rank| {
                    let c = c.clone();
                    s.spawn(move || {
                        let t = Tensor::new(&[1f32], &Device::Cpu).unwrap();
                        c.all_reduce_sum(rank, &t)
                    })
                })
                .collect();
            // Rank 2 fails instead of arriving.
            std::thread::sleep(Duration::from_millis(50));
            c.abort(2, "injected");
            waiters.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(started.elapsed() < Duration::from_secs(10));
        for outcome in outcomes {
            match outcome {
                Err(EngineError::RankFailed { rank, reason }) => {
                    assert_eq!(rank, 2);
                    assert_eq!(reason, "injected");
                }
                other => panic!("expected RankFailed, got {other:?}"),
            }
        }
        let t = Tensor::new(&[1f32], &Device::Cpu).unwrap();
        assert!(matches!(
            c.all_gather(0, &t, 0),
            Err(EngineError::RankFailed { rank: 2, .. })
        ));
        assert_eq!(c.failure(), Some((2, "injected".to_string())));
    }

    #[test]
    fn mismatched_operations_fail_every_rank() {
        let c = Arc::new(CpuCollective::new(2));
        let outcomes: Vec<bool> = std::thread::scope(|s| {
            let a = {
                let c = c.clone();
                s.spawn(move || {
                    let t = Tensor::new(&[1f32], &Device::Cpu).unwrap();
                    c.all_reduce_sum(0, &t).is_err()
                })
            };
            std::thread::sleep(Duration::from_millis(20));
            let t = Tensor::new(&[1f32], &Device::Cpu).unwrap();
            let b = c.all_gather(1, &t, 0).is_err();
            vec![a.join().unwrap(), b]
        });
        assert_eq!(outcomes, vec![true, true]);
    }
}
