//! `accel-daemon status`: the daemon's last state (its state file, see
//! [`crate::state`]) and the live datapath as read from its pins, printed
//! for people or as JSON.

use std::path::{Path, PathBuf};

use accel_bpf::abi::{self, Stat};
use anyhow::Result;
use serde::Serialize;

use crate::{
    cli::StatusArgs,
    datapath::{Datapath, MapUsage, ProgramRuns},
    state::DaemonState,
};

/// The live datapath as read from its pins.
#[derive(Clone, Debug, Serialize)]
pub struct DatapathReport {
    pub pin_dir: PathBuf,
    pub mode: String,
    pub sock_ops_program_id: u32,
    pub maps: Vec<MapUsage>,
    pub counters: Vec<(String, u64)>,
    /// Runs and run time of the programs, counted while the kernel's BPF
    /// statistics are on.
    pub programs: Vec<ProgramRuns>,
    /// Sockets the application guard kept off the redirect path, per pod.
    pub held: Vec<crate::held::Held>,
}

impl DatapathReport {
    pub fn read(dp: &Datapath) -> Result<Self> {
        let mode = match dp.mode()? {
            abi::MODE_ACCELERATE => "accelerate",
            abi::MODE_PASSTHROUGH => "passthrough (draining)",
            _ => "unknown",
        };
        Ok(DatapathReport {
            pin_dir: dp.pin_dir.clone(),
            mode: mode.into(),
            sock_ops_program_id: dp.link_program_id(),
            maps: dp.usage(),
            counters: dp
                .stats()?
                .into_iter()
                .map(|(s, v): (Stat, u64)| (s.name().to_string(), v))
                .collect(),
            programs: dp.program_runs(),
            held: crate::held::read(dp)?,
        })
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Status {
    pub daemon_running: bool,
    pub daemon: Option<DaemonState>,
    pub datapath: Option<DatapathReport>,
    pub datapath_error: Option<String>,
}

impl Status {
    pub fn print_human(&self) {
        match (&self.daemon, self.daemon_running) {
            (Some(d), running) => {
                println!(
                    "daemon:        {} (pid {}, version {})",
                    if running {
                        "running"
                    } else {
                        "not running (last state shown)"
                    },
                    d.pid,
                    d.version
                );
                println!(
                    "kernel:        {}{}",
                    d.kernel_release,
                    if d.kernel_release_overridden {
                        " (overridden)"
                    } else {
                        ""
                    }
                );
                if d.accelerated {
                    println!("acceleration:  ON");
                } else {
                    println!("acceleration:  OFF: {}", d.reason);
                }
                println!("cgroup:        {}", d.cgroup.display());
                println!("metrics:       {}", d.metrics_addr);
                println!(
                    "endpoints:     {} addresses from {}; loopback takes part {}",
                    d.endpoints.len(),
                    d.endpoint_source,
                    if d.loopback_meshed_only {
                        "only in meshed pods"
                    } else {
                        "everywhere"
                    }
                );
                for p in &d.pods {
                    let ips: Vec<String> = p.ips.iter().map(|ip| ip.to_string()).collect();
                    let mut line = format!("  {} [{}]", p.name, ips.join(", "));
                    match p.netns_ref() {
                        Some(crate::endpoints::NetnsRef::Path { netns }) => {
                            line += &format!(" netns {}", netns.display())
                        }
                        Some(crate::endpoints::NetnsRef::Pid { pid }) => {
                            line += &format!(" netns of pid {pid}")
                        }
                        None => {}
                    }
                    if let Some(a) = p.acceleration {
                        line += &format!(" acceleration {a}");
                    }
                    if !p.exclude_inbound_ports.is_empty() {
                        line += &format!(" excl-in {:?}", p.exclude_inbound_ports);
                    }
                    if !p.exclude_outbound_ports.is_empty() {
                        line += &format!(" excl-out {:?}", p.exclude_outbound_ports);
                    }
                    if !p.exclude_outbound_ip_ranges.is_empty() {
                        let r: Vec<String> = p
                            .exclude_outbound_ip_ranges
                            .iter()
                            .map(|c| c.to_string())
                            .collect();
                        line += &format!(" excl-ranges [{}]", r.join(", "));
                    }
                    println!("{line}");
                }
                println!("checks:");
                for c in &d.checks {
                    let mark = if c.ok { "ok  " } else { "FAIL" };
                    if c.detail.is_empty() {
                        println!("  [{mark}] {}", c.name);
                    } else {
                        println!("  [{mark}] {}: {}", c.name, c.detail);
                    }
                }
            }
            (None, _) => {
                println!("daemon:        no state recorded (never ran with this --state-dir)")
            }
        }
        match (&self.datapath, &self.datapath_error) {
            (Some(dp), _) => {
                println!(
                    "datapath:      pinned at {} (mode {})",
                    dp.pin_dir.display(),
                    dp.mode
                );
                println!(
                    "sock_ops:      attached (program id {})",
                    dp.sock_ops_program_id
                );
                println!("maps:");
                for m in &dp.maps {
                    match m.entries {
                        Some(n) => println!("  {:<18} {n:>8} / {}", m.name, m.capacity),
                        // Socket storage has no capacity: one slot per socket.
                        None if m.capacity == 0 => {
                            println!("  {:<18} {:>8}   per socket", m.name, "-")
                        }
                        None => println!("  {:<18} {:>8}   {}", m.name, "-", m.capacity),
                    }
                }
                println!("counters:");
                for (name, v) in &dp.counters {
                    println!("  {name:<24} {v}");
                }
                println!("programs (counted while kernel.bpf_stats_enabled is on):");
                for p in &dp.programs {
                    let per_run = p.run_time_ns.checked_div(p.runs).unwrap_or(0);
                    println!(
                        "  {:<18} id {:<8} {} runs, {per_run} ns a run",
                        p.name, p.id, p.runs
                    );
                }
                if !dp.held.is_empty() {
                    let names = self
                        .daemon
                        .as_ref()
                        .map(|d| d.pod_names.clone())
                        .unwrap_or_default();
                    println!("held back (application sockets kept off the redirect path):");
                    for h in &dp.held {
                        println!(
                            "  {} {}: {} sockets; {}",
                            crate::held::pod_label(&names, h.pod),
                            h.reason,
                            h.sockets,
                            crate::held::hint(h.reason)
                        );
                    }
                }
            }
            (None, Some(e)) => println!("datapath:      {e}"),
            (None, None) => println!("datapath:      not installed"),
        }
    }
}

pub fn status(args: StatusArgs) -> Result<()> {
    let daemon = DaemonState::read(&args.state_dir);
    let daemon_running = daemon.as_ref().is_some_and(|d| {
        Path::new(&format!("/proc/{}", d.pid)).exists() && d.pid != std::process::id()
    });
    let (datapath, datapath_error) = if !args.pin_dir.exists()
        && daemon_running
        && daemon.as_ref().is_some_and(|d| d.accelerated)
    {
        // The daemon still runs a datapath whose pins are gone.
        let why = daemon
            .as_ref()
            .map(|d| d.pin_problem.clone())
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| {
                "they were removed; the daemon re-pins them at its next sync".into()
            });
        (
            None,
            Some(format!(
                "the running daemon's datapath has no pins at {}: {why}",
                args.pin_dir.display()
            )),
        )
    } else if args.pin_dir.exists() {
        match Datapath::open(&args.pin_dir)
            .map_err(anyhow::Error::from)
            .and_then(|dp| DatapathReport::read(&dp))
        {
            Ok(r) => (Some(r), None),
            Err(e) => (None, Some(format!("{e:#}"))),
        }
    } else {
        (None, None)
    };
    let status = Status {
        daemon_running,
        daemon,
        datapath,
        datapath_error,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        status.print_human();
    }
    Ok(())
}
