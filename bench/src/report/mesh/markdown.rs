//! The markdown of `accel-bench mesh`: how the run was set up, its proof,
//! a table per placement and workload, the targets, the reference points.

use std::fmt::Write as _;

use super::{MeshReport, MeshRow, TARGETS, lower, mbs, range_of, rr_ratio};
use crate::{
    records::{
        PEAK_SAMPLE_EVERY,
        mesh::{MeshWorkload, Mode},
        placement::Placement,
    },
    report::{Agg, Align, lat, rate, rows::Health, table, x},
};

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

/// Both modes' median peak node TCP memory during a stream run.
fn peak_tcp_mem(r: &MeshRow) -> String {
    let peak = |m| {
        r.get(m)
            .peak_tcp_mem_mib
            .map_or_else(|| "-".into(), |a| format!("{:.1}", a.median))
    };
    format!("{}/{}", peak(Mode::Baseline), peak(Mode::Accel))
}

impl MeshReport {
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        self.setup_lines(&mut s);
        self.proof_lines(&mut s);
        let _ = writeln!(
            s,
            "\nHow to read: `accel/base` is accelerated / baseline of the medians; for latency \
             below 1.00x is better, for requests/s, round trips/s and MB/s above 1.00x is better. \
             **SLOWER** marks sizes where accelerated is worse on the headline metric (wrk: \
             requests/s; rr: p50; stream: MB/s); \"within spread\" means the per-repeat ranges \
             overlap. Spread is (max-min)/median over the repeats. `legs` is redirect_bytes / \
             application bytes (median): 3.00 means every byte was redirected on all three legs \
             (app A -> sidecar A, sidecar A -> sidecar B, sidecar B -> app B); for wrk it \
             includes the HTTP headers in the application bytes. Peak TCP memory (streams): \
             the node's TCP memory (/proc/net/sockstat) above its level before the run, the \
             highest of samples every {} ms; bytes redirected to a reader and not yet read \
             count there.\n",
            PEAK_SAMPLE_EVERY.as_millis()
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
        crate::report::program_cost::section(
            &mut s,
            &self.records,
            self.rows.iter().map(|r| (r.placement, r.workload, r.size)),
        );
        s
    }

    /// The title and how the run was set up.
    fn setup_lines(&self, s: &mut String) {
        let fa = &self.facts;
        let _ = writeln!(
            s,
            "# Same-node sidecar mesh benchmark: baseline (no datapath) vs accelerated\n"
        );
        fa.machine.markdown_lines(s);
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
            "- Topology (`accel_topology`): a private node namespace with a bridge; meshed \
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
    }

    /// What proves each run accelerated or not, and EAGAIN seen.
    fn proof_lines(&self, s: &mut String) {
        let fa = &self.facts;
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
             (wrk: the response bodies), counting what stream writers sent after leaving for \
             TCP by policy (`stream_writer_left_bytes`); {:.2} GB redirected in total; redirect_bytes / app \
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
                "peak TCP memory base/accel (MiB)",
                "accelerated vs baseline",
            ],
            |r| {
                [
                    r.compared(|a| a.mb_per_s, mbs, true),
                    vec![r.spreads(|a| a.mb_per_s), legs(r), peak_tcp_mem(r)],
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
            ("rr 100 B p50", "34% lower (one core)", |rep, p| {
                lower(rr_ratio(rep, p, 100, |a| a.p50_us))
            }),
            ("rr 100 B p99", "58% lower (one core)", |rep, p| {
                lower(rr_ratio(rep, p, 100, |a| a.p99_us))
            }),
            ("rr 16 KiB p50", "21% lower", |rep, p| {
                lower(rr_ratio(rep, p, 16 * 1024, |a| a.p50_us))
            }),
            ("streaming MB/s", "2x (one core)", |rep, p| {
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
