//! scot-client: what every caller of a coordinator shares (the `scot` command line, `scot eval` and
//! the simulation's load driver).
//!
//! - [`SolveClient`]: one connection to a coordinator and one way to run a Solve call, its phase
//!   events handed to the caller and its final [`scot_proto::SolveResult`] returned.
//! - [`Mode`]: which system answers (scot, target-only, draft-only) as the command line and result
//!   files spell it, and the [`scot_proto::SolveMode`] it asks for.
//! - [`SolveKnobs`]: the mode and the per-request SCoT knobs as command-line flags (a `clap::Args`),
//!   mapped once to [`scot_proto::SolveOptions`].

mod mode;
mod solve_client;
mod solve_knobs;

pub use mode::Mode;
pub use solve_client::{status_text, ConnectError, SolveClient};
pub use solve_knobs::SolveKnobs;
