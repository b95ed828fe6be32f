//! The records of `accel-bench mesh`: its workloads and modes (the
//! placements are [`super::placement`]), one run's numbers and proof, and
//! the configuration the runs share. The runner (`crate::mesh`) writes
//! them; the report (`crate::report::mesh`) reads them.

use std::{collections::BTreeMap, time::Duration};

use serde::{Deserialize, Serialize};

use super::worker::IoStyle;
use super::{Case, placement::Placement};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MeshWorkload {
    /// wrk (HTTP/1.1 keep-alive) against nginx.
    Wrk,
    /// One connection, ping-pong of N bytes.
    Rr,
    /// One connection, A writes N-byte messages, B reads.
    Stream,
}

impl MeshWorkload {
    pub fn name(self) -> &'static str {
        match self {
            MeshWorkload::Wrk => "wrk",
            MeshWorkload::Rr => "rr",
            MeshWorkload::Stream => "stream",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Baseline,
    Accel,
}

impl Mode {
    pub const ALL: [Mode; 2] = [Mode::Baseline, Mode::Accel];
    /// The order of the two modes in round `n`: baseline first in even
    /// rounds, accelerated first in odd ones (A B B A A B ...), so that
    /// neither mode always runs on a warmer machine.
    pub fn abba(n: usize) -> [Mode; 2] {
        if n.is_multiple_of(2) {
            [Mode::Baseline, Mode::Accel]
        } else {
            [Mode::Accel, Mode::Baseline]
        }
    }
    pub fn label(self) -> &'static str {
        match self {
            Mode::Baseline => "baseline",
            Mode::Accel => "accelerated",
        }
    }
}

pub type MeshCase = Case<MeshWorkload>;

/// One run: raw numbers and its proof.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MeshRecord {
    pub seq: usize,
    pub placement: Placement,
    pub workload: MeshWorkload,
    pub size: usize,
    pub mode: Mode,
    pub repeat: usize,
    /// Seconds since the benchmark started.
    pub started_s: f64,
    pub ok: bool,
    pub error: Option<String>,
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    pub mean_us: Option<f64>,
    pub max_us: Option<f64>,
    /// wrk: requests/s; rr: round trips/s.
    pub per_s: Option<f64>,
    pub mb_per_s: Option<f64>,
    /// wrk: completed requests; rr: measured round trips.
    pub count: Option<u64>,
    pub measured_secs: Option<f64>,
    /// Application bytes written by the two apps in the run (both
    /// directions, warm-up included; wrk: bytes read plus requests sent).
    pub bytes_moved: u64,
    /// wrk: socket errors (connect+read+write+timeout) and non-2xx responses.
    pub wrk_socket_errors: u64,
    pub wrk_non2xx: u64,
    /// EAGAIN from send(2)/recv(2) on the blocking worker sockets.
    pub send_eagain: u64,
    pub recv_eagain: u64,
    /// Datapath counters after minus before (accelerated runs only).
    pub counters_delta: BTreeMap<String, i64>,
    /// redirect_bytes / bytes_moved: ~3 when all three legs are redirected.
    pub redirected_legs: Option<f64>,
    /// Stream runs: peak node TCP memory above its level before the run, in
    /// bytes, while the workers ran (redirected bytes not yet read are
    /// charged to the reader). Absent in older results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_tcp_mem: Option<u64>,
    pub verified: bool,
    pub verify_note: String,
    /// wrk's full output.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wrk_output: Option<String>,
}

pub struct MeshConfig {
    pub duration: Duration,
    pub warmup: Duration,
    pub wrk_duration: u32,
    pub wrk_connections: u32,
    pub wrk_threads: u32,
    pub repeats: usize,
    pub pod_acceleration: String,
    pub worker_io: IoStyle,
}

impl MeshRecord {
    /// [`Self::peak_tcp_mem`] in MiB.
    pub fn peak_tcp_mem_mib(&self) -> Option<f64> {
        self.peak_tcp_mem.map(super::mib)
    }

    pub(crate) fn new(
        seq: usize,
        placement: Placement,
        case: MeshCase,
        mode: Mode,
        repeat: usize,
    ) -> Self {
        MeshRecord {
            seq,
            placement,
            workload: case.workload,
            size: case.size,
            mode,
            repeat,
            started_s: 0.0,
            ok: false,
            error: None,
            p50_us: None,
            p99_us: None,
            mean_us: None,
            max_us: None,
            per_s: None,
            mb_per_s: None,
            count: None,
            measured_secs: None,
            bytes_moved: 0,
            wrk_socket_errors: 0,
            wrk_non2xx: 0,
            send_eagain: 0,
            recv_eagain: 0,
            counters_delta: BTreeMap::new(),
            redirected_legs: None,
            peak_tcp_mem: None,
            verified: false,
            verify_note: String::new(),
            wrk_output: None,
        }
    }
}
