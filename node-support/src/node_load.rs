//! The NodeLoadService every node serves beside its own: what its engine gate holds now (jobs running
//! and waiting, the KV budget and what is free of it, the context), so that every coordinator routing
//! to the node sees the same room, not only its own calls. The same numbers go to the node's metrics.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
use scot_proto::node_load_service_server::NodeLoadService;
use scot_proto::{LoadReport, LoadRequest};
use tonic::{Request, Response, Status};

use crate::engine_gate::EngineGate;

pub struct NodeLoadServer {
    gate: EngineGate,
}

impl NodeLoadServer {
    pub fn new(gate: EngineGate) -> Self {
        Self { gate }
    }
}

#[tonic::async_trait]
impl NodeLoadService for NodeLoadServer {
    async fn load(&self, _request: Request<LoadRequest>) -> Result<Response<LoadReport>, Status> {
        Ok(Response::new(self.gate.load_report()))
    }
}

/// How often the load gauges are refreshed from the gate (a scrape every 15 s or so reads them).
const GAUGE_REFRESH: Duration = Duration::from_secs(1);

/// The node's load as metrics (see docs/metrics.md).
struct LoadGauges {
    running: Gauge,
    waiting: Gauge,
    kv_budget: Gauge,
    kv_free: Gauge,
}

static LOAD_GAUGES: LazyLock<LoadGauges> = LazyLock::new(|| {
    let gauges = LoadGauges {
        running: Gauge::default(),
        waiting: Gauge::default(),
        kv_budget: Gauge::default(),
        kv_free: Gauge::default(),
    };
    for (name, help, gauge) in [
        (
            "scot_node_jobs_running",
            "Engine jobs running on the node",
            &gauges.running,
        ),
        (
            "scot_node_jobs_waiting",
            "Engine jobs accepted and waiting for a turn or for KV room",
            &gauges.waiting,
        ),
        (
            "scot_node_kv_budget_positions",
            "The node's KV-cache budget in context positions (0 = none)",
            &gauges.kv_budget,
        ),
        (
            "scot_node_kv_free_positions",
            "KV-cache positions not reserved by running jobs",
            &gauges.kv_free,
        ),
    ] {
        scot_telemetry::register(name, help, gauge.clone());
    }
    gauges
});

/// Keeps the load gauges current while the node serves; never ends (it stops when dropped).
pub(crate) async fn publish_load_gauges(gate: EngineGate) -> std::convert::Infallible {
    let gauges = &*LOAD_GAUGES;
    let mut tick = tokio::time::interval(GAUGE_REFRESH);
    loop {
        tick.tick().await;
        let report = gate.load_report();
        gauges.running.set(i64::from(report.running));
        gauges.waiting.set(i64::from(report.waiting));
        gauges
            .kv_budget
            .set(i64::try_from(report.kv_budget_tokens).unwrap_or(i64::MAX));
        gauges
            .kv_free
            .set(i64::try_from(report.kv_free_tokens).unwrap_or(i64::MAX));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv_budget::{mib_to_bytes, KvBudget};

    #[tokio::test]
    async fn the_gauges_and_the_report_show_the_gate() {
        let gate = EngineGate::new(1, 3, KvBudget::new(Some(mib_to_bytes(1)), 1024, 4096), 4096);
        let held = [gate.admit().unwrap(), gate.admit().unwrap()];
        let report = NodeLoadServer::new(gate.clone())
            .load(Request::new(LoadRequest {}))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            (
                report.running,
                report.waiting,
                report.max_running,
                report.max_waiting
            ),
            (0, 2, 1, 3),
            "two admitted, none running yet"
        );
        assert_eq!(
            (report.kv_budget_tokens, report.kv_free_tokens),
            (1024, 1024)
        );
        let publishing = tokio::spawn(publish_load_gauges(gate.clone()));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let text = scot_telemetry::encode_metrics();
            if text.contains("scot_node_jobs_waiting 2")
                && text.contains("scot_node_kv_budget_positions 1024")
                && text.contains("scot_node_kv_free_positions 1024")
                && text.contains("scot_node_jobs_running 0")
            {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "{text}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        publishing.abort();
        drop(held);
        assert_eq!(gate.load_report().waiting, 0);
    }
}
