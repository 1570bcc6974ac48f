//! What the local-cluster benchmarks (`chaos-bench`, `load-bench`) share: how they run (one compute
//! thread per node process, a small async runtime) and how they summarise latencies.

use std::future::Future;
use std::time::Duration;

/// Runs a benchmark's `main` future. The model processes it starts share this machine, so each gets
/// one compute thread unless `RAYON_NUM_THREADS` says otherwise: thread pools of several processes
/// on the same cores spin-wait against each other, which would measure the machine's
/// oversubscription, not the nodes.
pub fn run_local_bench<F: Future<Output = anyhow::Result<()>>>(bench: F) -> anyhow::Result<()> {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        std::env::set_var("RAYON_NUM_THREADS", "1");
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(bench)
}

/// The `p` quantile (0..=1) of `walls` in seconds, nearest rank; 0 for none.
pub fn percentile_secs(walls: &mut [Duration], p: f64) -> f64 {
    if walls.is_empty() {
        return 0.0;
    }
    walls.sort();
    let at = ((walls.len() as f64 * p).ceil() as usize).clamp(1, walls.len()) - 1;
    walls[at].as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_take_the_nearest_rank() {
        let mut walls: Vec<Duration> = (1..=10).rev().map(Duration::from_secs).collect();
        assert_eq!(percentile_secs(&mut walls, 0.5), 5.0);
        assert_eq!(percentile_secs(&mut walls, 0.99), 10.0);
        assert_eq!(percentile_secs(&mut [], 0.5), 0.0);
    }
}
