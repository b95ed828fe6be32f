//! `accel-bench mesh`: medians, ratios, tables, targets, JSON.

use std::{collections::BTreeMap, fmt::Write as _, time::Duration};

use serde::Serialize;
use serde_json::{Value, json};

use super::{
    Agg, Align, Health, Machine, RunHealth, failures, lat, not_slower, rate, read_trim, rows_for,
    size_label, spread, table, targets_table, verdict, version, x,
};
use crate::mesh::{MeshCase, MeshConfig, MeshRecord, MeshWorkload, Mode, Placement};

/// Issue targets (100 B request/response, pinned; streaming; no regression).
const RR100_P50_TARGET: f64 = 0.60;
const RR100_P99_TARGET: f64 = 0.50;
const STREAM_TARGET: f64 = 2.0;

#[derive(Debug, Clone, Serialize)]
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
    pub pod_acceleration: String,
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

#[derive(Debug, Clone, Serialize)]
pub struct MeshRow {
    pub placement: Placement,
    pub workload: MeshWorkload,
    pub size: usize,
    pub by: BTreeMap<Mode, ModeAgg>,
}

impl RunHealth for MeshRecord {
    fn ok(&self) -> bool {
        self.ok
    }
    fn verified(&self) -> bool {
        self.verified
    }
    fn eagain(&self) -> (u64, u64) {
        (self.send_eagain, self.recv_eagain)
    }
}

impl MeshRow {
    fn build(placement: Placement, case: MeshCase, records: &[MeshRecord]) -> MeshRow {
        let mut by = BTreeMap::new();
        for m in Mode::ALL {
            let rs: Vec<&MeshRecord> = records
                .iter()
                .filter(|r| {
                    r.placement == placement
                        && r.workload == case.workload
                        && r.size == case.size
                        && r.mode == m
                })
                .collect();
            let good: Vec<&&MeshRecord> = rs.iter().filter(|r| r.ok).collect();
            let col = |f: fn(&MeshRecord) -> Option<f64>| {
                Agg::of(good.iter().filter_map(|r| f(r)).collect())
            };
            by.insert(
                m,
                ModeAgg {
                    p50_us: col(|r| r.p50_us),
                    p99_us: col(|r| r.p99_us),
                    per_s: col(|r| r.per_s),
                    mb_per_s: col(|r| r.mb_per_s),
                    redirected_legs: col(|r| r.redirected_legs),
                    pass_bytes: rs
                        .iter()
                        .map(|r| r.counters_delta.get("pass_bytes").copied().unwrap_or(0))
                        .sum(),
                    health: Health::of(&rs),
                    wrk_socket_errors: rs.iter().map(|r| r.wrk_socket_errors).sum(),
                    wrk_non2xx: rs.iter().map(|r| r.wrk_non2xx).sum(),
                },
            );
        }
        MeshRow {
            placement,
            workload: case.workload,
            size: case.size,
            by,
        }
    }

    fn get(&self, m: Mode) -> &ModeAgg {
        &self.by[&m]
    }

    /// accelerated / baseline of the medians.
    fn ratio(&self, f: fn(&ModeAgg) -> Option<Agg>) -> Option<f64> {
        let a = f(self.get(Mode::Accel))?;
        let b = f(self.get(Mode::Baseline))?;
        (b.median > 0.0).then(|| a.median / b.median)
    }

    /// The workload's headline metric, whether higher is better, and the
    /// accelerated/baseline ratio.
    fn primary(&self) -> (fn(&ModeAgg) -> Option<Agg>, bool) {
        match self.workload {
            MeshWorkload::Wrk => (|a| a.per_s, true),
            MeshWorkload::Rr => (|a| a.p50_us, false),
            MeshWorkload::Stream => (|a| a.mb_per_s, true),
        }
    }

    /// Some((ratio, slower)) for the headline metric.
    fn slower(&self) -> Option<(f64, bool)> {
        let (f, higher_better) = self.primary();
        let q = self.ratio(f)?;
        Some((q, if higher_better { q < 1.0 } else { q > 1.0 }))
    }

    fn verdict(&self) -> String {
        let (f, higher_better) = self.primary();
        let mut v = verdict(
            self.ratio(f),
            higher_better,
            f(self.get(Mode::Accel)),
            f(self.get(Mode::Baseline)),
        );
        if self.workload != MeshWorkload::Stream
            && self.ratio(|a| a.p99_us).is_some_and(|q| q > 1.0)
        {
            v.push_str("; p99 slower");
        }
        let p = self.problems();
        if !p.is_empty() {
            let _ = write!(v, "; {p}");
        }
        v
    }

    fn problems(&self) -> String {
        let mut p = Vec::new();
        for m in Mode::ALL {
            let a = self.get(m);
            a.health.problems(m.label(), &mut p);
            if a.wrk_socket_errors + a.wrk_non2xx > 0 {
                p.push(format!(
                    "{}: wrk socket errors {}, non-2xx {}",
                    m.label(),
                    a.wrk_socket_errors,
                    a.wrk_non2xx
                ));
            }
        }
        let acc = self.get(Mode::Accel);
        if acc.pass_bytes > 0 {
            p.push(format!("TCP fallback: pass_bytes {}", acc.pass_bytes));
        }
        p.join("; ")
    }
}

fn legs(a: &ModeAgg) -> String {
    a.redirected_legs
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

fn bold_if(v: String, bad: bool) -> String {
    if bad { format!("**{v}**") } else { v }
}

/// "34% lower" / "12% higher" for a ratio accel/baseline.
fn lower(q: Option<f64>) -> String {
    match q {
        Some(q) if q <= 1.0 => format!("{:.0}% lower ({q:.2}x)", (1.0 - q) * 100.0),
        Some(q) => format!("**{:.0}% higher** ({q:.2}x)", (q - 1.0) * 100.0),
        None => "not run".into(),
    }
}

pub struct MeshReport {
    pub facts: MeshFacts,
    pub placements: Vec<Placement>,
    pub rows: Vec<MeshRow>,
    pub records: Vec<MeshRecord>,
}

impl MeshReport {
    pub fn build(
        facts: MeshFacts,
        placements: &[Placement],
        cases: &[MeshCase],
        records: Vec<MeshRecord>,
    ) -> Self {
        let rows = rows_for(placements, cases, |p, c| MeshRow::build(p, c, &records));
        MeshReport {
            facts,
            placements: placements.to_vec(),
            rows,
            records,
        }
    }

    pub fn failures(&self) -> usize {
        failures(&self.records)
    }

    fn rows_of(&self, p: Placement, w: MeshWorkload) -> impl Iterator<Item = &MeshRow> {
        self.rows
            .iter()
            .filter(move |r| r.placement == p && r.workload == w)
    }

    fn row(&self, p: Placement, w: MeshWorkload, size: usize) -> Option<&MeshRow> {
        self.rows_of(p, w).find(|r| r.size == size)
    }

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
            "- CPU: {}, {} logical CPUs ({} online for us)",
            fa.machine.cpu_model, fa.machine.logical_cpus, fa.online_cpus
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
             start/stop toggles in the run",
            fa.pod_acceleration, fa.repeats, fa.daemon_toggles
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
        let acc: Vec<&MeshRecord> = self
            .records
            .iter()
            .filter(|r| r.mode == Mode::Accel)
            .collect();
        let base: Vec<&MeshRecord> = self
            .records
            .iter()
            .filter(|r| r.mode == Mode::Baseline)
            .collect();
        let redirected: i64 = acc
            .iter()
            .map(|r| r.counters_delta.get("redirect_bytes").copied().unwrap_or(0))
            .sum();
        let legs = Agg::of(acc.iter().filter_map(|r| r.redirected_legs).collect());
        let _ = writeln!(
            s,
            "- Proof: {}/{} accelerated runs grew `redirect_bytes`{} (read with `accel-daemon \
             status --json` before and after each run) by at least the bytes the apps moved \
             (wrk: the response bodies); {:.2} GB redirected in total; redirect_bytes / app \
             bytes per run: median {:.2}, min {:.2}, max {:.2} (3.00 = all three legs \
             redirected{}). {}/{} baseline runs had no program attached to the cgroup and no pins \
             before and after",
            acc.iter().filter(|r| r.verified).count(),
            acc.len(),
            if fa.pod_acceleration == "proxy-only" {
                " plus `pass_bytes` (proxy-only: only the sidecar hop's sockets are recorded, \
                 and flow control's TCP bytes there are counted in `pass_bytes`)"
            } else {
                ""
            },
            redirected as f64 / 1e9,
            legs.map(|l| l.median).unwrap_or(0.0),
            legs.map(|l| l.min).unwrap_or(0.0),
            legs.map(|l| l.max).unwrap_or(0.0),
            if fa.pod_acceleration == "proxy-only" {
                "; 1.00 = the sidecar hop only"
            } else {
                ""
            },
            base.iter().filter(|r| r.verified).count(),
            base.len()
        );
        for m in Mode::ALL {
            let rs: Vec<&MeshRecord> = self.records.iter().filter(|r| r.mode == m).collect();
            let send: u64 = rs.iter().map(|r| r.send_eagain).sum();
            let recv: u64 = rs.iter().map(|r| r.recv_eagain).sum();
            let n = rs
                .iter()
                .filter(|r| r.send_eagain + r.recv_eagain > 0)
                .count();
            let total = rs
                .iter()
                .filter(|r| r.workload != MeshWorkload::Wrk)
                .count();
            if send + recv > 0 {
                let _ = writeln!(
                    s,
                    "- **Anomaly**: {}: blocking sockets of the rr/stream workers returned EAGAIN \
                     (send {send}, recv {recv}) in {n}/{total} runs; a blocking socket must never \
                     do that. The workers count it, wait for readiness and retry; byte counts \
                     still matched end to end in every run not marked failed",
                    m.label()
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
        for &p in &self.placements {
            let _ = writeln!(s, "## Placement: {}\n", p.title());
            if self.rows_of(p, MeshWorkload::Wrk).next().is_some() {
                self.wrk_table(&mut s, p);
            }
            if self.rows_of(p, MeshWorkload::Rr).next().is_some() {
                self.rr_table(&mut s, p);
            }
            if self.rows_of(p, MeshWorkload::Stream).next().is_some() {
                self.stream_table(&mut s, p);
            }
        }
        self.targets(&mut s);
        self.reference(&mut s);
        s
    }

    fn wrk_table(&self, s: &mut String, p: Placement) {
        let _ = writeln!(
            s,
            "### wrk -> nginx through both sidecars (requests/s; latency in µs)\n"
        );
        let header: Vec<String> = [
            "body",
            "base req/s",
            "accel req/s",
            "accel/base req/s",
            "base p50",
            "accel p50",
            "accel/base p50",
            "base p99",
            "accel p99",
            "accel/base p99",
            "spread req/s base/accel",
            "legs",
            "accelerated vs baseline",
        ]
        .map(String::from)
        .to_vec();
        let mut rows = Vec::new();
        for r in self.rows_of(p, MeshWorkload::Wrk) {
            let (b, a) = (r.get(Mode::Baseline), r.get(Mode::Accel));
            let q = r.ratio(|a| a.per_s);
            let q50 = r.ratio(|a| a.p50_us);
            let q99 = r.ratio(|a| a.p99_us);
            rows.push(vec![
                size_label(r.size),
                rate(b.per_s),
                rate(a.per_s),
                bold_if(x(q), q.is_some_and(|q| q < 1.0)),
                lat(b.p50_us),
                lat(a.p50_us),
                bold_if(x(q50), q50.is_some_and(|q| q > 1.0)),
                lat(b.p99_us),
                lat(a.p99_us),
                bold_if(x(q99), q99.is_some_and(|q| q > 1.0)),
                format!("{}/{}", spread(b.per_s), spread(a.per_s)),
                legs(a),
                r.verdict(),
            ]);
        }
        table(s, &header, &rows, Align::Numbers);
    }

    fn rr_table(&self, s: &mut String, p: Placement) {
        let _ = writeln!(
            s,
            "### Request/response through both sidecars (latency per round trip in µs; round trips/s)\n"
        );
        let header: Vec<String> = [
            "size",
            "base p50",
            "accel p50",
            "accel/base p50",
            "base p99",
            "accel p99",
            "accel/base p99",
            "base RT/s",
            "accel RT/s",
            "accel/base RT/s",
            "spread p50 base/accel",
            "legs",
            "accelerated vs baseline",
        ]
        .map(String::from)
        .to_vec();
        let mut rows = Vec::new();
        for r in self.rows_of(p, MeshWorkload::Rr) {
            let (b, a) = (r.get(Mode::Baseline), r.get(Mode::Accel));
            let q50 = r.ratio(|a| a.p50_us);
            let q99 = r.ratio(|a| a.p99_us);
            rows.push(vec![
                size_label(r.size),
                lat(b.p50_us),
                lat(a.p50_us),
                bold_if(x(q50), q50.is_some_and(|q| q > 1.0)),
                lat(b.p99_us),
                lat(a.p99_us),
                bold_if(x(q99), q99.is_some_and(|q| q > 1.0)),
                rate(b.per_s),
                rate(a.per_s),
                x(r.ratio(|a| a.per_s)),
                format!("{}/{}", spread(b.p50_us), spread(a.p50_us)),
                legs(a),
                r.verdict(),
            ]);
        }
        table(s, &header, &rows, Align::Numbers);
    }

    fn stream_table(&self, s: &mut String, p: Placement) {
        let _ = writeln!(s, "### Streaming A -> B through both sidecars (MB/s)\n");
        let header: Vec<String> = [
            "write size",
            "base MB/s",
            "accel MB/s",
            "accel/base",
            "spread base/accel",
            "legs",
            "accelerated vs baseline",
        ]
        .map(String::from)
        .to_vec();
        let mut rows = Vec::new();
        for r in self.rows_of(p, MeshWorkload::Stream) {
            let (b, a) = (r.get(Mode::Baseline), r.get(Mode::Accel));
            let q = r.ratio(|a| a.mb_per_s);
            rows.push(vec![
                size_label(r.size),
                mbs(b.mb_per_s),
                mbs(a.mb_per_s),
                bold_if(x(q), q.is_some_and(|q| q < 1.0)),
                format!("{}/{}", spread(b.mb_per_s), spread(a.mb_per_s)),
                legs(a),
                r.verdict(),
            ]);
        }
        table(s, &header, &rows, Align::Numbers);
    }

    fn targets(&self, s: &mut String) {
        type Eval = fn(&MeshReport, Placement) -> String;
        let targets: [(&str, Eval); 4] = [
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
                    .filter_map(|r| Some((r.size, r.ratio(|a| a.mb_per_s)?)))
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
                |rep, p| {
                    let mut n = 0;
                    let mut slow = Vec::new();
                    for r in rep.rows.iter().filter(|r| r.placement == p) {
                        if let Some((q, bad)) = r.slower() {
                            n += 1;
                            if bad {
                                slow.push(format!(
                                    "{} {} {q:.2}x",
                                    r.workload.name(),
                                    size_label(r.size)
                                ));
                            }
                        }
                    }
                    not_slower(n, &slow)
                },
            ),
        ];
        let placements: Vec<(Placement, &str)> =
            self.placements.iter().map(|&p| (p, p.name())).collect();
        targets_table(
            s,
            "Targets from the issue (evaluated on the medians)",
            self,
            &placements,
            &targets,
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
                lower(
                    rep.row(p, MeshWorkload::Rr, 100)
                        .and_then(|r| r.ratio(|a| a.p50_us)),
                )
            }),
            ("rr 100 B p99", "58% lower (pinned)", |rep, p| {
                lower(
                    rep.row(p, MeshWorkload::Rr, 100)
                        .and_then(|r| r.ratio(|a| a.p99_us)),
                )
            }),
            ("rr 16 KiB p50", "21% lower", |rep, p| {
                lower(
                    rep.row(p, MeshWorkload::Rr, 16 * 1024)
                        .and_then(|r| r.ratio(|a| a.p50_us)),
                )
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

    pub fn json(&self) -> Value {
        json!({
            "benchmark": "mesh",
            "facts": self.facts,
            "placements": self.placements,
            "medians": self.rows,
            "runs": self.records,
        })
    }
}

/// The 100 B request/response target on `f` (accel/base <= `t`).
fn rr100(rep: &MeshReport, p: Placement, f: fn(&ModeAgg) -> Option<Agg>, t: f64) -> String {
    match rep.row(p, MeshWorkload::Rr, 100).and_then(|r| r.ratio(f)) {
        Some(q) if q <= t => format!("MET: {:.0}% lower ({q:.2}x)", (1.0 - q) * 100.0),
        Some(q) => format!("**NOT MET**: {}", lower(Some(q))),
        None => "not run".into(),
    }
}

fn range_of(rep: &MeshReport, p: Placement, w: MeshWorkload) -> String {
    let f: fn(&ModeAgg) -> Option<Agg> = match w {
        MeshWorkload::Wrk => |a| a.per_s,
        _ => |a| a.mb_per_s,
    };
    let v: Vec<String> = rep
        .rows_of(p, w)
        .filter_map(|r| Some(format!("{} {:.2}x", size_label(r.size), r.ratio(f)?)))
        .collect();
    if v.is_empty() {
        "not run".into()
    } else {
        v.join(", ")
    }
}

/// One line per finished case, on stderr while the benchmark runs.
pub fn progress_line(p: Placement, case: MeshCase, records: &[MeshRecord]) -> String {
    let r = MeshRow::build(p, case, records);
    let mut s = format!(
        "[{}] {:<6} {:>7}:",
        p.name(),
        case.workload.name(),
        size_label(case.size)
    );
    for m in Mode::ALL {
        let a = r.get(m);
        let v = match case.workload {
            MeshWorkload::Wrk => format!("{} req/s p50 {} µs", rate(a.per_s), lat(a.p50_us)),
            MeshWorkload::Rr => format!("p50 {} µs p99 {} µs", lat(a.p50_us), lat(a.p99_us)),
            MeshWorkload::Stream => format!("{} MB/s", mbs(a.mb_per_s)),
        };
        let _ = write!(s, "  {} {v}", m.label());
    }
    if let Some((q, _)) = r.slower() {
        let _ = write!(s, "  ({q:.2}x)");
    }
    let probs = r.problems();
    if !probs.is_empty() {
        let _ = write!(s, "  [{probs}]");
    }
    s
}
