//! `accel-bench mesh`: medians, ratios, tables, targets, JSON.

use std::{fmt::Write as _, time::Duration};

use serde::{Deserialize, Serialize};

use super::{
    Agg, Align, Machine, Target, lat, rate, read_trim,
    rows::{self, Health, Key, Metric, Run, Side, agg_ok},
    size_label, table, version, x,
};
use crate::records::mesh::{MeshCase, MeshConfig, MeshRecord, MeshWorkload, Mode, Placement};

/// Issue targets (100 B request/response, pinned; streaming; no regression).
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
    #[serde(default, skip_serializing_if = "crate::worker::IoStyle::is_blocking")]
    pub worker_io: crate::worker::IoStyle,
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
        let foreign = crate::sandbox::cgroup2_mount()
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
    pub pass_bytes: i64,
    #[serde(flatten)]
    pub health: Health,
    pub wrk_socket_errors: u64,
    pub wrk_non2xx: u64,
}

impl Key for Placement {
    fn name(self) -> &'static str {
        Placement::name(self)
    }
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
        "rr 100 B: p50 >= 40% lower than baseline (target stated for pinned)",
        |rep, p| rr100(rep, p, |a| a.p50_us, RR100_P50_TARGET),
    ),
    (
        "rr 100 B: p99 >= 50% lower than baseline (target stated for pinned)",
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

/// The latency columns of wrk and request/response.
const LATENCY_HEADER: [&str; 6] = [
    "base p50",
    "accel p50",
    "accel/base p50",
    "base p99",
    "accel p99",
    "accel/base p99",
];

fn latency(r: &MeshRow) -> Vec<String> {
    [
        r.compared(|a| a.p50_us, lat, false),
        r.compared(|a| a.p99_us, lat, false),
    ]
    .concat()
}

/// The accelerated runs' redirect_bytes / application bytes.
fn legs(r: &MeshRow) -> String {
    r.get(Mode::Accel)
        .redirected_legs
        .map(|l| format!("{:.2}", l.median))
        .unwrap_or_else(|| "-".into())
}

fn mbs(v: Option<Agg>) -> String {
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

impl MeshReport {
    pub fn markdown(&self) -> String {
        let fa = &self.facts;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "# Same-node sidecar mesh benchmark: baseline (no datapath) vs accelerated\n"
        );
        fa.machine.markdown_lines(&mut s);
        let _ = writeln!(
            s,
            "- CPU: {} ({} online for us)",
            fa.machine.cpu(),
            fa.online_cpus
        );
        let _ = writeln!(
            s,
            "- Tools: {}; {}; {}",
            fa.wrk_version, fa.nginx_version, fa.haproxy_version
        );
        let _ = writeln!(
            s,
            "- Topology (`accel_tests::topology`): a private node namespace with a bridge; meshed \
             pods A and B with Istio's REDIRECT rules and haproxy sidecars (TCP mode, one \
             thread). Every connection is app A -> sidecar A (127.0.0.1:15001) -> sidecar B \
             (B:15006) -> app B (from 127.0.0.6): three TCP connections. All pod processes run \
             in one private cgroup; the daemon attaches there with `--pods-file` listing A and B"
        );
        let _ = writeln!(
            s,
            "- Modes: **baseline** = daemon killed and `accel-daemon unload` done (nothing \
             attached to the cgroup, no pins); **accelerated** = `accel-daemon run \
             --pod-acceleration {}` up (accelerated=true). Per case the modes alternate ABBA \
             (baseline, accelerated, accelerated, baseline, ...), {} repeats each; {} daemon \
             start/stop toggles in the run; rr/stream workers use {} I/O",
            fa.pod_acceleration,
            fa.repeats,
            fa.daemon_toggles,
            fa.worker_io.name()
        );
        let _ = writeln!(
            s,
            "- Workloads: **wrk** `-t{} -c{} -d{}s --latency` from A against nginx in B (HTTP/1.1 \
             keep-alive, sendfile on, body of the given size); **rr**: one connection with \
             TCP_NODELAY, A writes N bytes, B's echo reads N and writes them back, {:.2} s \
             measured after {:.2} s warm-up, every round trip timed; **stream**: one connection, \
             A writes N-byte messages for the run, B reads 256 KiB per call until EOF, MB/s at \
             the reader (MB = 10^6 bytes). Default socket buffers (tcp_wmem {}, tcp_rmem {})",
            fa.wrk_threads,
            fa.wrk_connections,
            fa.wrk_duration_s,
            fa.rr_stream_duration_s,
            fa.warmup_s,
            fa.tcp_wmem,
            fa.tcp_rmem
        );
        let _ = writeln!(
            s,
            "- Machine load: loadavg at start `{}`, at end `{}`; other sandboxes present at \
             start: {}; run took {:.0} s",
            fa.loadavg_start,
            fa.loadavg_end,
            if fa.foreign_sandboxes_at_start.is_empty() {
                "none".to_string()
            } else {
                fa.foreign_sandboxes_at_start.join(", ")
            },
            fa.total_secs
        );
        let (acc_proven, acc) = self.proven(true);
        let (base_proven, base) = self.proven(false);
        let legs = Agg::of(
            self.runs_of(Mode::Accel)
                .iter()
                .filter_map(|r| r.redirected_legs)
                .collect(),
        );
        let _ = writeln!(
            s,
            "- Proof: {}/{} accelerated runs grew `redirect_bytes`{} (read with `accel-daemon \
             status --json` before and after each run) by at least the bytes the apps moved \
             (wrk: the response bodies); {:.2} GB redirected in total; redirect_bytes / app \
             bytes per run: median {:.2}, min {:.2}, max {:.2} (3.00 = all three legs \
             redirected{}). {}/{} baseline runs had no program attached to the cgroup and no pins \
             before and after",
            acc_proven,
            acc,
            match fa.pod_acceleration.as_str() {
                "proxy-only" => {
                    " plus `pass_bytes` (proxy-only: only the sidecar hop's sockets are \
                     recorded, and flow control's TCP bytes there are counted in `pass_bytes`)"
                }
                "auto" => {
                    " plus `pass_bytes` (auto: the sidecars' bytes to the applications go by \
                     TCP on purpose, counted in `pass_bytes`)"
                }
                _ => "",
            },
            self.redirected_bytes() as f64 / 1e9,
            legs.map(|l| l.median).unwrap_or(0.0),
            legs.map(|l| l.min).unwrap_or(0.0),
            legs.map(|l| l.max).unwrap_or(0.0),
            match fa.pod_acceleration.as_str() {
                "proxy-only" => "; 1.00 = the sidecar hop only",
                "auto" => {
                    "; 2.00 = the sidecar hop both ways and the applications' own sends, the \
                     most `auto` redirects; 1.00 = the sidecar hop only (blocking applications)"
                }
                _ => "",
            },
            base_proven,
            base
        );
        for m in Mode::ALL {
            let rs = self.runs_of(m);
            let h = Health::of(&rs);
            let total = rs
                .iter()
                .filter(|r| r.workload != MeshWorkload::Wrk)
                .count();
            if h.send_eagain + h.recv_eagain > 0 {
                let _ = writeln!(
                    s,
                    "- **Anomaly**: {}: blocking sockets of the rr/stream workers returned EAGAIN \
                     (send {}, recv {}) in {}/{total} runs; a blocking socket must never do that. \
                     The workers count it, wait for readiness and retry; byte counts still \
                     matched end to end in every run not marked failed",
                    m.label(),
                    h.send_eagain,
                    h.recv_eagain,
                    h.eagain_runs
                );
            } else if total > 0 {
                let _ = writeln!(
                    s,
                    "- EAGAIN on blocking sockets ({}): none in {total} rr/stream runs",
                    m.label()
                );
            }
        }
        let _ = writeln!(
            s,
            "\nHow to read: `accel/base` is accelerated / baseline of the medians; for latency \
             below 1.00x is better, for requests/s, round trips/s and MB/s above 1.00x is better. \
             **SLOWER** marks sizes where accelerated is worse on the headline metric (wrk: \
             requests/s; rr: p50; stream: MB/s); \"within spread\" means the per-repeat ranges \
             overlap. Spread is (max-min)/median over the repeats. `legs` is redirect_bytes / \
             application bytes (median): 3.00 means every byte was redirected on all three legs \
             (app A -> sidecar A, sidecar A -> sidecar B, sidecar B -> app B); for wrk it \
             includes the HTTP headers in the application bytes.\n"
        );
        self.placement_sections(
            &mut s,
            Placement::title,
            &[MeshWorkload::Wrk, MeshWorkload::Rr, MeshWorkload::Stream],
            |rep, s, p, w| match w {
                MeshWorkload::Wrk => rep.wrk_table(s, p),
                MeshWorkload::Rr => rep.rr_table(s, p),
                MeshWorkload::Stream => rep.stream_table(s, p),
            },
        );
        self.targets(&mut s, &TARGETS);
        self.reference(&mut s);
        s
    }

    fn wrk_table(&self, s: &mut String, p: Placement) {
        self.case_table(
            s,
            (p, MeshWorkload::Wrk),
            "wrk -> nginx through both sidecars (requests/s; latency in µs)",
            &[
                &["body", "base req/s", "accel req/s", "accel/base req/s"][..],
                &LATENCY_HEADER,
                &["spread req/s base/accel", "legs", "accelerated vs baseline"],
            ]
            .concat(),
            |r| {
                [
                    r.compared(|a| a.per_s, rate, true),
                    latency(r),
                    vec![r.spreads(|a| a.per_s), legs(r)],
                ]
                .concat()
            },
        );
    }

    fn rr_table(&self, s: &mut String, p: Placement) {
        self.case_table(
            s,
            (p, MeshWorkload::Rr),
            "Request/response through both sidecars (latency per round trip in µs; round trips/s)",
            &[
                &["size"][..],
                &LATENCY_HEADER,
                &[
                    "base RT/s",
                    "accel RT/s",
                    "accel/base RT/s",
                    "spread p50 base/accel",
                    "legs",
                    "accelerated vs baseline",
                ],
            ]
            .concat(),
            |r| {
                [
                    latency(r),
                    r.each(|a| a.per_s, rate),
                    vec![
                        x(r.accel_ratio(|a| a.per_s)),
                        r.spreads(|a| a.p50_us),
                        legs(r),
                    ],
                ]
                .concat()
            },
        );
    }

    fn stream_table(&self, s: &mut String, p: Placement) {
        self.case_table(
            s,
            (p, MeshWorkload::Stream),
            "Streaming A -> B through both sidecars (MB/s)",
            &[
                "write size",
                "base MB/s",
                "accel MB/s",
                "accel/base",
                "spread base/accel",
                "legs",
                "accelerated vs baseline",
            ],
            |r| {
                [
                    r.compared(|a| a.mb_per_s, mbs, true),
                    vec![r.spreads(|a| a.mb_per_s), legs(r)],
                ]
                .concat()
            },
        );
    }

    /// Side by side with the competing datapath's numbers measured on this
    /// machine (from the issue).
    fn reference(&self, s: &mut String) {
        let _ = writeln!(
            s,
            "## Against the competing datapath's reference points (measured on this machine, from the issue)\n"
        );
        let mut header = vec!["measure".to_string(), "competing datapath".to_string()];
        header.extend(
            self.placements
                .iter()
                .map(|p| format!("this datapath, {}", p.name())),
        );
        type Eval = fn(&MeshReport, Placement) -> String;
        let lines: [(&str, &str, Eval); 5] = [
            ("rr 100 B p50", "34% lower (pinned)", |rep, p| {
                lower(rr_ratio(rep, p, 100, |a| a.p50_us))
            }),
            ("rr 100 B p99", "58% lower (pinned)", |rep, p| {
                lower(rr_ratio(rep, p, 100, |a| a.p99_us))
            }),
            ("rr 16 KiB p50", "21% lower", |rep, p| {
                lower(rr_ratio(rep, p, 16 * 1024, |a| a.p50_us))
            }),
            ("streaming MB/s", "2x (pinned)", |rep, p| {
                range_of(rep, p, MeshWorkload::Stream)
            }),
            ("wrk requests/s", "1.46x", |rep, p| {
                range_of(rep, p, MeshWorkload::Wrk)
            }),
        ];
        let rows: Vec<Vec<String>> = lines
            .iter()
            .map(|(name, theirs, eval)| {
                let mut r = vec![name.to_string(), theirs.to_string()];
                r.extend(self.placements.iter().map(|&p| eval(self, p)));
                r
            })
            .collect();
        table(s, &header, &rows, Align::Text);
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
