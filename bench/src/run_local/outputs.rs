//! Part 4 of `run-local`: the report, from the files (the same path as
//! `accel-bench report`), and the run's verdict.

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Result, bail};

use super::{RunLocalArgs, Setup};
use crate::{
    records::local::{ConnRate, DaemonUsage, LocalPlan, RunProof},
    report::{
        self, command,
        compare::{self, Comparison},
        local::LocalFacts,
        version,
    },
};

/// What the measurements gave.
pub(super) struct Measured {
    pub(super) usage: DaemonUsage,
    pub(super) conn: ConnRate,
    pub(super) proofs: Vec<RunProof>,
    /// The daemon logs, shown if a run failed or could not be proven.
    pub(super) daemon_log: String,
}

/// Prints the markdown report and writes run-local.md, run-local.json,
/// the plots and the JSON of the runs; fails if any run failed or could
/// not be proven.
pub(super) fn write_report(a: &RunLocalArgs, setup: Setup, m: &Measured) -> Result<()> {
    let cmp = mesh_comparison(&setup.json_dir)?;
    let facts = LocalFacts {
        machine: setup.machine,
        loadavg_start: setup.loadavg_start,
        loadavg_end: crate::report::read_trim("/proc/loadavg"),
        total_secs: setup.t0.elapsed().as_secs_f64(),
        haproxy: version("haproxy", &["-v"]),
        nginx: version("nginx", &["-v"]),
    };
    let plan = LocalPlan {
        proto: a.proto,
        duration: a.duration,
        warmup: a.warmup,
        rounds: a.rounds,
        sizes: a.sizes.clone(),
        connections: a.connections.clone(),
        qps: a.qps.clone(),
    };
    let md = report::local::markdown(&plan, &facts, &cmp, &m.usage, &m.conn, &m.proofs);
    println!("{md}");
    let out_dir = &setup.out_dir;
    command::write_outputs(&cmp, &md, out_dir)?;
    fs::rename(out_dir.join("report.md"), out_dir.join("run-local.md"))?;
    fs::write(
        out_dir.join("run-local.json"),
        serde_json::to_string_pretty(&serde_json::json!({
            "facts": facts,
            "daemon": m.usage,
            "unmeshed_connect": m.conn,
            "proofs": m.proofs,
            "pairs": cmp.pairs,
        }))?,
    )?;
    eprintln!(
        "accel-bench run-local: wrote {}/run-local.md, run-local.json, latency.svg, throughput.svg, json/",
        out_dir.display()
    );
    let bad = m.proofs.iter().filter(|p| !p.verified).count();
    if bad > 0 {
        eprintln!("accel-bench run-local: daemon logs:\n{}", m.daemon_log);
        bail!("{bad} runs failed or could not be proven (see run-local.md)");
    }
    Ok(())
}

/// Baseline vs accelerated from the meshed request path's files in
/// `json_dir` (not the unmeshed `connect-*` ones).
fn mesh_comparison(json_dir: &Path) -> Result<Comparison> {
    let mesh_files: Vec<PathBuf> = compare::expand(&[json_dir.to_path_buf()])?
        .into_iter()
        .filter(|f| {
            f.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| !n.starts_with("connect-"))
        })
        .collect();
    let runs = if mesh_files.is_empty() {
        Vec::new()
    } else {
        compare::load_runs(&mesh_files)?
    };
    Ok(Comparison::build(&runs))
}
