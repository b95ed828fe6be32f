//! The datapath programs' share of the accelerated runs (`accel-bench
//! loopback --bpf-stats`): what the kernel counted of `accel_sockops` and
//! `accel_sk_msg` during each run, per unit of work.

use std::fmt::Write as _;

use super::{Agg, rows::Key, size_label};
use crate::{
    bpf_stats::{RUN_NS, RUNS},
    records::{
        loopback::{RunRecord, Transport},
        placement::Placement,
        worker::Workload,
    },
};

/// The programs reported, in their columns' order.
const PROGRAMS: [&str; 2] = ["accel_sockops", "accel_sk_msg"];

/// What one unit of work is, how many a run did (warm-up included, as in
/// the counters: from the bytes moved) and how many it did a second.
fn units(r: &RunRecord) -> (&'static str, Option<f64>, Option<f64>) {
    let n = &r.numbers;
    let size = r.size.max(1) as f64;
    let moved = n.bytes_moved as f64;
    match r.workload {
        // A request and its echo.
        Workload::Rr => ("round trip", Some(moved / (2.0 * size)), n.per_s),
        Workload::Churn => ("connection", Some(moved / (2.0 * size)), n.per_s),
        Workload::Stream => (
            "message",
            Some(moved / size),
            n.mb_per_s.map(|m| m * 1e6 / size),
        ),
    }
}

fn delta(r: &RunRecord, key: &str) -> Option<f64> {
    r.counters_delta.get(key).map(|&v| v as f64)
}

trait DivNonzero {
    fn div_nonzero(self, by: f64) -> Option<f64>;
}

impl DivNonzero for f64 {
    fn div_nonzero(self, by: f64) -> Option<f64> {
        (by > 0.0).then(|| self / by)
    }
}

/// Whether any accelerated run counted program run time.
fn counted(records: &[RunRecord]) -> bool {
    records.iter().any(|r| {
        r.transport == Transport::Accel
            && PROGRAMS
                .iter()
                .any(|p| delta(r, &format!("{RUN_NS}{p}")).is_some_and(|v| v > 0.0))
    })
}

/// The section, in the order of `cases` (placement, workload, size); nothing
/// when no run was counted.
pub fn section(
    s: &mut String,
    records: &[RunRecord],
    cases: impl Iterator<Item = (Placement, Workload, usize)>,
) {
    if !counted(records) {
        return;
    }
    let _ = writeln!(
        s,
        "\n## The datapath programs' run time (`--bpf-stats`)\n\n\
         The kernel's count of each program's runs and run time during every accelerated run \
         (`BPF_ENABLE_STATS`, on for the whole benchmark, so every BPF program on the machine \
         paid a few tens of nanoseconds more per run, plain TCP's and unix's runs included), \
         per unit of work; medians over the repeats. CPU: both programs' time per unit times \
         the units done a second, in % of one CPU.\n"
    );
    let _ = writeln!(
        s,
        "| placement | workload | size | unit | sock_ops runs | sock_ops ns | sk_msg runs | \
         sk_msg ns | CPU |\n|---|---|---:|---|---:|---:|---:|---:|---:|"
    );
    for (p, w, size) in cases {
        let runs: Vec<&RunRecord> = records
            .iter()
            .filter(|r| {
                r.transport == Transport::Accel
                    && r.ok
                    && r.placement == p
                    && r.workload == w
                    && r.size == size
            })
            .collect();
        let Some(first) = runs.first() else { continue };
        let unit = units(first).0;
        // Per unit of work, over the repeats.
        let per_unit = |key: &str| -> Vec<f64> {
            runs.iter()
                .filter_map(|r| delta(r, key)?.div_nonzero(units(r).1?))
                .collect()
        };
        let runs_of = |prog: &str| -> String {
            Agg::of(per_unit(&format!("{RUNS}{prog}")))
                .map_or("-".into(), |a| format!("{:.2}", a.median))
        };
        let ns_of = |prog: &str| -> String {
            Agg::of(per_unit(&format!("{RUN_NS}{prog}")))
                .map_or("-".into(), |a| format!("{:.0}", a.median))
        };
        // Both programs' ns per unit times units a second: a share of one CPU.
        let cpu: Vec<f64> = runs
            .iter()
            .filter_map(|r| {
                let (_, n, per_s) = units(r);
                let ns: f64 = PROGRAMS
                    .iter()
                    .filter_map(|p| delta(r, &format!("{RUN_NS}{p}")))
                    .sum();
                Some(ns.div_nonzero(n?)? * per_s? / 1e7)
            })
            .collect();
        let _ = writeln!(
            s,
            "| {} | {} | {} | {unit} | {} | {} | {} | {} | {} |",
            p.name(),
            w.name(),
            size_label(size),
            runs_of(PROGRAMS[0]),
            ns_of(PROGRAMS[0]),
            runs_of(PROGRAMS[1]),
            ns_of(PROGRAMS[1]),
            Agg::of(cpu).map_or("-".into(), |a| format!("{:.2} %", a.median)),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(
        transport: &str,
        workload: &str,
        size: usize,
        moved: u64,
        delta: serde_json::Value,
    ) -> RunRecord {
        serde_json::from_value(serde_json::json!({
            "placement": "one-core", "workload": workload, "size": size,
            "transport": transport, "repeat": 0, "ok": true, "error": null,
            "p50_us": 10.0, "p99_us": 20.0, "mean_us": 11.0, "min_us": 9.0, "max_us": 30.0,
            "round_trips": 900, "rts_per_s": 1000.0, "mb_per_s": null,
            "measured_bytes": null, "measured_secs": 0.9,
            "bytes_moved": moved, "send_eagain": 0, "recv_eagain": 0,
            "counters_delta": delta, "peak_tcp_mem": null,
            "verified": true, "verify_note": ""
        }))
        .expect("a loopback record")
    }

    fn render(records: &[RunRecord]) -> String {
        let mut s = String::new();
        section(
            &mut s,
            records,
            [(Placement::OneCore, Workload::Rr, 64)].into_iter(),
        );
        s
    }

    #[test]
    fn per_round_trip_from_the_counted_runs() {
        // 1,000 round trips of 64 B (warm-up included): 128,000 bytes moved.
        let delta = serde_json::json!({
            "prog_runs.accel_sockops": 0, "prog_run_ns.accel_sockops": 0,
            "prog_runs.accel_sk_msg": 2000, "prog_run_ns.accel_sk_msg": 500_000,
        });
        let s = render(&[
            record("accel", "rr", 64, 128_000, delta),
            record("tcp", "rr", 64, 128_000, serde_json::json!({})),
        ]);
        // sk_msg: 2 runs and 500 ns a round trip; 1,000 a second: 0.05 %.
        assert!(
            s.contains("| one-core | rr | 64 B | round trip | 0.00 | 0 | 2.00 | 500 | 0.05 % |"),
            "{s}"
        );
    }

    #[test]
    fn nothing_without_counted_run_time() {
        let zero = serde_json::json!({"prog_run_ns.accel_sk_msg": 0});
        assert!(render(&[record("accel", "rr", 64, 128_000, zero)]).is_empty());
        assert!(render(&[record("accel", "rr", 64, 128_000, serde_json::json!({}))]).is_empty());
    }
}
