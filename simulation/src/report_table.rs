//! Percentiles and the markdown tables the scale benchmark prints.

use std::time::Duration;

use scot_proto::AnswerPath;

use crate::scale_run::{RequestTiming, ScaleReport};

/// Nearest-rank percentile (`p` in 0..=100) of unsorted values; zero when empty.
pub fn percentile(values: &[Duration], p: f64) -> Duration {
    if values.is_empty() {
        return Duration::ZERO;
    }
    let mut sorted = values.to_vec();
    sorted.sort();
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

/// "p50 / p99" of `values` in milliseconds.
fn p50_p99(values: &[Duration]) -> String {
    format!(
        "{} / {}",
        ms(percentile(values, 50.0)),
        ms(percentile(values, 99.0))
    )
}

fn completed_durations(report: &ScaleReport, f: fn(&RequestTiming) -> Duration) -> Vec<Duration> {
    report
        .requests
        .iter()
        .filter(|r| r.outcome.result.is_ok())
        .map(f)
        .collect()
}

/// Table (a): one configuration in detail.
pub fn detail_table(report: &ScaleReport) -> String {
    let c = &report.config;
    let added = completed_durations(report, |r| r.added);
    let e2e = completed_durations(report, |r| r.end_to_end);
    let node = completed_durations(report, |r| r.node_time);
    let mut out = String::new();
    out.push_str("| metric | value |\n|---|---:|\n");
    let mut row = |k: &str, v: String| out.push_str(&format!("| {k} | {v} |\n"));
    row(
        "simulated draft nodes / target nodes",
        format!("{} / {}", c.draft_nodes, c.target_nodes),
    );
    row(
        "requests (concurrency)",
        format!("{} ({})", c.requests, c.concurrency),
    );
    row(
        "completed / failed",
        format!(
            "{} / {}",
            report.completed(),
            report.requests.len() - report.completed()
        ),
    );
    row(
        "paths: draft accepted / target correction / fallback",
        format!(
            "{} / {} / {}",
            report.path_count(AnswerPath::DraftAccepted),
            report.path_count(AnswerPath::TargetCorrection),
            report.path_count(AnswerPath::TargetFallback)
        ),
    );
    row(
        "wall time of the measured load (s)",
        format!("{:.2}", report.wall.as_secs_f64()),
    );
    row(
        "throughput (requests/s, wall)",
        format!("{:.1}", report.throughput()),
    );
    row(
        "coordinator CPU total (s)",
        format!("{:.2}", report.coordinator_cpu.as_secs_f64()),
    );
    row(
        "**coordinator CPU per request (ms)**",
        format!("**{}**", ms(report.cpu_per_request())),
    );
    row(
        "harness CPU (simulated nodes + client, s)",
        format!("{:.2}", report.harness_cpu.as_secs_f64()),
    );
    row("end-to-end latency p50 / p99 (ms)", p50_p99(&e2e));
    row("node time p50 / p99 (ms)", p50_p99(&node));
    row(
        "**latency added (e2e - node time) p50 / p99 / max (ms)**",
        format!(
            "**{} / {}** / {}",
            ms(percentile(&added, 50.0)),
            ms(percentile(&added, 99.0)),
            ms(percentile(&added, 100.0))
        ),
    );
    let wave = report.config.concurrency;
    if report.requests.len() > wave {
        // The first `concurrency` requests are sent at once (a burst); the rest each start when one
        // finishes (steady state at that concurrency).
        let split = |first: bool| -> Vec<Duration> {
            report
                .requests
                .iter()
                .enumerate()
                .filter(|(i, r)| (*i < wave) == first && r.outcome.result.is_ok())
                .map(|(_, r)| r.added)
                .collect()
        };
        let (burst, steady) = (split(true), split(false));
        row(
            "latency added, first wave (sent at once) p50 / p99 (ms)",
            p50_p99(&burst),
        );
        row(
            "**latency added, steady state (later requests) p50 / p99 (ms)**",
            format!("**{}**", p50_p99(&steady)),
        );
    }
    row(
        "mean draft batch / mean target batch (seqs per step)",
        format!(
            "{:.1} / {:.1}",
            report.drafts.mean_batch(),
            report.targets.mean_batch()
        ),
    );
    let spread: Vec<usize> = report
        .requests
        .iter()
        .filter(|r| r.outcome.result.is_ok())
        .map(|r| r.outcome.draft_nodes)
        .filter(|&k| k > 0)
        .collect();
    let mean_spread = spread.iter().sum::<usize>() as f64 / spread.len().max(1) as f64;
    row(
        "draft nodes per request (mean)",
        format!("{mean_spread:.2}"),
    );
    row(
        "harness lag dropped: drafts / targets (s of node time)",
        format!(
            "{:.2} / {:.2}",
            report.drafts.lag.as_secs_f64(),
            report.targets.lag.as_secs_f64()
        ),
    );
    out
}

/// Where the added latency falls between the phases (over the completed requests that have the phase).
pub fn gap_table(report: &ScaleReport) -> String {
    let mut out = String::from(
        "| gap outside node calls | requests | p50 ms | p99 ms | mean ms |\n|---|---:|---:|---:|---:|\n",
    );
    type Pick = fn(&RequestTiming) -> Option<Duration>;
    let rows: [(&str, Pick); 5] = [
        (
            "request start -> first node call (admission, draft-pool choice and health, target pick)",
            |r| r.gaps.before_first_call,
        ),
        ("last Draft stream end -> Select call", |r| r.gaps.drafts_to_select),
        ("Select answered -> Generate call", |r| r.gaps.select_to_generate),
        ("Generate stream end -> client has the result", |r| r.gaps.after_generate),
        ("total added (end-to-end minus the union of node calls)", |r| Some(r.added)),
    ];
    for (name, pick) in rows {
        let values: Vec<Duration> = report
            .requests
            .iter()
            .filter(|r| r.outcome.result.is_ok())
            .filter_map(pick)
            .collect();
        let mean = values.iter().sum::<Duration>() / values.len().max(1) as u32;
        out.push_str(&format!(
            "| {name} | {} | {} | {} | {} |\n",
            values.len(),
            ms(percentile(&values, 50.0)),
            ms(percentile(&values, 99.0)),
            ms(mean)
        ));
    }
    out
}

/// Table (b) header and one row per configuration.
pub fn sweep_header() -> String {
    "| draft nodes | completed | wall s | throughput req/s | e2e p50 ms | e2e p99 ms | added p50 ms | added p99 ms | coord CPU/req ms | draft nodes/req | mean draft batch | mean target batch |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n".to_string()
}

pub fn sweep_row(report: &ScaleReport) -> String {
    let added = completed_durations(report, |r| r.added);
    let e2e = completed_durations(report, |r| r.end_to_end);
    let spread: Vec<usize> = report
        .requests
        .iter()
        .filter(|r| r.outcome.result.is_ok())
        .map(|r| r.outcome.draft_nodes)
        .filter(|&k| k > 0)
        .collect();
    let mean_spread = spread.iter().sum::<usize>() as f64 / spread.len().max(1) as f64;
    format!(
        "| {} | {}/{} | {:.2} | {:.2} | {} | {} | {} | {} | {} | {:.2} | {:.1} | {:.1} |\n",
        report.config.draft_nodes,
        report.completed(),
        report.requests.len(),
        report.wall.as_secs_f64(),
        report.throughput(),
        ms(percentile(&e2e, 50.0)),
        ms(percentile(&e2e, 99.0)),
        ms(percentile(&added, 50.0)),
        ms(percentile(&added, 99.0)),
        ms(report.cpu_per_request()),
        mean_spread,
        report.drafts.mean_batch(),
        report.targets.mean_batch(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&v, 50.0), Duration::from_millis(50));
        assert_eq!(percentile(&v, 99.0), Duration::from_millis(99));
        assert_eq!(percentile(&v, 100.0), Duration::from_millis(100));
        assert_eq!(percentile(&[], 50.0), Duration::ZERO);
    }
}
