//! The datapath programs' share of the accelerated runs (`--bpf-stats` of
//! `accel-bench loopback` and `mesh`): what the kernel counted of
//! `accel_sockops` and `accel_sk_msg` during each run, per unit of work.

use std::fmt::Write as _;

use super::{
    Agg,
    rows::{Key, Run, Side},
    size_label,
};
use crate::{
    bpf_stats::{RUN_NS, RUNS},
    records::{
        loopback::RunRecord,
        mesh::{MeshRecord, MeshWorkload},
        worker::Workload,
    },
};

/// A run whose work comes in units: what one is, how many the run did (as
/// the counters count them: warm-up included) and how many it did a second.
pub trait UnitsOfWork: Run {
    fn units(&self) -> (&'static str, Option<f64>, Option<f64>);
}

impl UnitsOfWork for RunRecord {
    fn units(&self) -> (&'static str, Option<f64>, Option<f64>) {
        let n = &self.numbers;
        let size = self.size.max(1) as f64;
        let moved = n.bytes_moved as f64;
        match self.workload {
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
}

impl UnitsOfWork for MeshRecord {
    fn units(&self) -> (&'static str, Option<f64>, Option<f64>) {
        let size = self.size.max(1) as f64;
        let moved = self.bytes_moved as f64;
        match self.workload {
            // wrk has no warm-up: its count is every request of the run.
            MeshWorkload::Wrk => ("request", self.count.map(|c| c as f64), self.per_s),
            MeshWorkload::Rr => ("round trip", Some(moved / (2.0 * size)), self.per_s),
            MeshWorkload::Stream => (
                "message",
                Some(moved / size),
                self.mb_per_s.map(|m| m * 1e6 / size),
            ),
        }
    }
}

/// The programs reported, in their columns' order.
const PROGRAMS: [&str; 2] = [accel_bpf::prog::SOCKOPS, accel_bpf::prog::SK_MSG];

fn delta<R: Run>(r: &R, key: &str) -> Option<f64> {
    r.counters_delta().get(key).map(|&v| v as f64)
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
fn counted<R: Run>(records: &[R]) -> bool {
    records.iter().any(|r| {
        r.side() == R::Side::ACCEL
            && PROGRAMS
                .iter()
                .any(|p| delta(r, &format!("{RUN_NS}{p}")).is_some_and(|v| v > 0.0))
    })
}

/// The section, in the order of `cases` (placement, workload, size); nothing
/// when no run was counted.
pub fn section<R: UnitsOfWork>(
    s: &mut String,
    records: &[R],
    cases: impl Iterator<Item = (R::Placement, R::Workload, usize)>,
) {
    if !counted(records) {
        return;
    }
    let _ = writeln!(
        s,
        "\n## The datapath programs' run time (`--bpf-stats`)\n\n\
         The kernel's count of each program's runs and run time during every accelerated run \
         (`BPF_ENABLE_STATS`, on for the whole benchmark, so every BPF program on the machine \
         paid a few tens of nanoseconds more per run, the baselines' runs included), \
         per unit of work; medians over the repeats. CPU: both programs' time per unit times \
         the units done a second, in % of one CPU.\n"
    );
    let _ = writeln!(
        s,
        "| placement | workload | size | unit | sock_ops runs | sock_ops ns | sk_msg runs | \
         sk_msg ns | CPU |\n|---|---|---:|---|---:|---:|---:|---:|---:|"
    );
    for (p, w, size) in cases {
        let runs: Vec<&R> = records
            .iter()
            .filter(|r| {
                r.side() == R::Side::ACCEL
                    && r.ok()
                    && r.placement() == p
                    && r.workload() == w
                    && r.size() == size
            })
            .collect();
        let Some(first) = runs.first() else { continue };
        let unit = first.units().0;
        // Per unit of work, over the repeats.
        let per_unit = |key: &str| -> Vec<f64> {
            runs.iter()
                .filter_map(|r| delta(*r, key)?.div_nonzero(r.units().1?))
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
                let (_, n, per_s) = r.units();
                let ns: f64 = PROGRAMS
                    .iter()
                    .filter_map(|p| delta(*r, &format!("{RUN_NS}{p}")))
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
    use crate::records::placement::Placement;

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
    fn per_request_through_the_mesh() {
        use crate::records::{Case, mesh::Mode};
        let case = Case {
            workload: MeshWorkload::Wrk,
            size: 100,
        };
        let mut r = MeshRecord::new(0, Placement::OneCore, case, Mode::Accel, 0);
        r.ok = true;
        r.count = Some(2_000);
        r.per_s = Some(2_000.0);
        r.counters_delta = [
            ("prog_runs.accel_sk_msg".to_string(), 6_000),
            ("prog_run_ns.accel_sk_msg".to_string(), 1_200_000),
        ]
        .into();
        let mut s = String::new();
        section(
            &mut s,
            &[r],
            [(Placement::OneCore, MeshWorkload::Wrk, 100)].into_iter(),
        );
        // Three runs and 600 ns a request; 2,000 a second.
        assert!(
            s.contains("| one-core | wrk | 100 B | request | - | - | 3.00 | 600 | 0.12 % |"),
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
