//! Medians, ratios, the markdown tables, the target check and the raw JSON.

use std::{fmt::Write as _, time::SystemTime};

use serde::{Deserialize, Serialize};

use super::{
    Agg, Machine, Target, f, lat, rate, read_trim,
    rows::{self, Health, Key, Metric, Run, Side, agg_ok},
    size_label, x,
};
use crate::records::{
    PEAK_SAMPLE_EVERY,
    loopback::{LoopbackCase, LoopbackConfig, RunRecord, Transport, TransportOrder},
    placement::Placement,
    worker::{STREAM_READ_BUF, Workload},
};

/// The open streaming issue's targets (never tuned to a result): request/
/// response p50 against plain TCP, by placement (unpinned has none)...
fn rr_p50_target(p: Placement) -> Option<f64> {
    match p {
        Placement::OneCore => Some(0.70),
        Placement::TwoCore => Some(0.80),
        Placement::Unpinned => None,
    }
}
/// ... the 64 KiB stream on one core (the other placements have none) ...
const STREAM_64K_ONE_CORE_TARGET: f64 = 1.5;
/// ... and connections per second of accelerated churn against plain TCP's.
const CHURN_TARGET: f64 = 0.97;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Facts {
    #[serde(flatten)]
    pub machine: Machine,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub repeats: usize,
    /// Absent in results written before the transports took turns.
    #[serde(default, skip_serializing_if = "TransportOrder::is_fixed")]
    pub transport_order: TransportOrder,
    pub tcp_wmem: String,
    pub tcp_rmem: String,
    pub unix_wmem_default: String,
    pub stream_read_buf: usize,
}

impl AsRef<Machine> for Facts {
    fn as_ref(&self) -> &Machine {
        &self.machine
    }
}

impl Facts {
    pub fn collect(cfg: &LoopbackConfig, started: SystemTime) -> Self {
        Facts {
            machine: Machine::collect(started),
            duration_s: cfg.duration.as_secs_f64(),
            warmup_s: cfg.warmup.as_secs_f64(),
            repeats: cfg.repeats,
            transport_order: cfg.order,
            tcp_wmem: read_trim("/proc/sys/net/ipv4/tcp_wmem"),
            tcp_rmem: read_trim("/proc/sys/net/ipv4/tcp_rmem"),
            unix_wmem_default: read_trim("/proc/sys/net/core/wmem_default"),
            stream_read_buf: STREAM_READ_BUF,
        }
    }
}

impl Key for Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::Rr => "rr",
            Workload::Stream => "stream",
            Workload::Churn => "churn",
        }
    }
}

impl Side for Transport {
    const ALL: &'static [Transport] = &Transport::ALL;
    const ACCEL: Transport = Transport::Accel;
    const REFERENCE: Transport = Transport::Tcp;
    fn label(self) -> &'static str {
        Transport::label(self)
    }
}

impl Run for RunRecord {
    const BENCHMARK: &'static str = "loopback";
    type Placement = Placement;
    type Workload = Workload;
    type Side = Transport;
    type Agg = TransportAgg;

    rows::record_fields!(transport);

    fn eagain(&self) -> (u64, u64) {
        (self.numbers.send_eagain, self.numbers.recv_eagain)
    }

    fn aggregate(runs: &[&RunRecord]) -> TransportAgg {
        TransportAgg {
            p50_us: agg_ok(runs, |r| r.numbers.p50_us),
            p99_us: agg_ok(runs, |r| r.numbers.p99_us),
            rts_per_s: agg_ok(runs, |r| r.numbers.per_s),
            mb_per_s: agg_ok(runs, |r| r.numbers.mb_per_s),
            by_tcp: agg_ok(runs, RunRecord::tcp_share_pct),
            peak_tcp_mem_mib: agg_ok(runs, RunRecord::peak_tcp_mem_mib),
            health: Health::of(runs),
        }
    }
    fn headline(w: Workload) -> (Metric<TransportAgg>, bool) {
        match w {
            Workload::Rr => (|a| a.p50_us, false),
            Workload::Stream => (|a| a.mb_per_s, true),
            Workload::Churn => (|a| a.rts_per_s, true),
        }
    }
    fn p99(w: Workload) -> Option<Metric<TransportAgg>> {
        match w {
            Workload::Rr | Workload::Churn => Some(|a| a.p99_us),
            Workload::Stream => None,
        }
    }
    fn problems(t: Transport, a: &TransportAgg, out: &mut Vec<String>) {
        a.health.problems(t.label(), out);
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct TransportAgg {
    pub p50_us: Option<Agg>,
    pub p99_us: Option<Agg>,
    pub rts_per_s: Option<Agg>,
    pub mb_per_s: Option<Agg>,
    /// Accelerated: % of the moved bytes sent by TCP (flow control's
    /// switches). Derived from the runs' counters, so not in the JSON's
    /// medians (which round-trip with the committed results).
    #[serde(skip_serializing)]
    pub by_tcp: Option<Agg>,
    /// Peak node TCP memory during a run, MiB (TCP and accelerated).
    #[serde(skip_serializing)]
    pub peak_tcp_mem_mib: Option<Agg>,
    #[serde(flatten)]
    pub health: Health,
}

/// The targets, evaluated on the medians (never tuned).
const TARGETS: [Target<Report, Placement>; 4] = [
    (
        "request/response p50 latency <= 0.70x plain TCP on one core, <= 0.80x on two cores \
         (every size)",
        |rep, p| {
            let Some(target) = rr_p50_target(p) else {
                return "no target".into();
            };
            rep.check(p, Workload::Rr, |r| {
                r.accel_ratio(|a| a.p50_us).map(|q| (q, q <= target))
            })
        },
    ),
    (
        "64 KiB streaming >= 1.5x plain TCP on one core",
        |rep, p| {
            if p != Placement::OneCore {
                return "no target".into();
            }
            let Some(r) = rep.row(p, Workload::Stream, 64 * 1024) else {
                return "not run".into();
            };
            match r.accel_ratio(|a| a.mb_per_s) {
                Some(q) if q >= STREAM_64K_ONE_CORE_TARGET => format!("MET ({q:.2}x)"),
                Some(q) => format!("**NOT MET** ({q:.2}x)"),
                None => "no data".into(),
            }
        },
    ),
    (
        "connection setup (churn connections/s) within 3 % of plain TCP",
        |rep, p| {
            let ratios: Vec<String> = rep
                .rows_of(p, Workload::Churn)
                .filter_map(|r| Some((r.size, r.accel_ratio(|a| a.rts_per_s)?)))
                .map(|(size, q)| {
                    let verdict = if q >= CHURN_TARGET {
                        ""
                    } else {
                        " **NOT MET**"
                    };
                    format!("{} {q:.2}x{verdict}", size_label(size))
                })
                .collect();
            if ratios.is_empty() {
                "not run".into()
            } else if ratios.iter().any(|r| r.contains("NOT MET")) {
                ratios.join(", ")
            } else {
                format!("MET ({})", ratios.join(", "))
            }
        },
    ),
    (
        "no message size slower than plain TCP (rr p50, streaming MB/s, churn connections/s)",
        |rep, p| rep.no_size_slower(p),
    ),
];

pub type Row = rows::Row<RunRecord>;
pub type Report = rows::Report<Facts, RunRecord>;

impl Report {
    pub fn markdown(&self) -> String {
        let fa = &self.facts;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "# Loopback micro-benchmark: plain TCP vs accelerated TCP (sockmap) vs Unix socket\n"
        );
        fa.machine.markdown_lines(&mut s);
        let _ = writeln!(s, "- CPU: {}", fa.machine.cpu());
        let _ = writeln!(
            s,
            "- Runs: {:.2} s measured after {:.2} s warm-up, {} repeats per transport and case, \
             transports interleaved ({}); every number is the median over the repeats of the \
             per-run value",
            fa.duration_s,
            fa.warmup_s,
            fa.repeats,
            fa.transport_order.describe()
        );
        let _ = writeln!(
            s,
            "- Sockets: TCP on 127.0.0.1 with TCP_NODELAY and default buffers (tcp_wmem {}, \
             tcp_rmem {}); Unix SOCK_STREAM with default buffers (wmem_default {}), blocking or \
             non-blocking as the TCP workers (`--worker-io`); the streaming reader reads {} KiB \
             per call. Plain TCP and unix run in a private cgroup with nothing attached, \
             accelerated TCP in the daemon's private cgroup: same code, same cgroup depth",
            fa.tcp_wmem,
            fa.tcp_rmem,
            fa.unix_wmem_default,
            fa.stream_read_buf / 1024
        );
        let (acc_proven, acc) = self.proven(true);
        let (base_proven, base) = self.proven(false);
        let _ = writeln!(
            s,
            "- Proof from the datapath counters (`accel-daemon status --json`, read after every \
             run): {}/{} accelerated runs redirected every byte they moved, or sent the rest \
             by TCP only after the datapath's own decisions (flow control, small-message writers \
             leaving, short-lived connections left unrecorded) ({:.2} GB redirected in total; \
             \"accel bytes by TCP\" is the share not redirected); {}/{} plain-TCP and unix runs \
             left redirect_*/pass_* unchanged",
            acc_proven,
            acc,
            self.redirected_bytes() as f64 / 1e9,
            base_proven,
            base
        );
        for t in Transport::ALL {
            let h = Health::of(&self.runs_of(t));
            if h.send_eagain + h.recv_eagain > 0 {
                let _ = writeln!(
                    s,
                    "- **Anomaly**: {}: blocking sockets returned EAGAIN (send {}, recv {}) in \
                     {}/{} runs; a blocking socket must never do that. The workers count it, \
                     wait for readiness and retry; byte counts still matched end to end in every \
                     run that is not marked failed",
                    t.label(),
                    h.send_eagain,
                    h.recv_eagain,
                    h.eagain_runs,
                    h.runs
                );
            }
        }
        let _ = writeln!(
            s,
            "\nHow to read: latency ratios below 1.00x are better than plain TCP, throughput \
             ratios above 1.00x are better. **SLOWER** marks sizes where accelerated TCP is \
             worse than plain TCP (request/response: median p50; streaming: median MB/s); \
             \"within spread\" means the per-repeat ranges of the two overlap. Spread is \
             (max-min)/median over the repeats. Peak TCP memory: the node's TCP memory \
             (/proc/net/sockstat) above its level before the run, the highest of samples every \
             {} ms; bytes redirected to a reader and not yet read count there. MB = 10^6 bytes.\n",
            PEAK_SAMPLE_EVERY.as_millis()
        );

        self.placement_sections(
            &mut s,
            Placement::title,
            &[Workload::Rr, Workload::Stream, Workload::Churn],
            |rep, s, p, w| match w {
                Workload::Rr => rep.rr_table(s, p),
                Workload::Stream => rep.stream_table(s, p),
                Workload::Churn => rep.churn_table(s, p),
            },
        );
        self.targets(&mut s, &TARGETS);
        super::program_cost::section(
            &mut s,
            &self.records,
            self.rows.iter().map(|r| (r.placement, r.workload, r.size)),
        );
        s
    }

    fn rr_table(&self, s: &mut String, p: Placement) {
        self.case_table(
            s,
            (p, Workload::Rr),
            "Request/response (latency per round trip in µs; round trips/s)",
            &[
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
            ],
            |r| {
                [
                    r.compared(|a| a.p50_us, lat, false),
                    vec![x(r.ratio(Transport::Unix, |a| a.p50_us))],
                    r.compared(|a| a.p99_us, lat, false),
                    r.each(|a| a.rts_per_s, rate),
                    vec![r.spreads(|a| a.p50_us)],
                ]
                .concat()
            },
        );
    }

    fn stream_table(&self, s: &mut String, p: Placement) {
        self.case_table(
            s,
            (p, Workload::Stream),
            "Streaming (throughput in MB/s)",
            &[
                "size",
                "TCP MB/s",
                "accel MB/s",
                "unix MB/s",
                "accel/TCP",
                "unix/TCP",
                "spread TCP/accel/unix",
                "accel bytes by TCP",
                "peak TCP memory TCP/accel (MiB)",
                "accelerated vs TCP",
            ],
            |r| {
                let peak = |t| {
                    r.get(t)
                        .peak_tcp_mem_mib
                        .map_or("-".into(), |a| format!("{:.1}", a.median))
                };
                [
                    r.compared(|a| a.mb_per_s, |v| f(v, 0), true),
                    vec![
                        x(r.ratio(Transport::Unix, |a| a.mb_per_s)),
                        r.spreads(|a| a.mb_per_s),
                        r.get(Transport::Accel)
                            .by_tcp
                            .map_or("-".into(), |a| format!("{:.0} %", a.median)),
                        format!("{}/{}", peak(Transport::Tcp), peak(Transport::Accel)),
                    ],
                ]
                .concat()
            },
        );
    }

    fn churn_table(&self, s: &mut String, p: Placement) {
        self.case_table(
            s,
            (p, Workload::Churn),
            "Connection churn (a new connection per request and echo, closed by the \
             server; connections/s, and latency per connection in µs)",
            &[
                "request size",
                "TCP conn/s",
                "accel conn/s",
                "unix conn/s",
                "accel/TCP",
                "unix/TCP",
                "TCP p50",
                "accel p50",
                "unix p50",
                "accel/TCP p50",
                "spread conn/s TCP/accel/unix",
                "accelerated vs TCP",
            ],
            |r| {
                [
                    r.compared(|a| a.rts_per_s, rate, true),
                    vec![x(r.ratio(Transport::Unix, |a| a.rts_per_s))],
                    r.compared(|a| a.p50_us, lat, false),
                    vec![r.spreads(|a| a.rts_per_s)],
                ]
                .concat()
            },
        );
    }

    /// Per-size check: MET if every size passes, else which sizes fail.
    fn check(&self, p: Placement, w: Workload, f: impl Fn(&Row) -> Option<(f64, bool)>) -> String {
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
}

/// One line per finished case, on stderr while the benchmark runs.
pub fn progress_line(p: Placement, case: LoopbackCase, records: &[RunRecord]) -> String {
    rows::progress_line(
        p,
        case,
        records,
        |a: &TransportAgg| match case.workload {
            Workload::Rr => format!("p50 {} µs", lat(a.p50_us)),
            Workload::Stream => format!("{} MB/s", f(a.mb_per_s, 0)),
            Workload::Churn => format!("{} conn/s", rate(a.rts_per_s)),
        },
        false,
    )
}
