//! `accel-bench report FILE...`: baseline vs accelerated from fortio JSON
//! results (fortio's own, from a cluster, or `accel-bench load`'s).
//!
//! Each file is one run. Its labels say which mode it is (`mode=baseline`
//! or `mode=accel`; bare words `baseline`/`accel` work too) and what case
//! it belongs to: every other label, plus the connections (`NumThreads`),
//! the requested rate and the payload size, taken from the file itself.
//! `round`/`rep` labels only number repeats. Runs of one case and mode are
//! reduced to medians; the table pairs the two modes of each case.

use std::{collections::BTreeMap, fmt::Write as _, path::PathBuf};

use anyhow::{Context, Result, ensure};
use serde::Serialize;

use super::{Agg, Align, fortio::RunnerResults, size_label, table, verdict};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Baseline,
    Accel,
}

impl Mode {
    fn from_word(w: &str) -> Option<Mode> {
        match w.to_ascii_lowercase().as_str() {
            "baseline" | "base" | "off" | "without" | "no-addon" | "plain" => Some(Mode::Baseline),
            "accel" | "accelerated" | "on" | "with" | "addon" => Some(Mode::Accel),
            _ => None,
        }
    }
}

/// Labels that number repeats rather than name a case.
const REPEAT_LABELS: [&str; 4] = ["mode", "round", "rep", "repeat"];

/// The percentiles of the table and the plots.
pub const PCTS: [(f64, &str); 4] = [(50.0, "p50"), (90.0, "p90"), (99.0, "p99"), (99.9, "p99.9")];

/// One run, as the comparison sees it.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub file: String,
    pub mode: Mode,
    /// The case: labels without the mode and repeat numbers, plus c, qps
    /// and size from the file.
    pub case: BTreeMap<String, String>,
    pub size: Option<usize>,
    /// p50, p90, p99, p99.9 in µs.
    pub pct_us: [f64; 4],
    pub qps: f64,
    /// CPU µs per request, where the file has CPU time.
    pub cpu_us_per_req: Option<f64>,
    pub errors: u64,
}

impl Run {
    pub fn from_fortio(r: &RunnerResults, file: &str) -> Result<Run> {
        let labels = r.label_map();
        let mode = labels
            .get("mode")
            .and_then(|m| Mode::from_word(m))
            .or_else(|| labels.keys().find_map(|k| Mode::from_word(k)))
            .with_context(|| {
                format!(
                    "{file}: labels {:?} name no mode (mode=baseline or mode=accel)",
                    r.labels
                )
            })?;
        let mut case: BTreeMap<String, String> = labels
            .into_iter()
            .filter(|(k, v)| {
                let repeat = REPEAT_LABELS.contains(&k.as_str());
                let bare_mode = v.is_empty() && Mode::from_word(k).is_some();
                !repeat && !bare_mode
            })
            .collect();
        case.insert("c".into(), r.num_threads.to_string());
        case.insert("qps".into(), r.requested_qps.clone());
        let size = r.payload_size();
        match size {
            Some(s) => case.insert("size".into(), s.to_string()),
            None => case.remove("size"),
        };
        let mut pct_us = [0.0; 4];
        for (i, (p, name)) in PCTS.iter().enumerate() {
            pct_us[i] = r
                .percentile(*p)
                .with_context(|| format!("{file}: no {name}"))?
                * 1e6;
        }
        let extra = r.accel_bench.as_ref();
        let count = r.duration_histogram.count as f64;
        Ok(Run {
            file: file.into(),
            mode,
            case,
            size,
            pct_us,
            qps: r.actual_qps,
            cpu_us_per_req: extra
                .and_then(|x| x.cpu_seconds)
                .map(|s| s * 1e6 / count.max(1.0)),
            errors: extra.map_or(0, |x| x.errors)
                + r.ret_codes
                    .iter()
                    .filter(|(k, _)| !matches!(k.as_str(), "200" | "OK"))
                    .map(|(_, v)| v)
                    .sum::<u64>(),
        })
    }
}

/// Expands directories into their *.json files (sorted).
pub fn expand(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut v: Vec<PathBuf> = std::fs::read_dir(p)
                .with_context(|| format!("reading {}", p.display()))?
                .flatten()
                .map(|e| e.path())
                .filter(|f| f.extension().is_some_and(|e| e == "json"))
                .collect();
            v.sort();
            out.extend(v);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

pub fn load_runs(paths: &[PathBuf]) -> Result<Vec<Run>> {
    let files = expand(paths)?;
    ensure!(!files.is_empty(), "no JSON result files");
    files
        .iter()
        .map(|f| {
            let r = RunnerResults::read(f)?;
            Run::from_fortio(&r, &f.display().to_string())
        })
        .collect()
}

/// The medians of one mode in one case.
#[derive(Debug, Clone, Serialize)]
pub struct Side {
    pub runs: usize,
    pub pct_us: [Agg; 4],
    pub qps: Agg,
    pub cpu_us_per_req: Option<Agg>,
    pub errors: u64,
}

impl Side {
    fn of(runs: &[&Run]) -> Option<Side> {
        let col = |f: &dyn Fn(&Run) -> f64| Agg::of(runs.iter().map(|r| f(r)).collect());
        Some(Side {
            runs: runs.len(),
            pct_us: [
                col(&|r| r.pct_us[0])?,
                col(&|r| r.pct_us[1])?,
                col(&|r| r.pct_us[2])?,
                col(&|r| r.pct_us[3])?,
            ],
            qps: col(&|r| r.qps)?,
            cpu_us_per_req: Agg::of(runs.iter().filter_map(|r| r.cpu_us_per_req).collect()),
            errors: runs.iter().map(|r| r.errors).sum(),
        })
    }
}

/// One case: both modes side by side.
#[derive(Debug, Clone, Serialize)]
pub struct Pair {
    pub case: BTreeMap<String, String>,
    pub size: Option<usize>,
    pub base: Option<Side>,
    pub accel: Option<Side>,
}

impl Pair {
    /// "placement=pinned c=8 qps=max" (no size): the series of a
    /// throughput-vs-size plot.
    pub fn series(&self) -> String {
        case_name(&self.case, &["size"])
    }

    pub fn name(&self) -> String {
        case_name(&self.case, &[])
    }

    pub fn fixed_rate(&self) -> bool {
        self.case.get("qps").is_some_and(|q| q != "max")
    }

    /// accel / baseline of the medians of `f`.
    pub fn ratio(&self, f: impl Fn(&Side) -> f64) -> Option<f64> {
        let (b, a) = (f(self.base.as_ref()?), f(self.accel.as_ref()?));
        (b > 0.0).then(|| a / b)
    }

    pub fn p_ratio(&self, i: usize) -> Option<f64> {
        self.ratio(|s| s.pct_us[i].median)
    }

    pub fn qps_ratio(&self) -> Option<f64> {
        self.ratio(|s| s.qps.median)
    }

    /// Whether accelerated is worse on the headline metric: requests/s at
    /// max rate, p50 at a fixed rate.
    pub fn slower(&self) -> Option<bool> {
        if self.fixed_rate() {
            self.p_ratio(0).map(|q| q > 1.0)
        } else {
            self.qps_ratio().map(|q| q < 1.0)
        }
    }
}

fn case_name(case: &BTreeMap<String, String>, skip: &[&str]) -> String {
    // The most telling keys first, the rest in order.
    let first = ["proto", "placement", "size", "c", "qps"];
    let mut parts = Vec::new();
    for k in first {
        if let Some(v) = case.get(k).filter(|_| !skip.contains(&k)) {
            parts.push(match k {
                "size" => v
                    .parse::<usize>()
                    .map(size_label)
                    .unwrap_or_else(|_| v.clone()),
                "c" => format!("-c {v}"),
                "qps" if v == "max" => "max qps".into(),
                "qps" => format!("{v} qps"),
                _ => v.clone(),
            });
        }
    }
    for (k, v) in case {
        if !first.contains(&k.as_str()) && !skip.contains(&k.as_str()) {
            parts.push(if v.is_empty() {
                k.clone()
            } else {
                format!("{k}={v}")
            });
        }
    }
    parts.join(" ")
}

#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub pairs: Vec<Pair>,
}

impl Comparison {
    pub fn build(runs: &[Run]) -> Comparison {
        let mut groups: BTreeMap<(String, usize, String), Vec<&Run>> = BTreeMap::new();
        for r in runs {
            let key = (
                case_name(&r.case, &["size"]),
                r.size.unwrap_or(0),
                case_name(&r.case, &[]),
            );
            groups.entry(key).or_default().push(r);
        }
        let pairs = groups
            .into_values()
            .map(|rs| {
                let side = |m: Mode| {
                    let v: Vec<&Run> = rs.iter().copied().filter(|r| r.mode == m).collect();
                    Side::of(&v)
                };
                Pair {
                    case: rs[0].case.clone(),
                    size: rs[0].size,
                    base: side(Mode::Baseline),
                    accel: side(Mode::Accel),
                }
            })
            .collect();
        Comparison { pairs }
    }

    pub fn markdown_table(&self, s: &mut String) {
        let mut header: Vec<String> = vec!["case".into(), "runs base/accel".into()];
        header.extend(PCTS.iter().map(|(_, n)| format!("{n} µs base → accel")));
        header.push("req/s base → accel".into());
        header.push("CPU µs/req base → accel".into());
        header.push("accelerated vs baseline".into());
        let rows: Vec<Vec<String>> = self
            .pairs
            .iter()
            .map(|p| {
                let (b, a) = (p.base.as_ref(), p.accel.as_ref());
                let mut r = vec![
                    p.name(),
                    format!("{}/{}", b.map_or(0, |s| s.runs), a.map_or(0, |s| s.runs)),
                ];
                for i in 0..PCTS.len() {
                    r.push(cell(
                        b.map(|s| s.pct_us[i].median),
                        a.map(|s| s.pct_us[i].median),
                        p.p_ratio(i),
                        fmt_us,
                        |q| q > 1.0,
                    ));
                }
                r.push(cell(
                    b.map(|s| s.qps.median),
                    a.map(|s| s.qps.median),
                    p.qps_ratio(),
                    fmt_rate,
                    |q| q < 1.0,
                ));
                let cpu = |s: Option<&Side>| s.and_then(|s| s.cpu_us_per_req).map(|c| c.median);
                r.push(if cpu(b).is_some() || cpu(a).is_some() {
                    cell(
                        cpu(b),
                        cpu(a),
                        p.ratio(|s| s.cpu_us_per_req.map_or(0.0, |c| c.median)),
                        fmt_us,
                        |q| q > 1.0,
                    )
                } else {
                    "-".into()
                });
                let mut v = if p.slower().is_none() {
                    "unpaired".to_string()
                } else if p.fixed_rate() {
                    let p50 = |s: Option<&Side>| s.map(|s| s.pct_us[0]);
                    format!("p50: {}", verdict(p.p_ratio(0), false, p50(a), p50(b)))
                } else {
                    let qps = |s: Option<&Side>| s.map(|s| s.qps);
                    format!("req/s: {}", verdict(p.qps_ratio(), true, qps(a), qps(b)))
                };
                let errs = b.map_or(0, |s| s.errors) + a.map_or(0, |s| s.errors);
                if errs > 0 {
                    let _ = write!(v, "; {errs} failed requests");
                }
                r.push(v);
                r
            })
            .collect();
        table(s, &header, &rows, Align::Numbers);
    }

    pub fn markdown(&self, title: &str, files: usize) -> String {
        let mut s = format!("# {title}\n\n");
        let _ = writeln!(
            s,
            "{files} result files, {} cases. Each cell: median baseline → median accelerated \
             (accelerated / baseline); latency and CPU per request below 1.00x are better, \
             requests/s above 1.00x. **SLOWER**: accelerated loses on requests/s (max rate) or \
             p50 (fixed rate); \"within spread\": the per-run ranges of the two modes overlap. Latency at a fixed rate is measured from the intended send time.\n",
            self.pairs.len()
        );
        self.markdown_table(&mut s);
        s
    }
}

fn fmt_us(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn fmt_rate(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

fn cell(
    b: Option<f64>,
    a: Option<f64>,
    q: Option<f64>,
    fmt: fn(f64) -> String,
    bad: fn(f64) -> bool,
) -> String {
    let v = |x: Option<f64>| x.map(fmt).unwrap_or_else(|| "-".into());
    match q {
        Some(q) if bad(q) => format!("{} → {} (**{q:.2}x**)", v(b), v(a)),
        Some(q) => format!("{} → {} ({q:.2}x)", v(b), v(a)),
        None => format!("{} → {}", v(b), v(a)),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const FIXTURE: &str = include_str!("../../tests/fixtures/fortio-http.json");

    pub(crate) fn run_with(labels: &str, qps: f64, p50: f64) -> Run {
        let mut r = RunnerResults::parse(FIXTURE, "f").unwrap();
        r.labels = labels.into();
        r.actual_qps = qps;
        r.duration_histogram.percentiles[0].value = p50;
        Run::from_fortio(&r, "f").unwrap()
    }

    #[test]
    fn pairs_by_labels_with_medians_and_ratios() {
        let runs = vec![
            run_with(
                "mode=baseline placement=same-node size=1024 round=1",
                1000.0,
                0.001,
            ),
            run_with(
                "mode=baseline placement=same-node size=1024 round=2",
                1200.0,
                0.003,
            ),
            run_with(
                "mode=baseline placement=same-node size=1024 round=3",
                1100.0,
                0.002,
            ),
            run_with(
                "mode=accel placement=same-node size=1024 round=1",
                2000.0,
                0.001,
            ),
            run_with(
                "mode=accel placement=same-node size=1024 round=2",
                2400.0,
                0.001,
            ),
            run_with("accel placement=same-node size=1024 round=3", 2200.0, 0.001),
            run_with("mode=baseline placement=cross-node size=1024", 900.0, 0.002),
        ];
        let cmp = Comparison::build(&runs);
        assert_eq!(cmp.pairs.len(), 2);
        let same = cmp
            .pairs
            .iter()
            .find(|p| p.case.get("placement").map(String::as_str) == Some("same-node"))
            .unwrap();
        assert_eq!(same.base.as_ref().unwrap().runs, 3);
        assert_eq!(same.accel.as_ref().unwrap().runs, 3);
        assert!((same.qps_ratio().unwrap() - 2.0).abs() < 1e-9);
        assert!((same.p_ratio(0).unwrap() - 0.5).abs() < 1e-9);
        assert_eq!(same.slower(), Some(false));
        assert_eq!(same.series(), "same-node -c 8 max qps");
        let cross = cmp
            .pairs
            .iter()
            .find(|p| p.case.get("placement").map(String::as_str) == Some("cross-node"))
            .unwrap();
        assert!(cross.accel.is_none() && cross.qps_ratio().is_none());
        let md = cmp.markdown("t", 7);
        assert!(md.contains("1100 → 2200 (2.00x)"), "{md}");
        assert!(md.contains("unpaired"), "{md}");
    }

    #[test]
    fn a_run_without_mode_is_an_error() {
        let mut r = RunnerResults::parse(FIXTURE, "f").unwrap();
        r.labels = "placement=x".into();
        assert!(Run::from_fortio(&r, "f").is_err());
    }
}
