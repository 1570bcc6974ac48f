//! A node's KV-cache memory budget, counted in context positions (one position of one sequence, over
//! every layer). A job reserves what its sequences can grow to (prompt + caps, as the cache allocates
//! them) before it runs and gives it back when it ends, so the node never allocates past the budget
//! however many requests arrive; a job that could never fit is refused with the numbers.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::Status;

/// Default budget: this share of the memory free when the model finished loading (the rest is
/// activations, the runtime and other processes on the machine).
pub const DEFAULT_KV_SHARE_OF_FREE_MEMORY: f64 = 0.5;

/// What one job's sequences may grow to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvNeed {
    /// Sequences held at once (a draft batch: one per draft plus the prompt it forks from).
    pub sequences: usize,
    /// Positions each may reach (prompt + everything it may generate).
    pub positions: usize,
}

/// The budget and what is free of it.
#[derive(Debug, Clone)]
pub struct KvBudget {
    /// None: no budget (only the context bounds a job).
    tokens: Option<usize>,
    free: Arc<Semaphore>,
    bytes_per_token: usize,
    context: usize,
}

/// A job's reservation, given back when dropped.
#[derive(Debug)]
pub struct KvReservation {
    _permit: Option<OwnedSemaphorePermit>,
}

const MIB: u64 = 1 << 20;

impl KvBudget {
    /// `bytes` of KV cache (None or 0: no budget) for a model whose positions take `bytes_per_token`
    /// and whose context is `context` tokens.
    pub fn new(bytes: Option<u64>, bytes_per_token: usize, context: usize) -> Self {
        let tokens = bytes.filter(|&b| b > 0).map(|b| {
            // The semaphore counts at most u32::MAX permits per acquire: far beyond any real budget.
            (b / bytes_per_token.max(1) as u64).min(u64::from(u32::MAX)) as usize
        });
        Self {
            tokens,
            free: Arc::new(Semaphore::new(tokens.unwrap_or(0))),
            bytes_per_token,
            context,
        }
    }

    /// No budget: jobs are bounded by the context only.
    pub fn unlimited(bytes_per_token: usize, context: usize) -> Self {
        Self::new(None, bytes_per_token, context)
    }

    /// The budget in positions (None: no budget).
    pub fn tokens(&self) -> Option<usize> {
        self.tokens
    }

    /// Positions not reserved now (0 without a budget).
    pub fn free_tokens(&self) -> usize {
        self.free.available_permits()
    }

    pub fn bytes_per_token(&self) -> usize {
        self.bytes_per_token
    }

    /// Positions the cache allocates for `need`.
    pub fn tokens_for(&self, need: KvNeed) -> usize {
        need.sequences
            .saturating_mul(scot_engine::kv_allocated_positions(
                need.positions,
                self.context,
            ))
    }

    /// A job that needs more than the whole budget: RESOURCE_EXHAUSTED with the numbers (another
    /// node may have a larger budget). Checked before the job waits for room.
    pub fn check(&self, need: KvNeed) -> Result<(), Status> {
        let Some(budget) = self.tokens else {
            return Ok(());
        };
        let wanted = self.tokens_for(need);
        if wanted > budget {
            return Err(Status::resource_exhausted(format!(
                "the request needs {wanted} positions of KV cache ({} sequence(s) x {} positions, {} MiB) \
                 but this node's whole budget is {budget} positions ({} MiB, --kv-budget-mib): lower \
                 the token caps or the number of drafts",
                need.sequences,
                need.positions,
                self.mib(wanted),
                self.mib(budget),
            )));
        }
        Ok(())
    }

    /// Waits until `need` fits what is free and reserves it (FIFO: a large job is not passed over by
    /// smaller ones behind it). Call [`KvBudget::check`] first: a need beyond the budget waits forever.
    pub async fn reserve(&self, need: KvNeed) -> Result<KvReservation, Status> {
        if self.tokens.is_none() {
            return Ok(KvReservation { _permit: None });
        }
        let wanted = u32::try_from(self.tokens_for(need)).unwrap_or(u32::MAX);
        let permit = self
            .free
            .clone()
            .acquire_many_owned(wanted)
            .await
            .map_err(|_| Status::unavailable("node is shutting down"))?;
        Ok(KvReservation {
            _permit: Some(permit),
        })
    }

    fn mib(&self, tokens: usize) -> u64 {
        (tokens as u64 * self.bytes_per_token as u64).div_ceil(MIB)
    }
}

/// `--kv-budget-mib` in bytes.
pub fn mib_to_bytes(mib: u64) -> u64 {
    mib.saturating_mul(MIB)
}

/// The default budget on a CPU node: [`DEFAULT_KV_SHARE_OF_FREE_MEMORY`] of the memory available now
/// (the machine's `MemAvailable`, or what the cgroup's `memory.max` leaves, whichever is less). None
/// where neither can be read.
pub fn default_cpu_budget_bytes() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok();
    let machine = meminfo.as_deref().and_then(mem_available);
    let cgroup = cgroup_headroom(
        std::fs::read_to_string("/sys/fs/cgroup/memory.max").ok(),
        std::fs::read_to_string("/sys/fs/cgroup/memory.current").ok(),
    );
    let available = match (machine, cgroup) {
        (Some(m), Some(c)) => m.min(c),
        (m, c) => m.or(c)?,
    };
    Some((available as f64 * DEFAULT_KV_SHARE_OF_FREE_MEMORY) as u64)
}

/// `MemAvailable` in bytes from /proc/meminfo.
fn mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib.saturating_mul(1024))
}

/// What a cgroup v2 memory limit leaves (`memory.max` - `memory.current`); None without a limit.
fn cgroup_headroom(max: Option<String>, current: Option<String>) -> Option<u64> {
    let max: u64 = max?.trim().parse().ok()?; // "max" (no limit) does not parse
    let current: u64 = current?.trim().parse().ok()?;
    Some(max.saturating_sub(current))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn machine_and_cgroup_memory_are_read() {
        let meminfo = "MemTotal:       24000000 kB\nMemFree:  100 kB\nMemAvailable:   2000 kB\n";
        assert_eq!(mem_available(meminfo), Some(2000 * 1024));
        assert_eq!(mem_available("MemTotal: 1 kB\n"), None);
        assert_eq!(
            cgroup_headroom(Some("1000\n".into()), Some("400\n".into())),
            Some(600)
        );
        assert_eq!(
            cgroup_headroom(Some("max\n".into()), Some("400\n".into())),
            None
        );
        assert!(default_cpu_budget_bytes().is_some_and(|b| b > 0));
    }

    #[test]
    fn needs_count_what_the_cache_allocates_and_too_much_is_refused_with_the_numbers() {
        // 1 KiB per position, context 4096: 8 MiB = 8192 positions.
        let budget = KvBudget::new(Some(mib_to_bytes(8)), 1024, 4096);
        assert_eq!(budget.tokens(), Some(8192));
        // The cache grows in steps of 512 positions, up to the context.
        let need = KvNeed {
            sequences: 3,
            positions: 600,
        };
        assert_eq!(budget.tokens_for(need), 3 * 1024);
        let capped = KvNeed {
            sequences: 1,
            positions: 100_000,
        };
        assert_eq!(budget.tokens_for(capped), 4096);
        assert!(budget.check(need).is_ok());
        let too_big = KvNeed {
            sequences: 5,
            positions: 4000,
        };
        let status = budget.check(too_big).unwrap_err();
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        let message = status.message();
        assert!(
            message.contains("needs 20480 positions")
                && message.contains("5 sequence(s) x 4000 positions")
                && message.contains("budget is 8192 positions (8 MiB"),
            "{message}"
        );
        assert!(KvBudget::unlimited(1024, 4096).check(too_big).is_ok());
        assert_eq!(KvBudget::new(Some(0), 1024, 4096).tokens(), None);
    }

    #[tokio::test]
    async fn reservations_wait_for_room_and_give_it_back() {
        let budget = KvBudget::new(Some(mib_to_bytes(1)), 1024, 4096); // 1024 positions
        let half = KvNeed {
            sequences: 1,
            positions: 512,
        };
        let first = budget.reserve(half).await.unwrap();
        let second = budget.reserve(half).await.unwrap();
        assert_eq!(budget.free_tokens(), 0);
        let third = tokio::spawn({
            let budget = budget.clone();
            async move { budget.reserve(half).await.map(|_| ()) }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!third.is_finished(), "reserved past the budget");
        drop(first);
        tokio::time::timeout(Duration::from_secs(5), third)
            .await
            .expect("room given back")
            .unwrap()
            .unwrap();
        drop(second);
        assert_eq!(budget.free_tokens(), 1024);
    }
}
