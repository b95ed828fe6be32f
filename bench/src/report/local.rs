//! `accel-bench run-local`: the markdown report of one run, from its
//! comparison of the fortio files and its other records.

use std::fmt::Write as _;

use serde::Serialize;

use super::{
    Align, Machine,
    compare::{Comparison, Pair},
    not_slower, size_label, table,
};
use crate::records::{
    local::{ConnRate, DaemonUsage, LocalPlan, LocalProto, RunProof},
    mesh::Mode,
};

/// The facts of the machine and the run at the top of the report.
#[derive(Debug, Clone, Serialize)]
pub struct LocalFacts {
    #[serde(flatten)]
    pub machine: Machine,
    pub loadavg_start: String,
    pub loadavg_end: String,
    pub total_secs: f64,
    pub haproxy: String,
    pub nginx: String,
}

/// The markdown of run-local.md.
pub fn markdown(
    a: &LocalPlan,
    f: &LocalFacts,
    cmp: &Comparison,
    u: &DaemonUsage,
    conn: &ConnRate,
    proofs: &[RunProof],
) -> String {
    let mut s =
        String::from("# Local benchmark kit: same-node sidecar mesh, baseline vs accelerated\n\n");
    f.machine.markdown_lines(&mut s);
    let _ = writeln!(
        s,
        "- CPU: {}, {} logical CPUs; loadavg at start `{}`, at end `{}`; run took {:.0} s",
        f.machine.cpu_model, f.machine.logical_cpus, f.loadavg_start, f.loadavg_end, f.total_secs
    );
    let _ = writeln!(s, "- Tools: {}; {}", f.haproxy, f.nginx);
    let _ = writeln!(
        s,
        "- Path: `accel-bench load` in meshed pod A -> sidecar A -> sidecar B -> {} in pod B \
         (three TCP connections per request); {:.1} s measured after {:.1} s warm-up per run; \
         {} rounds per placement, modes alternating per round (A B, B A, ...); sizes {}; -c {}; \
         rate {}",
        match a.proto {
            LocalProto::Http => "nginx (HTTP/1.1 keep-alive, every body checked byte for byte)",
            LocalProto::Tcp => "the echo app (TCP request/response, every echo checked)",
        },
        a.duration,
        a.warmup,
        a.rounds,
        a.sizes
            .iter()
            .map(|&x| size_label(x))
            .collect::<Vec<_>>()
            .join(", "),
        a.connections
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join("/"),
        a.qps
            .iter()
            .map(|&q| if q > 0.0 {
                format!("{q} req/s")
            } else {
                "max".into()
            })
            .collect::<Vec<_>>()
            .join(", ")
    );
    let ok_acc = proofs
        .iter()
        .filter(|p| p.mode == Mode::Accel && p.verified)
        .count();
    let n_acc = proofs.iter().filter(|p| p.mode == Mode::Accel).count();
    let ok_base = proofs
        .iter()
        .filter(|p| p.mode == Mode::Baseline && p.verified)
        .count();
    let n_base = proofs.len() - n_acc;
    let _ = writeln!(
        s,
        "- Proof: {ok_acc}/{n_acc} accelerated runs grew `redirect_bytes` by at least their \
         application bytes; {ok_base}/{n_base} baseline runs had nothing attached and no pins \
         before and after"
    );
    let _ = writeln!(
        s,
        "- CPU µs/req: CPU time of every process in the pods' cgroup (load generator, both \
         sidecars, server; not the daemon) per request\n"
    );

    // Targets.
    let mut rows = Vec::new();
    let kib: Vec<&Pair> = cmp
        .pairs
        .iter()
        .filter(|p| p.size == Some(1024) && !p.fixed_rate())
        .collect();
    let list = |f: &dyn Fn(&Pair) -> Option<f64>, ok: &dyn Fn(f64) -> bool| {
        let mut met = 0;
        let mut parts = Vec::new();
        for p in &kib {
            if let Some(q) = f(p) {
                if ok(q) {
                    met += 1;
                }
                parts.push(format!("{} {q:.2}x", p.series()));
            }
        }
        if parts.is_empty() {
            "not run".to_string()
        } else if met == parts.len() {
            format!("MET in {met}/{} ({})", parts.len(), parts.join(", "))
        } else {
            format!(
                "**NOT MET**: met in {met}/{} ({})",
                parts.len(),
                parts.join(", ")
            )
        }
    };
    rows.push(vec![
        "1 KiB meshed request path: p50 >= 30% lower".into(),
        list(&|p| p.p_ratio(0), &|q| q <= 0.70),
    ]);
    rows.push(vec![
        "1 KiB meshed request path: p99 >= 30% lower".into(),
        list(&|p| p.p_ratio(2), &|q| q <= 0.70),
    ]);
    rows.push(vec![
        "1 KiB meshed request path: requests/s >= 1.5x".into(),
        list(&|p| p.qps_ratio(), &|q| q >= 1.5),
    ]);
    let slow: Vec<String> = cmp
        .pairs
        .iter()
        .filter(|p| p.slower() == Some(true))
        .map(|p| format!("{} ({:.2}x req/s)", p.name(), p.qps_ratio().unwrap_or(0.0)))
        .collect();
    let paired = cmp.pairs.iter().filter(|p| p.slower().is_some()).count();
    rows.push(vec![
        "no payload size slower than baseline".into(),
        not_slower(paired, &slow),
    ]);
    let verdict = |ok: bool| if ok { "MET" } else { "**NOT MET**" };
    rows.push(vec![
        "unmeshed connection setup rate within 2% of no daemon".into(),
        if conn.baseline.is_empty() {
            "not measured".into()
        } else {
            format!(
                "{}: {:.0} vs {:.0} connections/s ({:+.1}%)",
                verdict(conn.ratio >= 0.98),
                conn.daemon_median,
                conn.baseline_median,
                (conn.ratio - 1.0) * 100.0
            )
        },
    ]);
    let max_rss = u
        .load_rss_kib
        .iter()
        .copied()
        .chain([u.idle_rss_kib])
        .max()
        .unwrap_or(0);
    rows.push(vec![
        "daemon RSS <= 20 MiB".into(),
        if max_rss == 0 {
            "not measured".into()
        } else {
            format!(
                "{}: RSS idle {:.1} MiB ({:.1} MiB anonymous, {:.1} MiB file-backed; {} \
                 threads), under load up to {:.1} MiB (peak VmHWM {:.1} MiB)",
                verdict(u.max_hwm_kib.max(max_rss) <= 20 * 1024),
                u.idle_rss_kib as f64 / 1024.0,
                u.idle_rss_anon_kib as f64 / 1024.0,
                u.idle_rss_file_kib as f64 / 1024.0,
                u.idle_threads,
                max_rss as f64 / 1024.0,
                u.max_hwm_kib as f64 / 1024.0
            )
        },
    ]);
    let load_cpu = u
        .load_cpu_pct
        .iter()
        .map(|c| format!("{c:.2} %"))
        .collect::<Vec<_>>()
        .join(", ");
    rows.push(vec![
        "daemon idle CPU about 0 (< 0.5 % of one CPU)".into(),
        if u.idle_cpu_pct.is_nan() {
            format!("idle not measured; under load (per accelerated round) {load_cpu}")
        } else {
            format!(
                "{}: {:.2} % of one CPU idle; under load (per accelerated round) {load_cpu}",
                verdict(u.idle_cpu_pct < 0.5),
                u.idle_cpu_pct
            )
        },
    ]);
    let _ = writeln!(s, "## Targets from the issue (medians, this run)\n");
    table(&mut s, &["target", "result"], &rows, Align::Text);

    let _ = writeln!(
        s,
        "## Unmeshed connection setup (pod U1 -> pod U2, connect + 1 byte each way + close, -c 1)\n"
    );
    let fmt = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    table(
        &mut s,
        &["mode", "connections/s per round", "median"],
        &[
            vec![
                "no daemon".into(),
                fmt(&conn.baseline),
                format!("{:.0}", conn.baseline_median),
            ],
            vec![
                "daemon attached".into(),
                fmt(&conn.daemon),
                format!("{:.0} ({:.3}x)", conn.daemon_median, conn.ratio),
            ],
        ],
        Align::Text,
    );
    let _ = writeln!(s, "## Meshed request path, baseline vs accelerated\n");
    let _ = writeln!(
        s,
        "Each cell: median baseline → median accelerated (accelerated / baseline). Latency \
         and CPU per request: below 1.00x is better; requests/s: above 1.00x is better. Plots: \
         [latency.svg](latency.svg), [throughput.svg](throughput.svg); raw fortio JSON in \
         [json/](json/).\n"
    );
    cmp.markdown_table(&mut s);
    let failed: Vec<&RunProof> = proofs.iter().filter(|p| !p.verified).collect();
    if !failed.is_empty() {
        let _ = writeln!(s, "## Failed or unproven runs\n");
        for p in failed {
            let _ = writeln!(s, "- `{}` ({}): {}", p.file, p.mode.label(), p.note);
        }
    }
    s
}
