//! The records of `accel-bench run-local` besides its fortio files: what
//! the run measured of the daemon and of unmeshed connection setup, each
//! run's proof, and the plan the report describes. The runner
//! (`crate::run_local`) writes them; the report (`crate::report::local`)
//! reads them.

use clap::ValueEnum;
use serde::Serialize;

use super::mesh::Mode;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
pub enum LocalProto {
    Http,
    Tcp,
}

/// What the meshed request path ran, as the report describes it.
pub struct LocalPlan {
    pub proto: LocalProto,
    /// Measured and warm-up seconds per run.
    pub duration: f64,
    pub warmup: f64,
    pub rounds: usize,
    pub sizes: Vec<usize>,
    pub connections: Vec<usize>,
    pub qps: Vec<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DaemonUsage {
    /// Idle: daemon up and attached, no traffic.
    pub idle_cpu_pct: f64,
    pub idle_rss_kib: u64,
    pub idle_rss_anon_kib: u64,
    pub idle_rss_file_kib: u64,
    /// Threads of the idle daemon.
    pub idle_threads: u64,
    /// Per accelerated round: CPU % of one core and RSS during the load.
    pub load_cpu_pct: Vec<f64>,
    pub load_rss_kib: Vec<u64>,
    /// Highest VmHWM seen.
    pub max_hwm_kib: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConnRate {
    /// Connections/s per round, no daemon.
    pub baseline: Vec<f64>,
    /// Connections/s per round, daemon attached.
    pub daemon: Vec<f64>,
    pub baseline_median: f64,
    pub daemon_median: f64,
    pub ratio: f64,
}

/// One measured run and its proof.
#[derive(Debug, Clone, Serialize)]
pub struct RunProof {
    pub file: String,
    pub mode: Mode,
    pub verified: bool,
    pub note: String,
}
