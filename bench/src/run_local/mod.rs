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

mod usage;

use std::{
    fs,
    path::{Path, PathBuf},
    thread,
    time::{Duration, Instant, SystemTime},
};

use accel_test_harness::TestEnv;
use accel_topology::{ECHO_PORT, HTTP_PORT, Mesh, Node, Pod};
use anyhow::{Context, Result, bail, ensure};
use clap::{Args, ValueEnum};
use serde::Serialize;

use crate::{
    host::online_cpus,
    records::{
        local::{ConnRate, DaemonUsage, LocalPlan, LocalProto, RunProof},
        mesh::Mode,
    },
    report::{
        self, Agg, Machine, command,
        compare::{self, Comparison},
        fortio::RunnerResults,
        local::LocalFacts,
        version,
    },
    sandbox::{check_interrupted, install_signal_handlers},
    topology::{DaemonCtl, ProofState, catching_topology_panics, pin, start_nginx, topology_bins},
};
use usage::{cgroup_cpu_usec, clk_tck, daemon_pid, proc_sample};

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
    placements: Vec<LocalPlacement>,
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
#[serde(rename_all = "kebab-case")]
pub enum LocalPlacement {
    /// Every pod process (load generator, both sidecars, server) on CPU 0.
    OneCore,
    /// Client side (load generator, sidecar A) on CPU 0, server side
    /// (sidecar B, nginx/echo) on CPU 1.
    TwoCore,
    /// No affinity.
    Unpinned,
}

impl LocalPlacement {
    fn name(self) -> &'static str {
        match self {
            LocalPlacement::OneCore => "one-core",
            LocalPlacement::TwoCore => "two-core",
            LocalPlacement::Unpinned => "unpinned",
        }
    }
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

fn run_local(mut a: RunLocalArgs) -> Result<()> {
    if a.quick {
        a.duration = 0.5;
        a.warmup = 0.1;
        a.rounds = 2;
        a.sizes = vec![1024];
        a.connections = vec![1, 8];
        a.placements = vec![LocalPlacement::Unpinned];
        a.conn_rounds = 2;
        a.conn_duration = 0.5;
        a.idle_secs = 1.0;
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
    if ncpu < 2 {
        a.placements.retain(|p| *p != LocalPlacement::TwoCore);
    }
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
    fs::create_dir_all(&json_dir).with_context(|| format!("creating {}", json_dir.display()))?;
    let loadavg_start = crate::report::read_trim("/proc/loadavg");
    install_signal_handlers()?;

    // Drop order (reverse of declaration): daemon, pods file, node, cgroup.
    let env = TestEnv::new("run-local");
    let node = Node::new(&env, "rl");
    let pa = node.meshed_pod("a", Mesh::default());
    let pb = node.meshed_pod("b", Mesh::default());
    let u1 = node.unmeshed_pod("u1");
    let u2 = node.unmeshed_pod("u2");
    let (server_pid, target_port) = match a.proto {
        LocalProto::Http => (start_nginx(&pb, &a.sizes), HTTP_PORT),
        LocalProto::Tcp => (pb.start_echo(), ECHO_PORT),
    };
    const CONN_PORT: u16 = 9100;
    let mut echo_cmd = u2.command(&exe);
    echo_cmd
        .args(["echo-server", "--listen", &format!("0.0.0.0:{CONN_PORT}")])
        .stdout(std::process::Stdio::null());
    u2.spawn("bench-echo", &mut echo_cmd);
    u2.wait_listening(CONN_PORT, 1);
    let pods_file = accel_topology::PodsFile::write(&env, &[(&pa, ""), (&pb, "")])
        .context("writing the pods file")?;
    let mut ctl = DaemonCtl::new(&env, pods_file.arg());
    let client_side: Vec<u32> = pa.sidecar_pids();
    let mut server_side: Vec<u32> = pb.sidecar_pids();
    server_side.push(server_pid);
    eprintln!(
        "accel-bench run-local: pods A {} B {} (meshed), U1 {} U2 {} (unmeshed); cgroup {}",
        pa.ipv4,
        pb.ipv4,
        u1.ipv4,
        u2.ipv4,
        env.cgroup.display()
    );

    let load = |pod: &Pod, extra: &[String], file: &Path| -> Result<RunnerResults> {
        let mut cmd = pod.command(&exe);
        cmd.arg("load").args(extra).arg("--json").arg(file);
        let out = cmd.output().context("running accel-bench load")?;
        ensure!(
            out.status.success(),
            "load failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(RunnerResults::read(file)?)
    };

    // 1. Idle daemon.
    let mut usage = DaemonUsage {
        idle_cpu_pct: f64::NAN,
        idle_rss_kib: 0,
        idle_rss_anon_kib: 0,
        idle_rss_file_kib: 0,
        idle_threads: 0,
        load_cpu_pct: Vec::new(),
        load_rss_kib: Vec::new(),
        max_hwm_kib: 0,
    };
    if a.parts.contains(&Part::Idle) {
        ctl.set(Mode::Accel)?;
        thread::sleep(Duration::from_secs(1));
        let pid = daemon_pid(&env)?;
        let s0 = proc_sample(pid)?;
        thread::sleep(Duration::from_secs_f64(a.idle_secs));
        let s1 = proc_sample(pid)?;
        usage.idle_cpu_pct = (s1.cpu_ticks - s0.cpu_ticks) as f64 / clk_tck() / a.idle_secs * 100.0;
        usage.idle_rss_kib = s1.rss_kib;
        usage.idle_rss_anon_kib = s1.rss_anon_kib;
        usage.idle_rss_file_kib = s1.rss_file_kib;
        usage.idle_threads = fs::read_dir(format!("/proc/{pid}/task"))
            .map(|d| d.count() as u64)
            .unwrap_or(0);
        usage.max_hwm_kib = s1.hwm_kib;
        eprintln!(
            "accel-bench run-local: idle daemon (pid {pid}): {:.2} % CPU over {:.0} s, RSS {} KiB",
            usage.idle_cpu_pct, a.idle_secs, usage.idle_rss_kib
        );
    }

    // 2. Unmeshed connection setup rate, interleaved.
    let mut conn = ConnRate {
        baseline: Vec::new(),
        daemon: Vec::new(),
        baseline_median: 0.0,
        daemon_median: 0.0,
        ratio: 0.0,
    };
    let conn_rounds = if a.parts.contains(&Part::Connect) {
        a.conn_rounds
    } else {
        0
    };
    for round in 0..conn_rounds {
        let order = if round % 2 == 0 {
            [Mode::Accel, Mode::Baseline]
        } else {
            [Mode::Baseline, Mode::Accel]
        };
        for mode in order {
            check_interrupted()?;
            ctl.set(mode)?;
            let file = json_dir.join(format!("connect-{}-r{round}.json", mode_word(mode)));
            let r = load(
                &u1,
                &[
                    "--target".into(),
                    u2.addr_v4(CONN_PORT).to_string(),
                    "--proto".into(),
                    "connect".into(),
                    "--size".into(),
                    "1".into(),
                    "-c".into(),
                    "1".into(),
                    "--duration".into(),
                    a.conn_duration.to_string(),
                    "--warmup".into(),
                    "0.2".into(),
                    "--labels".into(),
                    format!(
                        "mode={} test=unmeshed-connect round={round}",
                        mode_word(mode)
                    ),
                ],
                &file,
            )?;
            match mode {
                Mode::Baseline => conn.baseline.push(r.actual_qps),
                Mode::Accel => conn.daemon.push(r.actual_qps),
            }
        }
    }
    let med = |v: &[f64]| Agg::of(v.to_vec()).map_or(0.0, |a| a.median);
    conn.baseline_median = med(&conn.baseline);
    conn.daemon_median = med(&conn.daemon);
    conn.ratio = conn.daemon_median / conn.baseline_median.max(1e-9);
    eprintln!(
        "accel-bench run-local: unmeshed connections/s: no daemon {:.0}, daemon {:.0} ({:.3}x)",
        conn.baseline_median, conn.daemon_median, conn.ratio
    );

    // 3. The meshed request path.
    let mut sizes = a.sizes.clone();
    sizes.sort_unstable();
    sizes.dedup();
    let mut cases: Vec<(usize, usize, f64)> = Vec::new();
    for &size in &sizes {
        for &c in &a.connections {
            for &q in &a.qps {
                cases.push((size, c, q));
            }
        }
    }
    if !a.parts.contains(&Part::Mesh) {
        a.placements.clear();
    }
    let total = a.placements.len() * a.rounds * 2 * cases.len();
    eprintln!(
        "accel-bench run-local: {} placements x {} rounds x 2 modes x {} cases = {total} runs of {:.1} s",
        a.placements.len(),
        a.rounds,
        cases.len(),
        a.duration
    );
    let all_cpus = format!("0-{}", ncpu.max(1) - 1);
    let mut proofs = Vec::new();
    let mut done = 0;
    for &placement in &a.placements {
        let (client_cpus, client_list, server_list) = match placement {
            LocalPlacement::OneCore => (Some("0"), "0", "0"),
            LocalPlacement::TwoCore => (Some("0"), "0", "1"),
            LocalPlacement::Unpinned => (None, all_cpus.as_str(), all_cpus.as_str()),
        };
        pin(&client_side, client_list)?;
        pin(&server_side, server_list)?;
        for round in 0..a.rounds {
            let order = if round % 2 == 0 {
                [Mode::Baseline, Mode::Accel]
            } else {
                [Mode::Accel, Mode::Baseline]
            };
            for mode in order {
                ctl.set(mode)?;
                let dpid = match mode {
                    Mode::Accel => Some(daemon_pid(&env)?),
                    Mode::Baseline => None,
                };
                let d0 = dpid.map(proc_sample).transpose()?;
                let tr = Instant::now();
                for &(size, c, qps) in &cases {
                    check_interrupted()?;
                    let qname = if qps > 0.0 {
                        format!("{qps}")
                    } else {
                        "max".into()
                    };
                    let proto = match a.proto {
                        LocalProto::Http => "http",
                        LocalProto::Tcp => "tcp",
                    };
                    let file = json_dir.join(format!(
                        "{proto}-{}-s{size}-c{c}-q{qname}-{}-r{round}.json",
                        placement.name(),
                        mode_word(mode)
                    ));
                    let mut extra: Vec<String> = vec![
                        "--target".into(),
                        pb.addr_v4(target_port).to_string(),
                        "--proto".into(),
                        proto.into(),
                        "--size".into(),
                        size.to_string(),
                        "-c".into(),
                        c.to_string(),
                        "--qps".into(),
                        qps.to_string(),
                        "--duration".into(),
                        a.duration.to_string(),
                        "--warmup".into(),
                        a.warmup.to_string(),
                        "--labels".into(),
                        format!(
                            "mode={} proto={proto} placement={} size={size} round={round}",
                            mode_word(mode),
                            placement.name()
                        ),
                    ];
                    if a.proto == LocalProto::Http {
                        extra.extend(["--path".into(), format!("/f{size}")]);
                        extra.push("--expect-pattern".into());
                    }
                    if let Some(cpus) = client_cpus {
                        extra.extend(["--cpus".into(), cpus.into()]);
                    }
                    let before = ctl.proof_state()?;
                    let cpu0 = cgroup_cpu_usec(&env.cgroup)?;
                    let res = load(&pa, &extra, &file);
                    let cpu1 = cgroup_cpu_usec(&env.cgroup)?;
                    let after = ctl.proof_state()?;
                    let mut r = match res {
                        Ok(r) => r,
                        Err(e) => {
                            eprintln!("accel-bench run-local: run failed: {e:#}");
                            proofs.push(RunProof {
                                file: file.display().to_string(),
                                mode,
                                verified: false,
                                note: format!("run failed: {e:#}"),
                            });
                            continue;
                        }
                    };
                    // The cgroup's CPU over the whole run (warm-up included),
                    // scaled to the measured window.
                    let window = a.duration / (a.duration + a.warmup);
                    if let Some(x) = r.accel_bench.as_mut() {
                        x.cpu_seconds = Some((cpu1 - cpu0) as f64 / 1e6 * window);
                    }
                    fs::write(&file, serde_json::to_string_pretty(&r)?)?;
                    let bytes = r.accel_bench.as_ref().map_or(0, |x| x.bytes);
                    proofs.push(prove(&file, mode, bytes, &before, &after));
                    done += 1;
                }
                if let (Some(pid), Some(d0)) = (dpid, d0) {
                    let d1 = proc_sample(pid)?;
                    let secs = tr.elapsed().as_secs_f64();
                    usage
                        .load_cpu_pct
                        .push((d1.cpu_ticks - d0.cpu_ticks) as f64 / clk_tck() / secs * 100.0);
                    usage.load_rss_kib.push(d1.rss_kib);
                    usage.max_hwm_kib = usage.max_hwm_kib.max(d1.hwm_kib);
                }
                eprintln!(
                    "accel-bench run-local: [{}] round {} {} done ({done}/{total} runs, {:.0} s)",
                    placement.name(),
                    round + 1,
                    mode.label(),
                    t0.elapsed().as_secs_f64()
                );
            }
        }
    }
    ctl.set(Mode::Baseline)?;
    let toggles_log = ctl.log();
    drop(ctl);
    drop(pods_file);
    drop(node);
    drop(env);

    // 4. The report, from the files (the same path as `accel-bench report`).
    let mesh_files: Vec<PathBuf> = compare::expand(std::slice::from_ref(&json_dir))?
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
    let cmp = Comparison::build(&runs);
    let facts = LocalFacts {
        machine,
        loadavg_start,
        loadavg_end: crate::report::read_trim("/proc/loadavg"),
        total_secs: t0.elapsed().as_secs_f64(),
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
    let md = report::local::markdown(&plan, &facts, &cmp, &usage, &conn, &proofs);
    println!("{md}");
    command::write_outputs(&cmp, &md, &out_dir)?;
    fs::rename(out_dir.join("report.md"), out_dir.join("run-local.md"))?;
    fs::write(
        out_dir.join("run-local.json"),
        serde_json::to_string_pretty(&serde_json::json!({
            "facts": facts,
            "daemon": usage,
            "unmeshed_connect": conn,
            "proofs": proofs,
            "pairs": cmp.pairs,
        }))?,
    )?;
    eprintln!(
        "accel-bench run-local: wrote {}/run-local.md, run-local.json, latency.svg, throughput.svg, json/",
        out_dir.display()
    );
    let bad = proofs.iter().filter(|p| !p.verified).count();
    if bad > 0 {
        eprintln!("accel-bench run-local: daemon logs:\n{toggles_log}");
        bail!("{bad} runs failed or could not be proven (see run-local.md)");
    }
    Ok(())
}

fn mode_word(m: Mode) -> &'static str {
    match m {
        Mode::Baseline => "baseline",
        Mode::Accel => "accel",
    }
}

/// Accelerated: redirect_bytes grew by at least the application bytes of
/// the measured window. Baseline: nothing attached and no pins, before and
/// after.
fn prove(file: &Path, mode: Mode, bytes: u64, before: &ProofState, after: &ProofState) -> RunProof {
    let (verified, note) = match mode {
        Mode::Accel => {
            let rb = match (&before.counters, &after.counters) {
                (Some(b), Some(a)) => {
                    a.get("redirect_bytes").copied().unwrap_or(0) as i64
                        - b.get("redirect_bytes").copied().unwrap_or(0) as i64
                }
                _ => 0,
            };
            (
                rb > 0 && rb >= bytes as i64,
                format!("redirect_bytes +{rb} for {bytes} application bytes"),
            )
        }
        Mode::Baseline => {
            let clean = |s: &ProofState| s.attachments.is_empty() && !s.pins;
            let ok = clean(before) && clean(after);
            (
                ok,
                if ok {
                    "nothing attached, no pins".into()
                } else {
                    format!(
                        "DATAPATH PRESENT: {:?}/{:?}",
                        before.attachments, after.attachments
                    )
                },
            )
        }
    };
    if !verified {
        eprintln!(
            "accel-bench run-local: PROOF FAILED {}: {note}",
            file.display()
        );
    }
    RunProof {
        file: file.display().to_string(),
        mode,
        verified,
        note,
    }
}
