//! `accel-bench mesh`: medians, ratios, tables, targets, JSON.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{
    Agg, Machine, Target, lat, rate, read_trim,
    rows::{self, Health, Key, Metric, Run, Side, agg_ok},
    size_label, version,
};
use crate::records::{
    mesh::{MeshCase, MeshConfig, MeshRecord, MeshWorkload, Mode},
    placement::Placement,
};

mod markdown;

/// Issue targets (100 B request/response, one core; streaming; no regression).
const RR100_P50_TARGET: f64 = 0.60;
const RR100_P99_TARGET: f64 = 0.50;
const STREAM_TARGET: f64 = 2.0;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MeshFacts {
    #[serde(flatten)]
    pub machine: Machine,
    pub online_cpus: usize,
    pub rr_stream_duration_s: f64,
    pub warmup_s: f64,
    pub wrk_duration_s: u32,
    pub wrk_connections: u32,
    pub wrk_threads: u32,
    pub repeats: usize,
    /// `accel-daemon run --pod-acceleration` in the accelerated mode.
    /// Results from before the option existed accelerated every leg.
    #[serde(default = "all_legs")]
    pub pod_acceleration: String,
    /// The rr/stream workers' I/O (results from before the option: blocking;
    /// written only when not blocking, so older results round-trip).
    #[serde(
        default,
        skip_serializing_if = "crate::records::worker::IoStyle::is_blocking"
    )]
    pub worker_io: crate::records::worker::IoStyle,
    pub wrk_version: String,
    pub nginx_version: String,
    pub haproxy_version: String,
    pub tcp_wmem: String,
    pub tcp_rmem: String,
    pub loadavg_start: String,
    pub loadavg_end: String,
    /// Other sandboxes (end-to-end tests, benchmarks) present when we started.
    pub foreign_sandboxes_at_start: Vec<String>,
    pub total_secs: f64,
    pub daemon_toggles: usize,
}

fn all_legs() -> String {
    "all".into()
}

impl AsRef<Machine> for MeshFacts {
    fn as_ref(&self) -> &Machine {
        &self.machine
    }
}

impl MeshFacts {
    pub fn collect(cfg: &MeshConfig, started: std::time::SystemTime, online: usize) -> Self {
        let foreign = crate::host::cgroup2_mount()
            .ok()
            .and_then(|root| std::fs::read_dir(root).ok())
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| e.file_name().into_string().ok())
                    .filter(|n| n.starts_with("accel-test-") || n.starts_with("accel-bench-"))
                    .collect()
            })
            .unwrap_or_default();
        MeshFacts {
            machine: Machine::collect(started),
            online_cpus: online,
            rr_stream_duration_s: cfg.duration.as_secs_f64(),
            warmup_s: cfg.warmup.as_secs_f64(),
            wrk_duration_s: cfg.wrk_duration,
            wrk_connections: cfg.wrk_connections,
            wrk_threads: cfg.wrk_threads,
            repeats: cfg.repeats,
            pod_acceleration: cfg.pod_acceleration.clone(),
            worker_io: cfg.worker_io,
            wrk_version: version("wrk", &["-v"]),
            nginx_version: version("nginx", &["-v"]),
            haproxy_version: version("haproxy", &["-v"]),
            tcp_wmem: read_trim("/proc/sys/net/ipv4/tcp_wmem"),
            tcp_rmem: read_trim("/proc/sys/net/ipv4/tcp_rmem"),
            loadavg_start: read_trim("/proc/loadavg"),
            loadavg_end: String::new(),
            foreign_sandboxes_at_start: foreign,
            total_secs: 0.0,
            daemon_toggles: 0,
        }
    }

    pub fn finish(&mut self, took: Duration, toggles: usize) {
        self.loadavg_end = read_trim("/proc/loadavg");
        self.total_secs = took.as_secs_f64();
        self.daemon_toggles = toggles;
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ModeAgg {
    pub p50_us: Option<Agg>,
    pub p99_us: Option<Agg>,
    /// wrk requests/s, rr round trips/s.
    pub per_s: Option<Agg>,
    pub mb_per_s: Option<Agg>,
    pub redirected_legs: Option<Agg>,
    /// Stream runs' peak node TCP memory, MiB; not in the JSON's medians
    /// (which round-trip with the committed results).
    #[serde(skip_serializing)]
    pub peak_tcp_mem_mib: Option<Agg>,
    pub pass_bytes: i64,
    #[serde(flatten)]
    pub health: Health,
    pub wrk_socket_errors: u64,
    pub wrk_non2xx: u64,
}

impl Key for MeshWorkload {
    fn name(self) -> &'static str {
        MeshWorkload::name(self)
    }
}

impl Side for Mode {
    const ALL: &'static [Mode] = &Mode::ALL;
    const ACCEL: Mode = Mode::Accel;
    const REFERENCE: Mode = Mode::Baseline;
    fn label(self) -> &'static str {
        Mode::label(self)
    }
}

impl Run for MeshRecord {
    const BENCHMARK: &'static str = "mesh";
    type Placement = Placement;
    type Workload = MeshWorkload;
    type Side = Mode;
    type Agg = ModeAgg;

    rows::record_fields!(mode);

    fn eagain(&self) -> (u64, u64) {
        (self.send_eagain, self.recv_eagain)
    }

    fn aggregate(runs: &[&MeshRecord]) -> ModeAgg {
        ModeAgg {
            p50_us: agg_ok(runs, |r| r.p50_us),
            p99_us: agg_ok(runs, |r| r.p99_us),
            per_s: agg_ok(runs, |r| r.per_s),
            mb_per_s: agg_ok(runs, |r| r.mb_per_s),
            redirected_legs: agg_ok(runs, |r| r.redirected_legs),
            peak_tcp_mem_mib: agg_ok(runs, MeshRecord::peak_tcp_mem_mib),
            pass_bytes: runs.iter().map(|r| r.counter("pass_bytes")).sum(),
            health: Health::of(runs),
            wrk_socket_errors: runs.iter().map(|r| r.wrk_socket_errors).sum(),
            wrk_non2xx: runs.iter().map(|r| r.wrk_non2xx).sum(),
        }
    }
    fn headline(w: MeshWorkload) -> (Metric<ModeAgg>, bool) {
        match w {
            MeshWorkload::Wrk => (|a| a.per_s, true),
            MeshWorkload::Rr => (|a| a.p50_us, false),
            MeshWorkload::Stream => (|a| a.mb_per_s, true),
        }
    }
    fn p99(w: MeshWorkload) -> Option<Metric<ModeAgg>> {
        match w {
            MeshWorkload::Wrk | MeshWorkload::Rr => Some(|a| a.p99_us),
            MeshWorkload::Stream => None,
        }
    }
    fn problems(m: Mode, a: &ModeAgg, out: &mut Vec<String>) {
        a.health.problems(m.label(), out);
        if a.wrk_socket_errors + a.wrk_non2xx > 0 {
            out.push(format!(
                "{}: wrk socket errors {}, non-2xx {}",
                m.label(),
                a.wrk_socket_errors,
                a.wrk_non2xx
            ));
        }
        // The reference side runs without the datapath: no TCP to fall back to.
        if m == Mode::Accel && a.pass_bytes > 0 {
            out.push(format!("TCP fallback: pass_bytes {}", a.pass_bytes));
        }
    }
}

const TARGETS: [Target<MeshReport, Placement>; 4] = [
    (
        "rr 100 B: p50 >= 40% lower than baseline (target stated for one core)",
        |rep, p| rr100(rep, p, |a| a.p50_us, RR100_P50_TARGET),
    ),
    (
        "rr 100 B: p99 >= 50% lower than baseline (target stated for one core)",
        |rep, p| rr100(rep, p, |a| a.p99_us, RR100_P99_TARGET),
    ),
    ("streaming >= 2x baseline (every size)", |rep, p| {
        let v: Vec<(usize, f64)> = rep
            .rows_of(p, MeshWorkload::Stream)
            .filter_map(|r| Some((r.size, r.accel_ratio(|a| a.mb_per_s)?)))
            .collect();
        if v.is_empty() {
            return "not run".into();
        }
        let list = v
            .iter()
            .map(|(sz, q)| format!("{} {q:.2}x", size_label(*sz)))
            .collect::<Vec<_>>()
            .join(", ");
        let met = v.iter().filter(|(_, q)| *q >= STREAM_TARGET).count();
        if met == v.len() {
            format!("MET at {met}/{} sizes ({list})", v.len())
        } else {
            format!("**NOT MET**: met at {met}/{} sizes ({list})", v.len())
        }
    }),
    (
        "no size slower than baseline (wrk req/s, rr p50, stream MB/s)",
        |rep, p| rep.no_size_slower(p),
    ),
];

type MeshRow = rows::Row<MeshRecord>;
pub type MeshReport = rows::Report<MeshFacts, MeshRecord>;

pub(super) fn mbs(v: Option<Agg>) -> String {
    match v {
        Some(a) if a.median >= 100.0 => format!("{:.0}", a.median),
        Some(a) => format!("{:.1}", a.median),
        None => "ERR".into(),
    }
}

/// "34% lower" / "12% higher" for a ratio accel/baseline.
fn lower(q: Option<f64>) -> String {
    match q {
        Some(q) if q <= 1.0 => format!("{:.0}% lower ({q:.2}x)", (1.0 - q) * 100.0),
        Some(q) => format!("**{:.0}% higher** ({q:.2}x)", (q - 1.0) * 100.0),
        None => "not run".into(),
    }
}

/// accel/base of `f` in request/response at `size`.
fn rr_ratio(rep: &MeshReport, p: Placement, size: usize, f: Metric<ModeAgg>) -> Option<f64> {
    rep.row(p, MeshWorkload::Rr, size)
        .and_then(|r| r.accel_ratio(f))
}

/// The 100 B request/response target on `f` (accel/base <= `t`).
fn rr100(rep: &MeshReport, p: Placement, f: Metric<ModeAgg>, t: f64) -> String {
    match rr_ratio(rep, p, 100, f) {
        Some(q) if q <= t => format!("MET: {:.0}% lower ({q:.2}x)", (1.0 - q) * 100.0),
        Some(q) => format!("**NOT MET**: {}", lower(Some(q))),
        None => "not run".into(),
    }
}

/// accel/base of the headline metric at every size of `w`.
fn range_of(rep: &MeshReport, p: Placement, w: MeshWorkload) -> String {
    let v: Vec<String> = rep
        .rows_of(p, w)
        .filter_map(|r| Some(format!("{} {:.2}x", size_label(r.size), r.slower()?.0)))
        .collect();
    if v.is_empty() {
        "not run".into()
    } else {
        v.join(", ")
    }
}

/// One line per finished case, on stderr while the benchmark runs.
pub fn progress_line(p: Placement, case: MeshCase, records: &[MeshRecord]) -> String {
    rows::progress_line(
        p,
        case,
        records,
        |a: &ModeAgg| match case.workload {
            MeshWorkload::Wrk => format!("{} req/s p50 {} µs", rate(a.per_s), lat(a.p50_us)),
            MeshWorkload::Rr => format!("p50 {} µs p99 {} µs", lat(a.p50_us), lat(a.p99_us)),
            MeshWorkload::Stream => format!("{} MB/s", mbs(a.mb_per_s)),
        },
        true,
    )
}
