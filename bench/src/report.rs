//! Medians, ratios, the markdown tables, the target check and the raw JSON.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    path::{Path, PathBuf},
    process::Command,
    time::SystemTime,
};

use serde::Serialize;
use serde_json::{Value, json};

use crate::{
    Case, Config, LoopbackArgs, PlacementKind, RunRecord, Transport, worker::STREAM_READ_BUF,
    worker::Workload,
};

/// Issue targets.
const RR_LATENCY_TARGET: f64 = 0.65;
const STREAM_64K_TARGET: f64 = 2.0;

pub fn default_results_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("results")
}

#[derive(Debug, Clone, Serialize)]
pub struct Facts {
    pub date: String,
    pub started_utc: String,
    pub kernel: String,
    pub cpu_model: String,
    pub logical_cpus: usize,
    pub command: String,
    pub git_commit: String,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub repeats: usize,
    pub tcp_wmem: String,
    pub tcp_rmem: String,
    pub unix_wmem_default: String,
    pub stream_read_buf: usize,
}

pub(crate) fn read_trim(p: &str) -> String {
    std::fs::read_to_string(p)
        .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

pub(crate) fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

pub(crate) fn git_commit() -> String {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or(Path::new("."));
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("--no-optional-locks")
            .arg("-C")
            .arg(repo)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        Some(c) => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{c} (working tree has uncommitted changes)")
            } else {
                c
            }
        }
        None => "unknown".into(),
    }
}

/// UTC calendar date and time (no time-zone database needed).
pub(crate) fn utc(t: SystemTime) -> (String, String) {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let date = format!("{y:04}-{m:02}-{d:02}");
    let time = format!(
        "{date} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    (date, time)
}

impl Facts {
    pub fn collect(_args: &LoopbackArgs, cfg: &Config, started: SystemTime) -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim() == "model name").then(|| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        let logical_cpus = cpuinfo
            .lines()
            .filter(|l| l.split(':').next().map(str::trim) == Some("processor"))
            .count();
        let (date, started_utc) = utc(started);
        Facts {
            date,
            started_utc,
            kernel: read_trim("/proc/sys/kernel/osrelease"),
            cpu_model,
            logical_cpus,
            command: std::env::args()
                .map(|a| shell_quote(&a))
                .collect::<Vec<_>>()
                .join(" "),
            git_commit: git_commit(),
            duration_s: cfg.duration.as_secs_f64(),
            warmup_s: cfg.warmup.as_secs_f64(),
            repeats: cfg.repeats,
            tcp_wmem: read_trim("/proc/sys/net/ipv4/tcp_wmem"),
            tcp_rmem: read_trim("/proc/sys/net/ipv4/tcp_rmem"),
            unix_wmem_default: read_trim("/proc/sys/net/core/wmem_default"),
            stream_read_buf: STREAM_READ_BUF,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Agg {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

impl Agg {
    pub(crate) fn of(mut v: Vec<f64>) -> Option<Agg> {
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Agg {
            median,
            min: v[0],
            max: v[n - 1],
            n,
        })
    }
    pub(crate) fn spread_pct(&self) -> f64 {
        if self.median > 0.0 {
            (self.max - self.min) / self.median * 100.0
        } else {
            0.0
        }
    }
    pub(crate) fn overlaps(&self, o: &Agg) -> bool {
        self.min <= o.max && o.min <= self.max
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct TransportAgg {
    pub p50_us: Option<Agg>,
    pub p99_us: Option<Agg>,
    pub rts_per_s: Option<Agg>,
    pub mb_per_s: Option<Agg>,
    pub runs: usize,
    pub failed: usize,
    pub unverified: usize,
    /// EAGAIN on blocking sends, summed over the runs, and runs with any.
    pub send_eagain: u64,
    pub recv_eagain: u64,
    pub eagain_runs: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub placement: &'static str,
    pub workload: Workload,
    pub size: usize,
    pub by: BTreeMap<Transport, TransportAgg>,
}

impl Row {
    fn build(placement: PlacementKind, case: Case, records: &[RunRecord]) -> Row {
        let mut by = BTreeMap::new();
        for t in Transport::ALL {
            let rs: Vec<&RunRecord> = records
                .iter()
                .filter(|r| {
                    r.placement == placement.name()
                        && r.workload == case.workload
                        && r.size == case.size
                        && r.transport == t
                })
                .collect();
            let good: Vec<&&RunRecord> = rs.iter().filter(|r| r.ok).collect();
            let col = |f: fn(&RunRecord) -> Option<f64>| {
                Agg::of(good.iter().filter_map(|r| f(r)).collect())
            };
            by.insert(
                t,
                TransportAgg {
                    p50_us: col(|r| r.p50_us),
                    p99_us: col(|r| r.p99_us),
                    rts_per_s: col(|r| r.rts_per_s),
                    mb_per_s: col(|r| r.mb_per_s),
                    runs: rs.len(),
                    failed: rs.iter().filter(|r| !r.ok).count(),
                    unverified: rs.iter().filter(|r| r.ok && !r.verified).count(),
                    send_eagain: rs.iter().map(|r| r.send_eagain).sum(),
                    recv_eagain: rs.iter().map(|r| r.recv_eagain).sum(),
                    eagain_runs: rs
                        .iter()
                        .filter(|r| r.send_eagain + r.recv_eagain > 0)
                        .count(),
                },
            );
        }
        Row {
            placement: placement.name(),
            workload: case.workload,
            size: case.size,
            by,
        }
    }

    fn get(&self, t: Transport) -> &TransportAgg {
        &self.by[&t]
    }

    /// Ratio of medians `t`/plain TCP for a metric.
    fn ratio(&self, t: Transport, f: fn(&TransportAgg) -> Option<Agg>) -> Option<f64> {
        let a = f(self.get(t))?;
        let b = f(self.get(Transport::Tcp))?;
        (b.median > 0.0).then(|| a.median / b.median)
    }

    fn problems(&self) -> String {
        let mut p = Vec::new();
        for t in Transport::ALL {
            let a = self.get(t);
            if a.failed > 0 {
                p.push(format!("{} {} failed", t.label(), a.failed));
            }
            if a.unverified > 0 {
                p.push(format!("{} {} UNVERIFIED", t.label(), a.unverified));
            }
            if a.send_eagain + a.recv_eagain > 0 {
                p.push(format!(
                    "{}: EAGAIN on blocking socket (send {}, recv {}) in {}/{} runs",
                    t.label(),
                    a.send_eagain,
                    a.recv_eagain,
                    a.eagain_runs,
                    a.runs
                ));
            }
        }
        p.join("; ")
    }
}

pub fn size_label(n: usize) -> String {
    if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{} MiB", n >> 20)
    } else if n >= 1024 && n.is_multiple_of(1024) {
        format!("{} KiB", n >> 10)
    } else {
        format!("{n} B")
    }
}

pub(crate) fn f(v: Option<Agg>, digits: usize) -> String {
    v.map(|a| format!("{:.*}", digits, a.median))
        .unwrap_or_else(|| "ERR".into())
}

pub(crate) fn lat(v: Option<Agg>) -> String {
    match v {
        Some(a) if a.median >= 100.0 => format!("{:.0}", a.median),
        Some(a) if a.median >= 10.0 => format!("{:.1}", a.median),
        Some(a) => format!("{:.2}", a.median),
        None => "ERR".into(),
    }
}

pub(crate) fn rate(v: Option<Agg>) -> String {
    match v {
        Some(a) if a.median >= 10_000.0 => format!("{:.1}k", a.median / 1e3),
        Some(a) => format!("{:.0}", a.median),
        None => "ERR".into(),
    }
}

pub(crate) fn x(r: Option<f64>) -> String {
    r.map(|r| format!("{r:.2}x"))
        .unwrap_or_else(|| "n/a".into())
}

pub(crate) fn spread(v: Option<Agg>) -> String {
    v.map(|a| format!("{:.0}%", a.spread_pct()))
        .unwrap_or_else(|| "-".into())
}

pub struct Report {
    pub facts: Facts,
    pub placements: Vec<PlacementKind>,
    pub rows: Vec<Row>,
    pub records: Vec<RunRecord>,
}

impl Report {
    pub fn build(
        facts: Facts,
        _cfg: &Config,
        placements: &[PlacementKind],
        cases: &[Case],
        records: Vec<RunRecord>,
    ) -> Report {
        let rows = placements
            .iter()
            .flat_map(|&p| cases.iter().map(move |&c| (p, c)))
            .map(|(p, c)| Row::build(p, c, &records))
            .collect();
        Report {
            facts,
            placements: placements.to_vec(),
            rows,
            records,
        }
    }

    pub fn failures(&self) -> usize {
        self.records.iter().filter(|r| !r.ok || !r.verified).count()
    }

    fn rows_of(&self, p: PlacementKind, w: Workload) -> impl Iterator<Item = &Row> {
        self.rows
            .iter()
            .filter(move |r| r.placement == p.name() && r.workload == w)
    }

    pub fn markdown(&self) -> String {
        let fa = &self.facts;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "# Loopback micro-benchmark: plain TCP vs accelerated TCP (sockmap) vs Unix socket\n"
        );
        let _ = writeln!(s, "- Date: {}", fa.started_utc);
        let _ = writeln!(s, "- Command: `{}`", fa.command);
        let _ = writeln!(s, "- Git commit: {}", fa.git_commit);
        let _ = writeln!(s, "- Kernel: {}", fa.kernel);
        let _ = writeln!(
            s,
            "- CPU: {}, {} logical CPUs",
            fa.cpu_model, fa.logical_cpus
        );
        let _ = writeln!(
            s,
            "- Runs: {:.2} s measured after {:.2} s warm-up, {} repeats per transport and case, \
             transports interleaved (plain TCP, accelerated, unix, plain TCP, ...); every number \
             is the median over the repeats of the per-run value",
            fa.duration_s, fa.warmup_s, fa.repeats
        );
        let _ = writeln!(
            s,
            "- Sockets: TCP on 127.0.0.1 with TCP_NODELAY and default buffers (tcp_wmem {}, \
             tcp_rmem {}); Unix SOCK_STREAM with default buffers (wmem_default {}); the \
             streaming reader reads {} KiB per call. Plain TCP and unix run in a private cgroup \
             with nothing attached, accelerated TCP in the daemon's private cgroup: same code, \
             same cgroup depth",
            fa.tcp_wmem,
            fa.tcp_rmem,
            fa.unix_wmem_default,
            fa.stream_read_buf / 1024
        );
        let acc: Vec<&RunRecord> = self
            .records
            .iter()
            .filter(|r| r.transport == Transport::Accel)
            .collect();
        let base: Vec<&RunRecord> = self
            .records
            .iter()
            .filter(|r| r.transport != Transport::Accel)
            .collect();
        let redirected: i64 = acc
            .iter()
            .map(|r| r.counters_delta.get("redirect_bytes").copied().unwrap_or(0))
            .sum();
        let _ = writeln!(
            s,
            "- Proof from the datapath counters (`accel-daemon status --json`, read after every \
             run): {}/{} accelerated runs grew redirect_bytes by at least the bytes they moved \
             ({:.2} GB redirected in total); {}/{} plain-TCP and unix runs left \
             redirect_*/pass_* unchanged",
            acc.iter().filter(|r| r.verified).count(),
            acc.len(),
            redirected as f64 / 1e9,
            base.iter().filter(|r| r.verified).count(),
            base.len()
        );
        for t in Transport::ALL {
            let rs: Vec<&RunRecord> = self.records.iter().filter(|r| r.transport == t).collect();
            let send: u64 = rs.iter().map(|r| r.send_eagain).sum();
            let recv: u64 = rs.iter().map(|r| r.recv_eagain).sum();
            if send + recv > 0 {
                let _ = writeln!(
                    s,
                    "- **Anomaly**: {}: blocking sockets returned EAGAIN (send {send}, recv \
                     {recv}) in {}/{} runs; a blocking socket must never do that. The workers \
                     count it, wait for readiness and retry; byte counts still matched end to \
                     end in every run that is not marked failed",
                    t.label(),
                    rs.iter()
                        .filter(|r| r.send_eagain + r.recv_eagain > 0)
                        .count(),
                    rs.len()
                );
            }
        }
        let _ = writeln!(
            s,
            "\nHow to read: latency ratios below 1.00x are better than plain TCP, throughput \
             ratios above 1.00x are better. **SLOWER** marks sizes where accelerated TCP is \
             worse than plain TCP (request/response: median p50; streaming: median MB/s); \
             \"within spread\" means the per-repeat ranges of the two overlap. Spread is \
             (max-min)/median over the repeats. MB = 10^6 bytes.\n"
        );

        for &p in &self.placements {
            let _ = writeln!(s, "## Placement: {}\n", p.title());
            if self.rows_of(p, Workload::Rr).next().is_some() {
                self.rr_table(&mut s, p);
            }
            if self.rows_of(p, Workload::Stream).next().is_some() {
                self.stream_table(&mut s, p);
            }
        }
        self.targets(&mut s);
        s
    }

    fn rr_table(&self, s: &mut String, p: PlacementKind) {
        let _ = writeln!(
            s,
            "### Request/response (latency per round trip in µs; round trips/s)\n"
        );
        let _ = writeln!(
            s,
            "| size | TCP p50 | accel p50 | unix p50 | accel/TCP p50 | unix/TCP p50 | TCP p99 | accel p99 | unix p99 | accel/TCP p99 | TCP RT/s | accel RT/s | unix RT/s | spread p50 TCP/accel/unix | accelerated vs TCP |"
        );
        let _ = writeln!(
            s,
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
        );
        for r in self.rows_of(p, Workload::Rr) {
            let (t, a, u) = (
                r.get(Transport::Tcp),
                r.get(Transport::Accel),
                r.get(Transport::Unix),
            );
            let rp50 = r.ratio(Transport::Accel, |a| a.p50_us);
            let rp99 = r.ratio(Transport::Accel, |a| a.p99_us);
            let mut verdict = match (rp50, a.p50_us, t.p50_us) {
                (Some(q), Some(aa), Some(tt)) if q > 1.0 => format!(
                    "⚠ **SLOWER** ({:+.0}%){}",
                    (q - 1.0) * 100.0,
                    if aa.overlaps(&tt) {
                        ", within spread"
                    } else {
                        ""
                    }
                ),
                (Some(_), _, _) => "faster".into(),
                _ => "n/a".into(),
            };
            if rp99.is_some_and(|q| q > 1.0) {
                verdict.push_str("; p99 slower");
            }
            let probs = r.problems();
            if !probs.is_empty() {
                let _ = write!(verdict, "; {probs}");
            }
            let bold = |v: String, bad: bool| if bad { format!("**{v}**") } else { v };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {}/{}/{} | {} |",
                size_label(r.size),
                lat(t.p50_us),
                lat(a.p50_us),
                lat(u.p50_us),
                bold(x(rp50), rp50.is_some_and(|q| q > 1.0)),
                x(r.ratio(Transport::Unix, |a| a.p50_us)),
                lat(t.p99_us),
                lat(a.p99_us),
                lat(u.p99_us),
                bold(x(rp99), rp99.is_some_and(|q| q > 1.0)),
                rate(t.rts_per_s),
                rate(a.rts_per_s),
                rate(u.rts_per_s),
                spread(t.p50_us),
                spread(a.p50_us),
                spread(u.p50_us),
                verdict
            );
        }
        let _ = writeln!(s);
    }

    fn stream_table(&self, s: &mut String, p: PlacementKind) {
        let _ = writeln!(s, "### Streaming (throughput in MB/s)\n");
        let _ = writeln!(
            s,
            "| size | TCP MB/s | accel MB/s | unix MB/s | accel/TCP | unix/TCP | spread TCP/accel/unix | accelerated vs TCP |"
        );
        let _ = writeln!(s, "|---:|---:|---:|---:|---:|---:|---:|---|");
        for r in self.rows_of(p, Workload::Stream) {
            let (t, a, u) = (
                r.get(Transport::Tcp),
                r.get(Transport::Accel),
                r.get(Transport::Unix),
            );
            let q = r.ratio(Transport::Accel, |a| a.mb_per_s);
            let mut verdict = match (q, a.mb_per_s, t.mb_per_s) {
                (Some(q), Some(aa), Some(tt)) if q < 1.0 => format!(
                    "⚠ **SLOWER** ({:+.0}%){}",
                    (q - 1.0) * 100.0,
                    if aa.overlaps(&tt) {
                        ", within spread"
                    } else {
                        ""
                    }
                ),
                (Some(_), _, _) => "faster".into(),
                _ => "n/a".into(),
            };
            let probs = r.problems();
            if !probs.is_empty() {
                let _ = write!(verdict, "; {probs}");
            }
            let xs = x(q);
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {}/{}/{} | {} |",
                size_label(r.size),
                f(t.mb_per_s, 0),
                f(a.mb_per_s, 0),
                f(u.mb_per_s, 0),
                if q.is_some_and(|q| q < 1.0) {
                    format!("**{xs}**")
                } else {
                    xs
                },
                x(r.ratio(Transport::Unix, |a| a.mb_per_s)),
                spread(t.mb_per_s),
                spread(a.mb_per_s),
                spread(u.mb_per_s),
                verdict
            );
        }
        let _ = writeln!(s);
    }

    /// The issue's targets, evaluated on the medians (never tuned).
    fn targets(&self, s: &mut String) {
        let _ = writeln!(s, "## Targets from the issue (evaluated on the medians)\n");
        let mut header = "| target |".to_string();
        let mut sep = "|---|".to_string();
        for p in &self.placements {
            let _ = write!(header, " {} |", p.name());
            sep.push_str("---|");
        }
        let _ = writeln!(s, "{header}\n{sep}");

        type Eval = fn(&Report, PlacementKind) -> String;
        let targets: [(&str, Eval); 4] = [
            (
                "request/response p50 latency <= 0.65x plain TCP (every size)",
                |rep, p| {
                    rep.check(p, Workload::Rr, |r| {
                        r.ratio(Transport::Accel, |a| a.p50_us)
                            .map(|q| (q, q <= RR_LATENCY_TARGET))
                    })
                },
            ),
            (
                "request/response p50 latency no worse than a Unix socket (every size)",
                |rep, p| {
                    rep.check(p, Workload::Rr, |r| {
                        let a = r.get(Transport::Accel).p50_us?.median;
                        let u = r.get(Transport::Unix).p50_us?.median;
                        (u > 0.0).then(|| (a / u, a <= u))
                    })
                },
            ),
            ("64 KiB streaming >= 2x plain TCP", |rep, p| {
                let Some(r) = rep
                    .rows_of(p, Workload::Stream)
                    .find(|r| r.size == 64 * 1024)
                else {
                    return "not run".into();
                };
                match r.ratio(Transport::Accel, |a| a.mb_per_s) {
                    Some(q) if q >= STREAM_64K_TARGET => format!("MET ({q:.2}x)"),
                    Some(q) => format!("**NOT MET** ({q:.2}x)"),
                    None => "no data".into(),
                }
            }),
            (
                "no message size slower than plain TCP (rr p50 and streaming MB/s)",
                |rep, p| {
                    let mut slow = Vec::new();
                    let mut n = 0;
                    for r in rep.rows.iter().filter(|r| r.placement == p.name()) {
                        let (q, bad) = match r.workload {
                            Workload::Rr => {
                                let q = r.ratio(Transport::Accel, |a| a.p50_us);
                                (q, q.is_some_and(|q| q > 1.0))
                            }
                            Workload::Stream => {
                                let q = r.ratio(Transport::Accel, |a| a.mb_per_s);
                                (q, q.is_some_and(|q| q < 1.0))
                            }
                        };
                        if q.is_some() {
                            n += 1;
                        }
                        if bad {
                            slow.push(format!(
                                "{} {} {}",
                                match r.workload {
                                    Workload::Rr => "rr",
                                    Workload::Stream => "stream",
                                },
                                size_label(r.size),
                                x(q)
                            ));
                        }
                    }
                    if n == 0 {
                        "no data".into()
                    } else if slow.is_empty() {
                        format!("MET ({n}/{n} cases not slower)")
                    } else {
                        format!(
                            "**NOT MET**: slower in {}/{n} cases: {}",
                            slow.len(),
                            slow.join(", ")
                        )
                    }
                },
            ),
        ];
        for (name, eval) in targets {
            let mut line = format!("| {name} |");
            for &p in &self.placements {
                let _ = write!(line, " {} |", eval(self, p));
            }
            let _ = writeln!(s, "{line}");
        }
        let _ = writeln!(s);
    }

    /// Per-size check: MET if every size passes, else which sizes fail.
    fn check(
        &self,
        p: PlacementKind,
        w: Workload,
        f: impl Fn(&Row) -> Option<(f64, bool)>,
    ) -> String {
        let mut n = 0;
        let mut fails = Vec::new();
        let mut worst: Option<(f64, usize)> = None;
        for r in self.rows_of(p, w) {
            let Some((q, ok)) = f(r) else { continue };
            n += 1;
            if worst.is_none_or(|(wq, _)| q > wq) {
                worst = Some((q, r.size));
            }
            if !ok {
                fails.push(format!("{} {q:.2}x", size_label(r.size)));
            }
        }
        match worst {
            None => "no data".into(),
            Some((wq, ws)) if fails.is_empty() => {
                format!(
                    "MET at {n}/{n} sizes (worst {wq:.2}x at {})",
                    size_label(ws)
                )
            }
            Some(_) => format!(
                "**NOT MET**: met at {}/{n} sizes; misses: {}",
                n - fails.len(),
                fails.join(", ")
            ),
        }
    }

    pub fn json(&self) -> Value {
        json!({
            "benchmark": "loopback",
            "facts": self.facts,
            "placements": self.placements,
            "medians": self.rows,
            "runs": self.records,
        })
    }
}

/// One line per finished case, on stderr while the benchmark runs.
pub fn progress_line(p: PlacementKind, case: Case, records: &[RunRecord]) -> String {
    let r = Row::build(p, case, records);
    let mut s = format!(
        "[{}] {} {:>7}:",
        p.name(),
        match case.workload {
            Workload::Rr => "rr    ",
            Workload::Stream => "stream",
        },
        size_label(case.size)
    );
    for t in Transport::ALL {
        let a = r.get(t);
        let v = match case.workload {
            Workload::Rr => format!("p50 {} µs", lat(a.p50_us)),
            Workload::Stream => format!("{} MB/s", f(a.mb_per_s, 0)),
        };
        let _ = write!(s, "  {} {v}", t.label());
    }
    let probs = r.problems();
    if !probs.is_empty() {
        let _ = write!(s, "  [{probs}]");
    }
    s
}
