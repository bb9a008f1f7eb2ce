//! The offline simulator: drives the core with a simulated clock over a workload trace (`muster simulate`).

pub mod engine;
pub mod report;
pub mod scenario;

pub use engine::{Mode, SimError, simulate};
pub use report::Report;
pub use scenario::{Scenario, ScenarioError};
