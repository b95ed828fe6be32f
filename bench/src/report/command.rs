//! The command line of `accel-bench report FILE...`: reads the fortio
//! JSON files, prints the comparison and writes it with its plots.
//! [`compare`](super::compare) builds the comparison and
//! [`plot`] draws it; this module is what joins the two.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;

use super::{
    compare::{Comparison, expand, load_runs},
    plot,
};

#[derive(Args, Debug, Clone)]
pub struct ReportArgs {
    /// fortio JSON result files, or directories holding them (*.json).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Also write report.md, latency.svg and throughput.svg here.
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
    /// Title of the markdown report.
    #[arg(long, default_value = "Baseline vs accelerated (fortio results)")]
    pub title: String,
}

pub fn run(args: ReportArgs) -> Result<()> {
    let files = expand(&args.files)?;
    let runs = load_runs(&files)?;
    let cmp = Comparison::build(&runs);
    if cmp
        .pairs
        .iter()
        .all(|p| p.base.is_none() || p.accel.is_none())
    {
        bail!(
            "no case has both a baseline and an accelerated run: label the runs \
             mode=baseline / mode=accel with otherwise equal labels"
        );
    }
    let md = cmp.markdown(&args.title, files.len());
    println!("{md}");
    if let Some(dir) = &args.out_dir {
        write_outputs(&cmp, &md, dir)?;
    }
    Ok(())
}

/// report.md, latency.svg and throughput.svg in `dir`.
pub fn write_outputs(cmp: &Comparison, md: &str, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(dir.join("report.md"), md)?;
    plot::latency_svg(cmp, &dir.join("latency.svg"))?;
    plot::throughput_svg(cmp, &dir.join("throughput.svg"))?;
    eprintln!(
        "accel-bench report: wrote report.md, latency.svg, throughput.svg in {}",
        dir.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::compare::{Run, tests::run_with};

    #[test]
    fn writes_plots() {
        let runs: Vec<Run> = [64, 1024, 16384]
            .iter()
            .flat_map(|s| {
                [
                    run_with(&format!("mode=baseline size={s}"), 1000.0, 0.001),
                    run_with(&format!("mode=accel size={s}"), 1500.0, 0.0007),
                ]
            })
            .collect();
        let cmp = Comparison::build(&runs);
        let dir = std::env::temp_dir().join(format!("accel-bench-plot-{}", std::process::id()));
        write_outputs(&cmp, "md", &dir).unwrap();
        for f in ["latency.svg", "throughput.svg"] {
            let svg = std::fs::read_to_string(dir.join(f)).unwrap();
            assert!(
                svg.starts_with("<svg") && svg.contains("accelerated"),
                "{f}"
            );
            assert!(svg.contains("<polyline") || svg.contains("<path"), "{f}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
