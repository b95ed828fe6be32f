//! The data the benchmark runners produce and the reports read. Runners
//! and reports both depend on this module and never on each other.
//!
//! - [`local`]: `accel-bench run-local`'s daemon usage, connection rates and
//!   proofs.
//! - [`loopback`]: `accel-bench loopback`'s placements, transports and runs.
//! - [`mesh`]: `accel-bench mesh`'s workloads, modes and runs.
//! - [`placement`]: where every runner's processes run.
//! - [`worker`]: what a worker pair runs and measures.

pub mod local;
pub mod loopback;
pub mod mesh;
pub mod placement;
pub mod worker;

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How often a stream run samples node TCP memory for its peak
/// (/proc/net/sockstat: a few microseconds a read, on whichever CPU the
/// benchmark itself runs).
pub const PEAK_SAMPLE_EVERY: Duration = Duration::from_millis(2);

/// A peak of node TCP memory in bytes, in MiB.
pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 20) as f64
}

/// One workload at one size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Case<W> {
    pub workload: W,
    pub size: usize,
}
