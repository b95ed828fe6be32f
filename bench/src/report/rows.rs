//! What the loopback and mesh reports share: the runs of every placement and
//! case, grouped by side (transport or mode) and aggregated into rows, the
//! rows compared accelerated against the reference side, and the report
//! that holds them. The two benchmarks differ in their records, sides,
//! workloads and metrics; [`Run`] is where each says what those are.

use std::{collections::BTreeMap, fmt::Write as _, path::PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::{Value, json};

use super::{
    Agg, Align, Machine, Target, default_results_root, not_slower, ratio_cell, size_label, spread,
    table, targets_table, verdict,
};
use crate::records::{Case, placement::Placement};

/// A placement or workload: its name in the JSON, tables and progress lines.
pub trait Key: Copy + PartialEq {
    fn name(self) -> &'static str;
}

impl Key for Placement {
    fn name(self) -> &'static str {
        Placement::name(self)
    }
}

/// The columns compared: transports of the loopback benchmark, modes of the
/// mesh one.
pub trait Side: Copy + Ord + 'static {
    /// Every side, in table order.
    const ALL: &'static [Self];
    const ACCEL: Self;
    /// What accelerated is measured against.
    const REFERENCE: Self;
    fn label(self) -> &'static str;
}

/// A metric of a side's aggregate.
pub type Metric<A> = fn(&A) -> Option<Agg>;

/// One benchmark run, and how a benchmark aggregates and judges its runs.
pub trait Run: Sized {
    /// `benchmark` in the JSON.
    const BENCHMARK: &'static str;
    type Placement: Key;
    type Workload: Key;
    type Side: Side;
    /// The medians and health of one side's runs in one case.
    type Agg;

    fn placement(&self) -> Self::Placement;
    fn workload(&self) -> Self::Workload;
    fn size(&self) -> usize;
    fn side(&self) -> Self::Side;
    fn ok(&self) -> bool;
    fn verified(&self) -> bool;
    /// EAGAIN counts (send, recv) on blocking sockets.
    fn eagain(&self) -> (u64, u64);
    /// Datapath counters after minus before the run.
    fn counters_delta(&self) -> &BTreeMap<String, i64>;

    fn aggregate(runs: &[&Self]) -> Self::Agg;
    /// The metric a workload is judged on, and whether higher is better.
    fn headline(w: Self::Workload) -> (Metric<Self::Agg>, bool);
    /// The p99 latency of a workload that measures latency: the verdict
    /// names it getting worse even where the headline metric improved.
    fn p99(w: Self::Workload) -> Option<Metric<Self::Agg>>;
    /// What went wrong in one side's runs, for the verdict column.
    fn problems(side: Self::Side, agg: &Self::Agg, out: &mut Vec<String>);

    fn counter(&self, name: &str) -> i64 {
        self.counters_delta().get(name).copied().unwrap_or(0)
    }
}

/// The record accessors of [`Run`], for a record with the usual field names
/// (`placement`, `workload`, `size`, `ok`, `verified`, `send_eagain`,
/// `recv_eagain`, `counters_delta`); `$side` names its side's field.
macro_rules! record_fields {
    ($side:ident) => {
        fn placement(&self) -> Self::Placement {
            self.placement
        }
        fn workload(&self) -> Self::Workload {
            self.workload
        }
        fn size(&self) -> usize {
            self.size
        }
        fn side(&self) -> Self::Side {
            self.$side
        }
        fn ok(&self) -> bool {
            self.ok
        }
        fn verified(&self) -> bool {
            self.verified
        }
        fn counters_delta(&self) -> &std::collections::BTreeMap<String, i64> {
            &self.counters_delta
        }
    };
}
pub(crate) use record_fields;

/// The health of the runs of one mode/transport in one case.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Health {
    pub runs: usize,
    pub failed: usize,
    pub unverified: usize,
    /// EAGAIN on blocking sockets, summed over the runs, and runs with any.
    pub send_eagain: u64,
    pub recv_eagain: u64,
    pub eagain_runs: usize,
}

impl Health {
    pub fn of<R: Run>(rs: &[&R]) -> Health {
        Health {
            runs: rs.len(),
            failed: rs.iter().filter(|r| !r.ok()).count(),
            unverified: rs.iter().filter(|r| r.ok() && !r.verified()).count(),
            send_eagain: rs.iter().map(|r| r.eagain().0).sum(),
            recv_eagain: rs.iter().map(|r| r.eagain().1).sum(),
            eagain_runs: rs
                .iter()
                .filter(|r| r.eagain().0 + r.eagain().1 > 0)
                .count(),
        }
    }

    /// What went wrong, for the verdict column, prefixed with `label`.
    pub fn problems(&self, label: &str, out: &mut Vec<String>) {
        if self.failed > 0 {
            out.push(format!("{label} {} failed", self.failed));
        }
        if self.unverified > 0 {
            out.push(format!("{label} {} UNVERIFIED", self.unverified));
        }
        if self.send_eagain + self.recv_eagain > 0 {
            out.push(format!(
                "{label}: EAGAIN on blocking socket (send {}, recv {}) in {}/{} runs",
                self.send_eagain, self.recv_eagain, self.eagain_runs, self.runs
            ));
        }
    }
}

/// The median and range of `f` over the runs that did not fail.
pub fn agg_ok<R: Run>(runs: &[&R], f: impl Fn(&R) -> Option<f64>) -> Option<Agg> {
    Agg::of(
        runs.iter()
            .filter(|r| r.ok())
            .filter_map(|r| f(r))
            .collect(),
    )
}

/// One placement and case: every side's aggregate.
#[derive(Serialize)]
#[serde(bound(serialize = "R::Placement: Serialize, R::Workload: Serialize, \
                           R::Side: Serialize, R::Agg: Serialize"))]
pub struct Row<R: Run> {
    pub placement: R::Placement,
    pub workload: R::Workload,
    pub size: usize,
    pub by: BTreeMap<R::Side, R::Agg>,
}

impl<R: Run> Row<R> {
    pub fn build(placement: R::Placement, case: Case<R::Workload>, records: &[R]) -> Self {
        let by = R::Side::ALL
            .iter()
            .map(|&side| {
                let runs: Vec<&R> = records
                    .iter()
                    .filter(|r| {
                        r.placement() == placement
                            && r.workload() == case.workload
                            && r.size() == case.size
                            && r.side() == side
                    })
                    .collect();
                (side, R::aggregate(&runs))
            })
            .collect();
        Row {
            placement,
            workload: case.workload,
            size: case.size,
            by,
        }
    }

    pub fn get(&self, side: R::Side) -> &R::Agg {
        &self.by[&side]
    }

    /// `side` / the reference side, of the medians of `f`.
    pub fn ratio(&self, side: R::Side, f: Metric<R::Agg>) -> Option<f64> {
        let a = f(self.get(side))?;
        let b = f(self.get(R::Side::REFERENCE))?;
        (b.median > 0.0).then(|| a.median / b.median)
    }

    pub fn accel_ratio(&self, f: Metric<R::Agg>) -> Option<f64> {
        self.ratio(R::Side::ACCEL, f)
    }

    /// Every side's `f`, formatted with `fmt`, in table order.
    pub fn each(&self, f: Metric<R::Agg>, fmt: impl Fn(Option<Agg>) -> String) -> Vec<String> {
        R::Side::ALL.iter().map(|&s| fmt(f(self.get(s)))).collect()
    }

    /// [`Row::each`], then accelerated / reference, in bold where
    /// accelerated lost.
    pub fn compared(
        &self,
        f: Metric<R::Agg>,
        fmt: impl Fn(Option<Agg>) -> String,
        higher_better: bool,
    ) -> Vec<String> {
        let mut cells = self.each(f, fmt);
        cells.push(ratio_cell(self.accel_ratio(f), higher_better));
        cells
    }

    /// The spreads of `f` of every side, "a/b/...".
    pub fn spreads(&self, f: Metric<R::Agg>) -> String {
        self.each(f, spread).join("/")
    }

    /// Some((ratio, accelerated lost)) for the headline metric.
    pub fn slower(&self) -> Option<(f64, bool)> {
        let (f, higher_better) = R::headline(self.workload);
        let q = self.accel_ratio(f)?;
        Some((q, super::slower(q, higher_better)))
    }

    pub fn problems(&self) -> String {
        let mut p = Vec::new();
        for &side in R::Side::ALL {
            R::problems(side, self.get(side), &mut p);
        }
        p.join("; ")
    }

    /// The verdict column: the headline metric, p99, problems.
    pub fn verdict(&self) -> String {
        let (f, higher_better) = R::headline(self.workload);
        let mut v = verdict(
            self.accel_ratio(f),
            higher_better,
            f(self.get(R::Side::ACCEL)),
            f(self.get(R::Side::REFERENCE)),
        );
        let p99 = R::p99(self.workload).and_then(|f| self.accel_ratio(f));
        if p99.is_some_and(|q| q > 1.0) {
            v.push_str("; p99 slower");
        }
        let p = self.problems();
        if !p.is_empty() {
            let _ = write!(v, "; {p}");
        }
        v
    }
}

/// The rows of a benchmark, with the facts and the runs they came from.
pub struct Report<F, R: Run> {
    pub facts: F,
    pub placements: Vec<R::Placement>,
    /// One per placement and case, placements outermost.
    pub rows: Vec<Row<R>>,
    pub records: Vec<R>,
}

impl<F, R: Run> Report<F, R> {
    pub fn build(
        facts: F,
        placements: &[R::Placement],
        cases: &[Case<R::Workload>],
        records: Vec<R>,
    ) -> Self {
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

    /// Runs that failed or could not be proven.
    pub fn failures(&self) -> usize {
        self.records
            .iter()
            .filter(|r| !r.ok() || !r.verified())
            .count()
    }

    pub fn rows_of(&self, p: R::Placement, w: R::Workload) -> impl Iterator<Item = &Row<R>> {
        self.rows
            .iter()
            .filter(move |r| r.placement == p && r.workload == w)
    }

    pub fn row(&self, p: R::Placement, w: R::Workload, size: usize) -> Option<&Row<R>> {
        self.rows_of(p, w).find(|r| r.size == size)
    }

    pub fn runs_of(&self, side: R::Side) -> Vec<&R> {
        self.records.iter().filter(|r| r.side() == side).collect()
    }

    /// (proven, all) runs of accelerated, or of the other sides.
    pub fn proven(&self, accel: bool) -> (usize, usize) {
        let runs = self
            .records
            .iter()
            .filter(|r| (r.side() == R::Side::ACCEL) == accel);
        runs.fold((0, 0), |(v, n), r| (v + usize::from(r.verified()), n + 1))
    }

    /// Bytes the datapath redirected over all accelerated runs.
    pub fn redirected_bytes(&self) -> i64 {
        self.runs_of(R::Side::ACCEL)
            .iter()
            .map(|r| r.counter("redirect_bytes"))
            .sum()
    }

    /// A section per placement with a table per workload that ran there.
    pub fn placement_sections(
        &self,
        s: &mut String,
        title: fn(R::Placement) -> &'static str,
        workloads: &[R::Workload],
        table: impl Fn(&Self, &mut String, R::Placement, R::Workload),
    ) {
        for &p in &self.placements {
            let _ = writeln!(s, "## Placement: {}\n", title(p));
            for &w in workloads {
                if self.rows_of(p, w).next().is_some() {
                    table(self, s, p, w);
                }
            }
        }
    }

    /// The table of workload `w` at `p` under a `###` heading: a row a size,
    /// with the size, the row's `cells`, then the verdict.
    pub fn case_table(
        &self,
        s: &mut String,
        (p, w): (R::Placement, R::Workload),
        heading: &str,
        header: &[&str],
        cells: impl Fn(&Row<R>) -> Vec<String>,
    ) {
        let rows: Vec<Vec<String>> = self
            .rows_of(p, w)
            .map(|r| {
                let mut row = vec![size_label(r.size)];
                row.extend(cells(r));
                row.push(r.verdict());
                row
            })
            .collect();
        let _ = writeln!(s, "### {heading}\n");
        table(s, header, &rows, Align::Numbers);
    }

    /// The targets, one column a placement.
    pub fn targets(&self, s: &mut String, targets: &[Target<Self, R::Placement>]) {
        let placements: Vec<(R::Placement, &str)> =
            self.placements.iter().map(|&p| (p, p.name())).collect();
        targets_table(
            s,
            "Targets from the issue (evaluated on the medians)",
            self,
            &placements,
            targets,
        );
    }

    /// The "no size slower" target on the headline metrics.
    pub fn no_size_slower(&self, p: R::Placement) -> String {
        let mut n = 0;
        let mut slow = Vec::new();
        for r in self.rows.iter().filter(|r| r.placement == p) {
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
    }

    pub fn json(&self) -> Value
    where
        F: Serialize,
        R: Serialize,
        R::Placement: Serialize,
        Row<R>: Serialize,
    {
        json!({
            "benchmark": R::BENCHMARK,
            "facts": self.facts,
            "placements": self.placements,
            "medians": self.rows,
            "runs": self.records,
        })
    }

    /// Writes the markdown `md` and the JSON as `<benchmark>.md` and
    /// `<benchmark>.json` into `out_dir` (default: the results directory of
    /// the run's date); `who` starts the line that says where.
    pub fn save(&self, md: &str, out_dir: Option<PathBuf>, who: &str) -> Result<()>
    where
        F: Serialize + AsRef<Machine>,
        R: Serialize,
        R::Placement: Serialize,
        Row<R>: Serialize,
    {
        let out_dir =
            out_dir.unwrap_or_else(|| default_results_root().join(&self.facts.as_ref().date));
        std::fs::create_dir_all(&out_dir)
            .with_context(|| format!("creating {}", out_dir.display()))?;
        let name = R::BENCHMARK;
        std::fs::write(out_dir.join(format!("{name}.md")), md)?;
        std::fs::write(
            out_dir.join(format!("{name}.json")),
            serde_json::to_string_pretty(&self.json())?,
        )?;
        eprintln!(
            "{who}: wrote {}/{name}.md and {name}.json",
            out_dir.display()
        );
        Ok(())
    }
}

/// One line per finished case, on stderr while the benchmark runs: every
/// side's `value`, then the headline ratio if `with_ratio`, then problems.
pub fn progress_line<R: Run>(
    p: R::Placement,
    case: Case<R::Workload>,
    records: &[R],
    value: impl Fn(&R::Agg) -> String,
    with_ratio: bool,
) -> String {
    let r = Row::build(p, case, records);
    let mut s = format!(
        "[{}] {:<6} {:>7}:",
        p.name(),
        case.workload.name(),
        size_label(case.size)
    );
    for &side in R::Side::ALL {
        let _ = write!(s, "  {} {}", side.label(), value(r.get(side)));
    }
    if with_ratio && let Some((q, _)) = r.slower() {
        let _ = write!(s, "  ({q:.2}x)");
    }
    let probs = r.problems();
    if !probs.is_empty() {
        let _ = write!(s, "  [{probs}]");
    }
    s
}
