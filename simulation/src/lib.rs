//! # scot-simulation: SIMULATED nodes for scale tests of the real coordinator
//!
//! Everything here is simulated and named so. `SimulatedDraftNode` and `SimulatedTargetNode` are real
//! tonic gRPC servers of the scot.v1 Draft and Target services (with gRPC health) that run NO model:
//! their token streams have plausible lengths and their timing follows measured per-token costs
//! (`SimulatedCostProfile`: prefill per token, decode step as a function of the batch size), scaled by a
//! time factor so a run finishes in minutes. Each node decodes its concurrent sequences as one batch on
//! a virtual clock (`SimulatedBatchScheduler`), so packing drafts on few nodes vs spreading them matters.
//!
//! It exists for the `scale-bench` binary (64 draft + 8 target simulated nodes, 1000 concurrent
//! requests through the real coordinator binary; `--direct-baseline` runs the same load with no
//! coordinator) and its smoke test. It is never a stand-in for tests with real models: the text is
//! filler and selection is a coin with a fixed acceptance rate.
//!
//! ```text
//! cargo build --release -p scot-coordinator -p scot-simulation
//! target/release/scale-bench                      # tables (a) and (b), CPU profile, time scale 0.01
//! target/release/scale-bench --profile gpu-paper --time-scale 0.1 --sweep 0 --direct-baseline
//! ```
//! Results and their definitions: BENCHMARKS.md, "Scale, SIMULATED".

pub mod batch_scheduler;
pub mod call_ledger;
pub mod coordinator_process;
pub mod cost_profile;
pub mod direct_baseline;
pub mod draft_node;
pub mod error;
pub mod etcd_membership;
pub mod load_driver;
pub mod node_server;
pub mod report_table;
pub mod scale_run;
pub mod solve_outcome;
pub mod synthetic_text;
pub mod target_node;

pub use batch_scheduler::SimulatedBatchScheduler;
pub use call_ledger::SimulatedCallLedger;
pub use cost_profile::{SimulatedCostProfile, SimulatedModelCost, SimulatedWorkload};
pub use draft_node::SimulatedDraftNode;
pub use error::{Result, SimulationError};
pub use node_server::{
    serve_simulated_draft_node, serve_simulated_target_node, SimulatedNodeServer,
};
pub use scale_run::{run_scale, ScaleConfig, ScaleReport};
pub use target_node::SimulatedTargetNode;

/// Raises this process's open-file limit to its hard limit (1000 concurrent streams over a few
/// connections need few descriptors, but the nodes and channels add up); returns the new soft limit.
pub fn raise_fd_limit() -> std::io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read/write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
    }
    Ok(limit.rlim_cur)
}
