//! Everything the benchmarks report: medians and spreads over repeats, the
//! markdown tables, the facts about the machine, the raw JSON, and the
//! fortio-format comparison with its plots.
//!
//! - [`loopback`]: `accel-bench loopback` (plain TCP / accelerated / unix).
//! - [`mesh`]: `accel-bench mesh` (baseline / accelerated through sidecars).
//! - [`rows`]: what those two share: the runs grouped per placement, case and
//!   side into rows, the rows compared, the runs' health, the report that
//!   holds them.
//! - [`fortio`]: fortio's JSON result format, read and written (the local
//!   load generator writes it too, so cluster and local runs share one path).
//! - [`compare`]: `accel-bench report FILE...`: baseline vs accelerated
//!   pairs from fortio JSON files, with ratios.
//! - [`plot`]: the SVG plots of `compare`.
//! - [`local`]: `accel-bench run-local`'s report, around `compare`'s table.
//! - [`command`]: the command line of `accel-bench report`: `compare`'s
//!   table and `plot`'s plots written out.

pub mod command;
pub mod compare;
pub mod fortio;
#[cfg(test)]
mod golden;
pub mod local;
pub mod loopback;
pub mod mesh;
pub mod plot;
mod program_cost;
pub mod rows;

use std::{
    borrow::Borrow,
    fmt::Write as _,
    path::{Path, PathBuf},
    process::Command,
    time::SystemTime,
};

use serde::{Deserialize, Serialize};

pub fn default_results_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("results")
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
/// What every result file says about where and how it was produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Machine {
    pub date: String,
    pub started_utc: String,
    pub kernel: String,
    pub cpu_model: String,
    pub logical_cpus: usize,
    /// How idle CPUs wait (`cpu_idle_facts`): on a VM without halt polling
    /// each wake-up of an idle CPU goes through the hypervisor, and
    /// two-core latencies measure mostly that. Empty in older results.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cpu_idle: String,
    pub command: String,
    pub git_commit: String,
}

impl Machine {
    pub fn collect(started: SystemTime) -> Self {
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
        Machine {
            date,
            started_utc,
            kernel: read_trim("/proc/sys/kernel/osrelease"),
            cpu_model,
            logical_cpus,
            cpu_idle: cpu_idle_facts(),
            command: std::env::args()
                .map(|a| shell_quote(&a))
                .collect::<Vec<_>>()
                .join(" "),
            git_commit: git_commit(),
        }
    }

    /// "model, N logical CPUs".
    pub fn cpu(&self) -> String {
        format!("{}, {} logical CPUs", self.cpu_model, self.logical_cpus)
    }

    /// The header lines every markdown report starts with.
    pub fn markdown_lines(&self, s: &mut String) {
        let _ = writeln!(s, "- Date: {}", self.started_utc);
        let _ = writeln!(s, "- Command: `{}`", self.command);
        let _ = writeln!(s, "- Git commit: {}", self.git_commit);
        let _ = writeln!(s, "- Kernel: {}", self.kernel);
        if !self.cpu_idle.is_empty() {
            let _ = writeln!(s, "- CPU idle: {}", self.cpu_idle);
        }
    }
}

/// The cpuidle driver and governor, and with the guest `haltpoll` driver
/// its polling window: "haltpoll/haltpoll, guest_halt_poll_ns 0". With 0
/// an idle vCPU halts at once, and waking it (a cross-CPU wake-up of a
/// sleeping reader) costs tens of microseconds on some hypervisors
/// (bench/RESULTS.md, "Where the time goes: waking an idle vCPU").
pub fn cpu_idle_facts() -> String {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .ok()
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let cpuidle = "/sys/devices/system/cpu/cpuidle";
    let Some(driver) = read(&format!("{cpuidle}/current_driver")) else {
        return "no cpuidle driver".into();
    };
    let governor = read(&format!("{cpuidle}/current_governor")).unwrap_or_else(|| "-".into());
    match read("/sys/module/haltpoll/parameters/guest_halt_poll_ns") {
        Some(ns) => format!("{driver}/{governor}, guest_halt_poll_ns {ns}"),
        None => format!("{driver}/{governor}"),
    }
}

/// First line of `cmd args` (stdout or stderr): tool versions for the facts.
pub(crate) fn version(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .map(|o| {
            let mut s = String::from_utf8_lossy(&o.stdout).into_owned();
            s.push_str(&String::from_utf8_lossy(&o.stderr));
            s.lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .trim()
                .to_string()
        })
        .unwrap_or_else(|_| "unknown".into())
}

/// The "no size slower" target: `n` cases compared, `slow` the ones where
/// accelerated lost.
pub fn not_slower(n: usize, slow: &[String]) -> String {
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
}

/// Whether accelerated lost, by `q` = accelerated / reference.
pub(crate) fn slower(q: f64, higher_better: bool) -> bool {
    if higher_better { q < 1.0 } else { q > 1.0 }
}

/// The ratio `q` = accelerated / reference, in bold where accelerated lost.
pub(crate) fn ratio_cell(q: Option<f64>, higher_better: bool) -> String {
    let cell = x(q);
    if q.is_some_and(|q| slower(q, higher_better)) {
        format!("**{cell}**")
    } else {
        cell
    }
}

/// The verdict column: "faster", or "⚠ **SLOWER** (+5%)" with ", within
/// spread" when the per-repeat ranges of accelerated `a` and baseline `b`
/// overlap. `q` is a / b of the medians.
pub fn verdict(q: Option<f64>, higher_better: bool, a: Option<Agg>, b: Option<Agg>) -> String {
    match q {
        Some(q) if slower(q, higher_better) => {
            let within = match (a, b) {
                (Some(a), Some(b)) if a.overlaps(&b) => ", within spread",
                _ => "",
            };
            format!("⚠ **SLOWER** ({:+.0}%){within}", (q - 1.0) * 100.0)
        }
        Some(_) => "faster".into(),
        None => "n/a".into(),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Align {
    /// Numbers: right aligned but for the first column (the case) and the
    /// last (the verdict).
    Numbers,
    /// Everything left aligned.
    Text,
}

/// A markdown table: `header` cells, then `rows`.
pub fn table<H: Borrow<str>>(s: &mut String, header: &[H], rows: &[Vec<String>], align: Align) {
    let _ = writeln!(s, "| {} |", header.join(" | "));
    let n = header.len();
    let seps: Vec<&str> = (0..n)
        .map(|i| {
            if align == Align::Text || i == 0 || i == n - 1 {
                "---"
            } else {
                "---:"
            }
        })
        .collect();
    let _ = writeln!(s, "|{}|", seps.join("|"));
    for r in rows {
        let _ = writeln!(s, "| {} |", r.join(" | "));
    }
    let _ = writeln!(s);
}

/// A named target and how to evaluate it for one placement.
pub type Target<'a, C, P> = (&'a str, fn(&C, P) -> String);

/// The issue's targets as a table: one row a target, one column a placement.
pub fn targets_table<C, P: Copy>(
    s: &mut String,
    title: &str,
    ctx: &C,
    placements: &[(P, &str)],
    targets: &[Target<C, P>],
) {
    let _ = writeln!(s, "## {title}\n");
    let mut header = vec!["target".to_string()];
    header.extend(placements.iter().map(|(_, n)| n.to_string()));
    let rows: Vec<Vec<String>> = targets
        .iter()
        .map(|(name, eval)| {
            let mut r = vec![name.to_string()];
            r.extend(placements.iter().map(|(p, _)| eval(ctx, *p)));
            r
        })
        .collect();
    table(s, &header, &rows, Align::Text);
}
