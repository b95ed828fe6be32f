//! Medians, ratios, the markdown tables, the target check and the raw JSON.

use std::{collections::BTreeMap, fmt::Write as _, time::SystemTime};

use serde::Serialize;
use serde_json::{Value, json};

use super::{
    Agg, Align, Health, Machine, RunHealth, f, failures, lat, not_slower, rate, read_trim,
    rows_for, size_label, spread, table, targets_table, verdict, x,
};
use crate::{
    Case, Config, LoopbackArgs, PlacementKind, RunRecord, Transport, worker::STREAM_READ_BUF,
    worker::Workload,
};

/// Issue targets.
const RR_LATENCY_TARGET: f64 = 0.65;
const STREAM_64K_TARGET: f64 = 2.0;

#[derive(Debug, Clone, Serialize)]
pub struct Facts {
    #[serde(flatten)]
    pub machine: Machine,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub repeats: usize,
    pub tcp_wmem: String,
    pub tcp_rmem: String,
    pub unix_wmem_default: String,
    pub stream_read_buf: usize,
}

impl Facts {
    pub fn collect(_args: &LoopbackArgs, cfg: &Config, started: SystemTime) -> Self {
        Facts {
            machine: Machine::collect(started),
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

impl RunHealth for RunRecord {
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

#[derive(Debug, Clone, Default, Serialize)]
pub struct TransportAgg {
    pub p50_us: Option<Agg>,
    pub p99_us: Option<Agg>,
    pub rts_per_s: Option<Agg>,
    pub mb_per_s: Option<Agg>,
    #[serde(flatten)]
    pub health: Health,
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
                    health: Health::of(&rs),
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
            self.get(t).health.problems(t.label(), &mut p);
        }
        p.join("; ")
    }
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
        let rows = rows_for(placements, cases, |p, c| Row::build(p, c, &records));
        Report {
            facts,
            placements: placements.to_vec(),
            rows,
            records,
        }
    }

    pub fn failures(&self) -> usize {
        failures(&self.records)
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
        fa.machine.markdown_lines(&mut s);
        let _ = writeln!(
            s,
            "- CPU: {}, {} logical CPUs",
            fa.machine.cpu_model, fa.machine.logical_cpus
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
        let header: Vec<String> = [
            "size",
            "TCP p50",
            "accel p50",
            "unix p50",
            "accel/TCP p50",
            "unix/TCP p50",
            "TCP p99",
            "accel p99",
            "unix p99",
            "accel/TCP p99",
            "TCP RT/s",
            "accel RT/s",
            "unix RT/s",
            "spread p50 TCP/accel/unix",
            "accelerated vs TCP",
        ]
        .map(String::from)
        .to_vec();
        let mut rows = Vec::new();
        for r in self.rows_of(p, Workload::Rr) {
            let (t, a, u) = (
                r.get(Transport::Tcp),
                r.get(Transport::Accel),
                r.get(Transport::Unix),
            );
            let rp50 = r.ratio(Transport::Accel, |a| a.p50_us);
            let rp99 = r.ratio(Transport::Accel, |a| a.p99_us);
            let mut verdict = verdict(rp50, false, a.p50_us, t.p50_us);
            if rp99.is_some_and(|q| q > 1.0) {
                verdict.push_str("; p99 slower");
            }
            let probs = r.problems();
            if !probs.is_empty() {
                let _ = write!(verdict, "; {probs}");
            }
            let bold = |v: String, bad: bool| if bad { format!("**{v}**") } else { v };
            rows.push(vec![
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
                format!(
                    "{}/{}/{}",
                    spread(t.p50_us),
                    spread(a.p50_us),
                    spread(u.p50_us)
                ),
                verdict,
            ]);
        }
        table(s, &header, &rows, Align::Numbers);
    }

    fn stream_table(&self, s: &mut String, p: PlacementKind) {
        let _ = writeln!(s, "### Streaming (throughput in MB/s)\n");
        let header: Vec<String> = [
            "size",
            "TCP MB/s",
            "accel MB/s",
            "unix MB/s",
            "accel/TCP",
            "unix/TCP",
            "spread TCP/accel/unix",
            "accelerated vs TCP",
        ]
        .map(String::from)
        .to_vec();
        let mut rows = Vec::new();
        for r in self.rows_of(p, Workload::Stream) {
            let (t, a, u) = (
                r.get(Transport::Tcp),
                r.get(Transport::Accel),
                r.get(Transport::Unix),
            );
            let q = r.ratio(Transport::Accel, |a| a.mb_per_s);
            let mut verdict = verdict(q, true, a.mb_per_s, t.mb_per_s);
            let probs = r.problems();
            if !probs.is_empty() {
                let _ = write!(verdict, "; {probs}");
            }
            let xs = x(q);
            rows.push(vec![
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
                format!(
                    "{}/{}/{}",
                    spread(t.mb_per_s),
                    spread(a.mb_per_s),
                    spread(u.mb_per_s)
                ),
                verdict,
            ]);
        }
        table(s, &header, &rows, Align::Numbers);
    }

    /// The targets, evaluated on the medians (never tuned).
    fn targets(&self, s: &mut String) {
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
                    not_slower(n, &slow)
                },
            ),
        ];
        let placements: Vec<(PlacementKind, &str)> =
            self.placements.iter().map(|&p| (p, p.name())).collect();
        targets_table(
            s,
            "Targets from the issue (evaluated on the medians)",
            self,
            &placements,
            &targets,
        );
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
