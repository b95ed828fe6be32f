//! `accel-bench run-local`: the local benchmark kit on this machine.
//!
//! One sidecar topology (the end-to-end tests' and `accel-bench mesh`'s:
//! meshed pods A and B with Istio's REDIRECT rules and haproxy sidecars, plus
//! two unmeshed pods U1 and U2), one cgroup holding every pod process, and
//! the daemon started (accelerated) or stopped and unloaded (baseline)
//! between rounds: per placement, round 1 runs every case baseline then
//! accelerated, round 2 accelerated then baseline, and so on (A B B A ...).
//!
//! Every case is one `accel-bench load` run in pod A against nginx in B
//! (HTTP keep-alive through both sidecars; every body checked byte for
//! byte) or the echo app in B (`--proto tcp`), written as a fortio JSON
//! file; the CPU time of the whole pod cgroup during the run goes into it.
//! The same comparison code as `accel-bench report` turns the files into
//! the tables and plots.
//!
//! Also measured in the same run: the daemon's RSS and CPU (idle and under
//! load, from /proc/PID/status and /proc/PID/stat), and the sock_ops cost on
//! connection setup for unmeshed traffic: connections per second from U1 to
//! U2 with no daemon vs with the daemon attached, interleaved, medians.

mod kit;
mod mesh_path;
mod outputs;
mod overhead;
mod usage;

use std::{
    fs,
    path::PathBuf,
    time::{Instant, SystemTime},
};

use accel_test_harness::TestEnv;
use anyhow::{Context, Result, ensure};
use clap::{Args, ValueEnum};
use serde::Serialize;

use crate::{
    host::online_cpus,
    records::{local::LocalProto, mesh::Mode, placement::Placement},
    report::Machine,
    sandbox::install_signal_handlers,
    topology::{catching_topology_panics, topology_bins},
};
use kit::Kit;
use mesh_path::measure_mesh;
use outputs::{Measured, write_report};
use overhead::{measure_idle, measure_unmeshed_connect, unmeasured_usage};

#[derive(Args, Debug, Clone)]
pub struct RunLocalArgs {
    /// Smoke test: 1 KiB only, -c 1 and 8, unpinned, 2 rounds of 0.5 s runs.
    #[arg(long)]
    quick: bool,
    /// Measured seconds per run.
    #[arg(long, default_value_t = 2.0)]
    duration: f64,
    /// Seconds of load before each measurement.
    #[arg(long, default_value_t = 0.3)]
    warmup: f64,
    /// Rounds per placement; each round runs every case in both modes.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Payload sizes (K/M suffixes: KiB/MiB).
    #[arg(long, value_delimiter = ',', value_parser = crate::units::parse_size,
          default_value = "64,1K,16K,64K")]
    sizes: Vec<usize>,
    /// Connections (`-c`).
    #[arg(long, value_delimiter = ',', default_value = "1,8,64")]
    connections: Vec<usize>,
    /// Request rates (total requests/s; 0 = as fast as possible).
    #[arg(long, value_delimiter = ',', default_value = "0")]
    qps: Vec<f64>,
    #[arg(
        long,
        value_delimiter = ',',
        value_enum,
        default_value = "one-core,two-core,unpinned"
    )]
    placements: Vec<Placement>,
    /// Protocol of the meshed request path: HTTP against nginx, or TCP
    /// request/response against the echo app.
    #[arg(long, value_enum, default_value = "http")]
    proto: LocalProto,
    /// Interleaved rounds (no daemon, daemon) of the unmeshed connection
    /// setup rate measurement.
    #[arg(long, default_value_t = 8)]
    conn_rounds: usize,
    /// Seconds per connection setup rate run.
    #[arg(long, default_value_t = 1.5)]
    conn_duration: f64,
    /// Seconds of the idle daemon CPU measurement.
    #[arg(long, default_value_t = 5.0)]
    idle_secs: f64,
    /// What to measure: the idle daemon, the unmeshed connection setup
    /// rate, the meshed request path.
    #[arg(
        long,
        value_delimiter = ',',
        value_enum,
        default_value = "idle,connect,mesh"
    )]
    parts: Vec<Part>,
    /// The accel-daemon binary [default: next to this executable].
    #[arg(long)]
    daemon_bin: Option<PathBuf>,
    /// The accel-pod binary [default: next to this executable].
    #[arg(long)]
    pod_bin: Option<PathBuf>,
    /// Output directory [default: bench/results/<YYYY-MM-DD>/local].
    #[arg(long)]
    out_dir: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
pub enum Part {
    Idle,
    Connect,
    Mesh,
}

pub fn run(args: RunLocalArgs) -> Result<()> {
    catching_topology_panics("run-local", || run_local(args))
}

/// The whole run: set-up, the parts asked for, the topology torn down,
/// then the report.
fn run_local(mut a: RunLocalArgs) -> Result<()> {
    let setup = Setup::prepare(&mut a)?;
    // Drop order: daemon, pods file, node (the kit's fields, in declaration
    // order), cgroup (`env`, declared before the kit).
    let env = TestEnv::new("run-local");
    let mut kit = Kit::start(&env, &setup.exe, &setup.json_dir, a.proto, &a.sizes)?;

    // 1. Idle daemon.
    let mut usage = unmeasured_usage();
    if a.parts.contains(&Part::Idle) {
        measure_idle(&mut kit, a.idle_secs, &mut usage)?;
    }
    // 2. Unmeshed connection setup rate, interleaved.
    let conn = measure_unmeshed_connect(&mut kit, &a)?;
    // 3. The meshed request path.
    let proofs = measure_mesh(&mut kit, &a, setup.ncpu, setup.t0, &mut usage)?;
    let daemon_log = kit.stop_daemon()?;
    drop(kit);
    drop(env);

    // 4. The report, from the files (the same path as `accel-bench report`).
    let measured = Measured {
        usage,
        conn,
        proofs,
        daemon_log,
    };
    write_report(&a, setup, &measured)
}

/// What the run needs before the topology exists.
struct Setup {
    /// This executable.
    exe: PathBuf,
    /// Online CPUs.
    ncpu: usize,
    /// When the run started (progress lines, the total time).
    t0: Instant,
    machine: Machine,
    loadavg_start: String,
    out_dir: PathBuf,
    /// `out_dir/json`: the fortio JSON of every run.
    json_dir: PathBuf,
}

impl Setup {
    /// Applies `--quick`, checks the arguments, root and the tools, drops
    /// the two-core placement on a one-CPU machine, collects the machine's
    /// facts, empties the JSON directory and installs the signal handlers.
    fn prepare(a: &mut RunLocalArgs) -> Result<Self> {
        if a.quick {
            a.apply_quick();
        }
        ensure!(
            a.duration > 0.0 && a.rounds > 0 && a.conn_rounds > 0,
            "need a positive duration and rounds"
        );
        let exe = topology_bins(
            &a.daemon_bin,
            &a.pod_bin,
            &["nginx", "haproxy", "taskset", "iptables-restore", "bpftool"],
        )?;
        let ncpu = online_cpus();
        a.placements = Placement::usable(&a.placements, ncpu, "accel-bench run-local");
        let started = SystemTime::now();
        let t0 = Instant::now();
        let machine = Machine::collect(started);
        let out_dir = a.out_dir.clone().unwrap_or_else(|| {
            crate::report::default_results_root()
                .join(&machine.date)
                .join("local")
        });
        let json_dir = out_dir.join("json");
        if json_dir.exists() {
            // Old runs would mix into the medians.
            fs::remove_dir_all(&json_dir)
                .with_context(|| format!("clearing {}", json_dir.display()))?;
        }
        fs::create_dir_all(&json_dir)
            .with_context(|| format!("creating {}", json_dir.display()))?;
        let loadavg_start = crate::report::read_trim("/proc/loadavg");
        install_signal_handlers()?;
        Ok(Setup {
            exe,
            ncpu,
            t0,
            machine,
            loadavg_start,
            out_dir,
            json_dir,
        })
    }
}

impl RunLocalArgs {
    /// `--quick`: 1 KiB only, -c 1 and 8, unpinned, 2 rounds of 0.5 s runs.
    fn apply_quick(&mut self) {
        self.duration = 0.5;
        self.warmup = 0.1;
        self.rounds = 2;
        self.sizes = vec![1024];
        self.connections = vec![1, 8];
        self.placements = vec![Placement::Unpinned];
        self.conn_rounds = 2;
        self.conn_duration = 0.5;
        self.idle_secs = 1.0;
    }
}

fn mode_word(m: Mode) -> &'static str {
    match m {
        Mode::Baseline => "baseline",
        Mode::Accel => "accel",
    }
}
