//! `accel-bench mesh`: same-node sidecar traffic, with and without the
//! datapath, in one run on one topology.
//!
//! The topology is the end-to-end tests' (`accel_topology`): a
//! private node namespace with a bridge, meshed pods A and B with Istio's
//! REDIRECT rules and haproxy sidecars. Every request goes app A ->
//! sidecar A (127.0.0.1:15001) -> sidecar B (B:15006) -> app B (from
//! 127.0.0.6): three TCP connections, the three legs the datapath pairs.
//! All pod processes run in the [`TestEnv`] cgroup; the daemon is started on
//! that cgroup with a pods file listing A and B (node mode, as
//! tests/tests/mesh_datapath.rs does).
//!
//! Baseline = no daemon and the datapath unloaded (nothing attached to the
//! cgroup, no pins); accelerated = `accel-daemon run` up and accelerating.
//! The two modes alternate per case in ABBA order (base, accel, accel, base,
//! base, ...), the daemon being started and stopped (SIGKILL, then
//! `accel-daemon unload`) between them. Every run is proven: accelerated
//! runs by the growth of `redirect_bytes`, baseline runs by the absence of
//! any program attached to the cgroup and of the pin dir before and after.

use std::{
    collections::BTreeMap,
    fs,
    net::SocketAddr,
    panic::AssertUnwindSafe,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant, SystemTime},
};

use accel_test_harness::{Daemon, TestEnv, Value, pattern, sha256_hex};
use accel_topology::{Mesh, Node, Pod};
use anyhow::{Context, Result, bail, ensure};
use clap::Args;

use crate::{
    host::{locate_daemon, online_cpus},
    records::mesh::{MeshCase, MeshConfig, MeshRecord, MeshWorkload, Mode, Placement},
    report::mesh as mesh_report,
    sandbox::{check_interrupted, install_signal_handlers, interrupted},
    worker::{WorkerOut, Workload},
    worker_proc::{WorkerProc, finish_pair},
};

#[derive(Args, Debug, Clone)]
pub struct MeshArgs {
    /// Measured seconds per request/response and streaming run (after a
    /// warm-up of a tenth of it).
    #[arg(long, default_value_t = 2.0)]
    duration: f64,
    /// Seconds per wrk run (`wrk -d`).
    #[arg(long, default_value_t = 3)]
    wrk_duration: u32,
    /// wrk connections (`-c`).
    #[arg(long, default_value_t = 8)]
    wrk_connections: u32,
    /// wrk threads (`-t`).
    #[arg(long, default_value_t = 1)]
    wrk_threads: u32,
    /// Runs per mode and case; modes alternate ABBA (base, accel, accel, base, ...).
    #[arg(long, default_value_t = 5)]
    repeats: usize,
    /// Shorter: 0.5 s runs, 1 s wrk runs, 3 repeats.
    #[arg(long)]
    quick: bool,
    /// Payload sizes (bytes; K/M suffixes mean KiB/MiB): HTTP body,
    /// request/response message, streaming write.
    #[arg(long, value_delimiter = ',', value_parser = crate::units::parse_size,
          default_value = "100,1K,16K,256K")]
    sizes: Vec<usize>,
    /// Workloads to run.
    #[arg(
        long,
        value_delimiter = ',',
        value_enum,
        default_value = "wrk,rr,stream"
    )]
    workloads: Vec<MeshWorkload>,
    /// Placements to run.
    #[arg(
        long,
        value_delimiter = ',',
        value_enum,
        default_value = "pinned,unpinned"
    )]
    placements: Vec<Placement>,
    /// The accel-daemon binary [default: next to this executable].
    #[arg(long)]
    daemon_bin: Option<PathBuf>,
    /// The accel-pod binary (IPv6 sidecar of the topology) [default: next to
    /// this executable].
    #[arg(long)]
    pod_bin: Option<PathBuf>,
    /// Where mesh.md and mesh.json go [default: bench/results/<YYYY-MM-DD>].
    #[arg(long)]
    out_dir: Option<PathBuf>,
    /// The accelerated mode's `accel-daemon run --pod-acceleration`:
    /// `auto` (the default: the sidecar hop, and the applications' own sends
    /// where they are non-blocking), `app-safe` or `all` (three legs),
    /// `proxy-only` (the sidecar-to-sidecar hop only).
    #[arg(long, default_value = "auto", value_parser = ["auto", "app-safe", "all", "proxy-only"])]
    pod_acceleration: String,
    /// The rr/stream workers' I/O: blocking, or non-blocking driven by
    /// epoll (the two kinds of application `auto` treats differently).
    #[arg(long, value_enum, default_value = "blocking")]
    worker_io: crate::worker::IoStyle,
}

pub fn run(args: MeshArgs) -> Result<()> {
    catching_topology_panics("mesh", || mesh(args))
}

/// The topology library reports failures by panicking; unwinding runs
/// every Drop guard (daemon, node, cgroup), then we turn it into an error.
pub(crate) fn catching_topology_panics(what: &str, f: impl FnOnce() -> Result<()>) -> Result<()> {
    match std::panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".into());
            bail!("{what} benchmark aborted (everything was cleaned up): {msg}")
        }
    }
}

/// Checks root and the tools, finds the daemon and accel-pod binaries and
/// tells the topology library where they are; returns our own executable.
pub(crate) fn topology_bins(
    daemon_bin: &Option<PathBuf>,
    pod_bin: &Option<PathBuf>,
    tools: &[&str],
) -> Result<PathBuf> {
    // SAFETY: geteuid has no preconditions.
    ensure!(
        unsafe { libc::geteuid() } == 0,
        "accel-bench needs root here: it creates namespaces, cgroups and loads BPF programs"
    );
    let daemon_bin = locate_daemon(daemon_bin)?;
    let exe = std::env::current_exe().context("locating own executable")?;
    let pod_bin = pod_bin.clone().unwrap_or_else(|| {
        exe.parent()
            .map(|p| p.join("accel-pod"))
            .unwrap_or_default()
    });
    ensure!(
        pod_bin.is_file(),
        "accel-pod not found at {} (cargo build --release -p accel-test-tools --bins, or --pod-bin)",
        pod_bin.display()
    );
    for t in tools {
        which(t)?;
    }
    // SAFETY: called before any thread is spawned; the topology library
    // finds its binaries through these variables.
    unsafe {
        std::env::set_var("ACCEL_DAEMON_BIN", &daemon_bin);
        std::env::set_var("ACCEL_POD_BIN", &pod_bin);
    }
    Ok(exe)
}

fn which(prog: &str) -> Result<PathBuf> {
    std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(prog))
                .find(|c| c.is_file())
        })
        .with_context(|| format!("{prog} not found in PATH (apt-get install {prog})"))
}

fn mesh(mut args: MeshArgs) -> Result<()> {
    if args.quick {
        args.duration = 0.5;
        args.wrk_duration = 1;
        args.repeats = 3;
    }
    ensure!(
        args.duration > 0.0 && args.repeats > 0 && args.wrk_duration > 0,
        "need a positive duration and repeats"
    );
    let duration = Duration::from_secs_f64(args.duration);
    let cfg = MeshConfig {
        duration,
        warmup: (duration / 10).max(Duration::from_millis(50)),
        wrk_duration: args.wrk_duration,
        wrk_connections: args.wrk_connections,
        wrk_threads: args.wrk_threads,
        repeats: args.repeats,
        pod_acceleration: args.pod_acceleration.clone(),
        worker_io: args.worker_io,
    };
    let exe = topology_bins(
        &args.daemon_bin,
        &args.pod_bin,
        &[
            "wrk",
            "nginx",
            "haproxy",
            "taskset",
            "iptables-restore",
            "bpftool",
        ],
    )?;

    let mut placements = args.placements.clone();
    placements.dedup();
    let mut sizes = args.sizes.clone();
    sizes.sort_unstable();
    sizes.dedup();
    let mut cases = Vec::new();
    for w in [MeshWorkload::Wrk, MeshWorkload::Rr, MeshWorkload::Stream] {
        if args.workloads.contains(&w) {
            cases.extend(sizes.iter().map(|&size| MeshCase { workload: w, size }));
        }
    }
    ensure!(!cases.is_empty(), "nothing to run");

    let started = SystemTime::now();
    let t_start = Instant::now();
    let ncpu = online_cpus();
    let facts = mesh_report::MeshFacts::collect(&cfg, started, ncpu);
    let total = placements.len() * cases.len() * cfg.repeats * 2;
    eprintln!(
        "accel-bench mesh: {} placements x {} cases x {} repeats x 2 modes = {total} runs \
         (rr/stream {:.2} s + {:.2} s warm-up, wrk {} s)",
        placements.len(),
        cases.len(),
        cfg.repeats,
        cfg.duration.as_secs_f64(),
        cfg.warmup.as_secs_f64(),
        cfg.wrk_duration
    );
    install_signal_handlers()?;

    // Drop order (reverse of declaration): daemon control, pods file, node
    // (pods, sidecars, nginx), cgroup and pins.
    let env = TestEnv::new("mesh-bench");
    let node = Node::new(&env, "mb");
    let a = node.meshed_pod("a", Mesh::default());
    let b = node.meshed_pod("b", Mesh::default());
    let nginx_pid = start_nginx(&b, &sizes);
    let pods_file = accel_topology::PodsFile::write(&env, &[(&a, ""), (&b, "")])
        .context("writing the pods file")?;
    let mut ctl = DaemonCtl::new(&env, pods_file.arg())
        .with_args(&["--pod-acceleration", &cfg.pod_acceleration]);
    let mut pids: Vec<u32> = a.sidecar_pids();
    pids.extend(b.sidecar_pids());
    pids.push(nginx_pid);
    eprintln!(
        "accel-bench mesh: pods A {} and B {} up (haproxy sidecars, nginx pid {nginx_pid}); cgroup {}",
        a.ipv4,
        b.ipv4,
        env.cgroup.display()
    );

    // Smoke test: every file through both sidecars, both modes.
    for mode in [Mode::Baseline, Mode::Accel] {
        ctl.set(mode)?;
        let before = match mode {
            Mode::Accel => ctl.counters()?,
            Mode::Baseline => BTreeMap::new(),
        };
        for &size in &sizes {
            let body = a.curl(&format!("http://{}/f{size}", b.ipv4));
            ensure!(
                sha256_hex(&body) == sha256_hex(&file_content(size)),
                "nginx returned a different f{size} through the mesh ({})",
                mode.label()
            );
        }
        if mode == Mode::Accel {
            let after = ctl.counters()?;
            let d = after.get("redirect_bytes").copied().unwrap_or(0)
                - before.get("redirect_bytes").copied().unwrap_or(0);
            let want: usize = sizes.iter().sum();
            ensure!(
                d >= want as u64,
                "smoke test: redirect_bytes grew by {d}, less than the {want} body bytes: \
                 the mesh is not accelerated; daemon log:\n{}",
                ctl.log()
            );
        }
    }
    eprintln!("accel-bench mesh: smoke test passed (curl through both sidecars, both modes)");

    let mut records = Vec::new();
    let mut seq = 0;
    for &placement in &placements {
        set_affinity(&pids, placement, ncpu)?;
        for &case in &cases {
            for repeat in 0..cfg.repeats {
                let order = if repeat % 2 == 0 {
                    [Mode::Baseline, Mode::Accel]
                } else {
                    [Mode::Accel, Mode::Baseline]
                };
                for mode in order {
                    check_interrupted()?;
                    ctl.set(mode)?;
                    seq += 1;
                    let mut rec = MeshRecord::new(seq, placement, case, mode, repeat);
                    rec.started_s = t_start.elapsed().as_secs_f64();
                    let before = ctl.proof_state()?;
                    let res = match case.workload {
                        MeshWorkload::Wrk => run_wrk(&a, &b, &cfg, placement, case.size)
                            .map(|w| w.fill(&mut rec, &b, case.size)),
                        MeshWorkload::Rr | MeshWorkload::Stream => {
                            exchange(&a, &b, &exe, &cfg, placement, case)
                                .and_then(|(c, s)| fill_worker(&mut rec, case, &c, &s))
                        }
                    };
                    match res {
                        Ok(()) => rec.ok = true,
                        Err(e) => {
                            rec.error = Some(format!("{e:#}"));
                            eprintln!(
                                "accel-bench mesh: run failed ({} {} {} B {}): {e:#}",
                                placement.name(),
                                case.workload.name(),
                                case.size,
                                mode.label()
                            );
                        }
                    }
                    check_interrupted()?;
                    let after = ctl.proof_state()?;
                    verify(
                        &mut rec,
                        &before,
                        &after,
                        matches!(cfg.pod_acceleration.as_str(), "proxy-only" | "auto"),
                    );
                    records.push(rec);
                }
            }
            eprintln!(
                "{}  [{:.0} s]",
                mesh_report::progress_line(placement, case, &records),
                t_start.elapsed().as_secs_f64()
            );
        }
    }
    ctl.set(Mode::Baseline)?;
    let toggles = ctl.toggles;
    let log = ctl.log();
    drop(ctl);
    drop(pods_file);
    drop(node);
    drop(env);

    let mut facts = facts;
    facts.finish(t_start.elapsed(), toggles);
    let rep = mesh_report::MeshReport::build(facts, &placements, &cases, records);
    let md = rep.markdown();
    println!("{md}");
    rep.save(&md, args.out_dir.clone(), "accel-bench mesh")?;
    if rep.failures() > 0 {
        eprintln!("accel-bench mesh: daemon logs:\n{log}");
        bail!(
            "{} runs failed or could not be verified (see the tables)",
            rep.failures()
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Daemon on/off
// ---------------------------------------------------------------------------

/// Before/after state of one run, for its proof.
pub(crate) struct ProofState {
    pub(crate) counters: Option<BTreeMap<String, u64>>,
    pub(crate) attachments: Vec<String>,
    pub(crate) pins: bool,
}

pub(crate) struct DaemonCtl<'a> {
    env: &'a TestEnv,
    pods_arg: String,
    extra_args: Vec<String>,
    daemon: Option<Daemon>,
    mode: Option<Mode>,
    toggles: usize,
    log: String,
}

impl<'a> DaemonCtl<'a> {
    pub(crate) fn new(env: &'a TestEnv, pods_arg: String) -> Self {
        DaemonCtl {
            env,
            pods_arg,
            extra_args: Vec::new(),
            daemon: None,
            mode: None,
            toggles: 0,
            log: String::new(),
        }
    }

    /// More `accel-daemon run` arguments for the accelerated mode.
    pub(crate) fn with_args(mut self, args: &[&str]) -> Self {
        self.extra_args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// Accelerated: `accel-daemon run --pods-file` (ready and
    /// accelerated=true). Baseline: daemon killed, `accel-daemon unload`
    /// (drain proven), nothing attached, no pins.
    pub(crate) fn set(&mut self, mode: Mode) -> Result<()> {
        if self.mode == Some(mode) {
            return Ok(());
        }
        match mode {
            Mode::Accel => {
                ensure!(self.daemon.is_none(), "daemon already running");
                let mut args = vec!["--pods-file", self.pods_arg.as_str()];
                args.extend(self.extra_args.iter().map(String::as_str));
                let d = self.env.start_daemon(&args);
                let log = d.log();
                self.daemon = Some(d);
                ensure!(
                    log.contains("accelerated=true"),
                    "accel-daemon came up WITHOUT acceleration; log:\n{log}"
                );
                let st = self.env.status_json();
                ensure!(
                    st["daemon"]["loopback_meshed_only"] == Value::Bool(true)
                        && st["daemon"]["pods"].as_array().map(Vec::len) == Some(2),
                    "daemon did not take the pods file: {}",
                    st["daemon"]
                );
            }
            Mode::Baseline => {
                if let Some(mut d) = self.daemon.take() {
                    d.kill9();
                    self.log.push_str(&d.log());
                }
                if self.env.pin_dir.exists() {
                    let out = self.env.unload();
                    ensure!(
                        out.status.success(),
                        "accel-daemon unload failed: {}{}",
                        String::from_utf8_lossy(&out.stdout),
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
                let att = self.env.attachments();
                ensure!(
                    att.is_empty() && !self.env.pin_dir.exists(),
                    "datapath still present after unload: attached {att:?}, pins {}",
                    self.env.pin_dir.exists()
                );
            }
        }
        if self.mode.is_some() {
            self.toggles += 1;
        }
        self.mode = Some(mode);
        // Let the start-up (self-test) or teardown settle before measuring.
        thread::sleep(Duration::from_millis(300));
        Ok(())
    }

    pub(crate) fn counters(&self) -> Result<BTreeMap<String, u64>> {
        crate::sandbox::datapath_counters(&self.env.status_json())
    }

    pub(crate) fn proof_state(&self) -> Result<ProofState> {
        Ok(ProofState {
            counters: match self.mode {
                Some(Mode::Accel) => Some(self.counters()?),
                _ => None,
            },
            attachments: self.env.attachments(),
            pins: self.env.pin_dir.exists(),
        })
    }

    pub(crate) fn log(&self) -> String {
        let mut l = self.log.clone();
        if let Some(d) = &self.daemon {
            l.push_str(&d.log());
        }
        l
    }
}

impl Drop for DaemonCtl<'_> {
    fn drop(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            d.kill9();
        }
        // TestEnv's drop removes the pins (which detaches sock_ops); an
        // explicit unload first drains properly.
        if self.env.pin_dir.exists() {
            let _ = self.env.unload();
        }
    }
}

/// `partial`: a mode where some legs carry bytes by TCP on purpose
/// (`proxy-only`: the application legs; `auto`: bytes to applications), so
/// the TCP bytes of recorded sockets count as the datapath's (`pass_bytes`
/// is only ever counted for recorded sockets). In `all` and `app-safe`
/// every leg must redirect.
fn verify(rec: &mut MeshRecord, before: &ProofState, after: &ProofState, partial: bool) {
    if let (Some(b), Some(a)) = (&before.counters, &after.counters) {
        rec.counters_delta = a
            .iter()
            .map(|(k, v)| (k.clone(), *v as i64 - b.get(k).copied().unwrap_or(0) as i64))
            .collect();
    }
    let d = |k: &str| rec.counters_delta.get(k).copied().unwrap_or(0);
    if !rec.ok {
        rec.verify_note = "run failed".into();
        return;
    }
    match rec.mode {
        Mode::Accel => {
            let rb = d("redirect_bytes");
            // wrk: the response bodies alone are a strict lower bound of
            // what one leg carried; workers: exact application bytes.
            let floor = match rec.workload {
                MeshWorkload::Wrk => rec.count.unwrap_or(0) * rec.size as u64,
                _ => rec.bytes_moved,
            };
            let carried = if partial { rb + d("pass_bytes") } else { rb };
            rec.verified = !rec.counters_delta.is_empty() && rb > 0 && carried >= floor as i64;
            if rec.bytes_moved > 0 {
                rec.redirected_legs = Some(rb as f64 / rec.bytes_moved as f64);
            }
            rec.verify_note = format!(
                "redirect_bytes +{rb} for {} bytes moved by the apps ({:.2} legs); pass_bytes +{}; \
                 passive_paired +{}",
                rec.bytes_moved,
                rec.redirected_legs.unwrap_or(0.0),
                d("pass_bytes"),
                d("passive_paired")
            );
        }
        Mode::Baseline => {
            let clean = |s: &ProofState| s.attachments.is_empty() && !s.pins;
            rec.verified = clean(before) && clean(after);
            rec.verify_note = if rec.verified {
                "no program attached to the cgroup and no pins, before and after".into()
            } else {
                format!(
                    "DATAPATH PRESENT: attached {:?}/{:?}, pins {}/{}",
                    before.attachments, after.attachments, before.pins, after.pins
                )
            };
        }
    }
    if !rec.verified {
        eprintln!(
            "accel-bench mesh: PROOF FAILED ({} {} {} B {}): {}",
            rec.placement.name(),
            rec.workload.name(),
            rec.size,
            rec.mode.label(),
            rec.verify_note
        );
    }
}

// ---------------------------------------------------------------------------
// Placement
// ---------------------------------------------------------------------------

/// `taskset -a -p -c LIST PID` on the long-running pod processes (sidecars,
/// nginx): all threads, applied before the placement's first run.
fn set_affinity(pids: &[u32], placement: Placement, ncpu: usize) -> Result<()> {
    let list = match placement {
        Placement::Pinned => "0".to_string(),
        Placement::Unpinned => format!("0-{}", ncpu.max(1) - 1),
    };
    pin(pids, &list)
}

/// `taskset -a -p -c list` on every pid (all threads), checked in
/// /proc/PID/status.
pub(crate) fn pin(pids: &[u32], list: &str) -> Result<()> {
    for pid in pids {
        let out = Command::new("taskset")
            .args(["-a", "-p", "-c", list, &pid.to_string()])
            .stdin(Stdio::null())
            .output()
            .context("running taskset")?;
        ensure!(
            out.status.success(),
            "taskset -a -p -c {list} {pid} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let allowed = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .map(str::trim)
            .unwrap_or("");
        ensure!(
            allowed == list || (list.contains('-') && allowed.contains('-')),
            "pid {pid}: Cpus_allowed_list {allowed:?}, wanted {list}"
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// nginx in pod B
// ---------------------------------------------------------------------------

fn file_content(size: usize) -> Vec<u8> {
    pattern::bytes(size as u64, 0, size)
}

/// nginx in B serving `/f<size>` for every size (sendfile on): the
/// topology's nginx, whose keep-alive lasts a whole wrk run.
pub(crate) fn start_nginx(b: &Pod, sizes: &[usize]) -> u32 {
    let contents: Vec<(String, Vec<u8>)> = sizes
        .iter()
        .map(|&s| (format!("/f{s}"), file_content(s)))
        .collect();
    let files: Vec<(&str, &[u8])> = contents
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_slice()))
        .collect();
    b.start_nginx_files(&files, true)
}

// ---------------------------------------------------------------------------
// wrk
// ---------------------------------------------------------------------------

#[derive(Debug, Default)]
struct WrkOut {
    requests: u64,
    secs: f64,
    read_bytes: f64,
    per_s: f64,
    p50_us: f64,
    p99_us: f64,
    mean_us: f64,
    max_us: f64,
    socket_errors: u64,
    non2xx: u64,
    output: String,
}

fn run_wrk(
    a: &Pod,
    b: &Pod,
    cfg: &MeshConfig,
    placement: Placement,
    size: usize,
) -> Result<WrkOut> {
    let url = format!("http://{}/f{size}", b.ipv4);
    let mut cmd = match placement {
        Placement::Pinned => {
            let mut c = a.command("taskset");
            c.args(["-c", "0", "wrk"]);
            c
        }
        Placement::Unpinned => a.command("wrk"),
    };
    cmd.args([
        format!("-t{}", cfg.wrk_threads),
        format!("-c{}", cfg.wrk_connections),
        format!("-d{}s", cfg.wrk_duration),
        "--timeout".into(),
        "10s".into(),
        "--latency".into(),
        url,
    ]);
    let mut w = WorkerProc::from_command(cmd)?;
    let deadline = Instant::now() + Duration::from_secs(u64::from(cfg.wrk_duration) + 30);
    let status = loop {
        if interrupted() {
            w.kill();
            bail!("interrupted");
        }
        if let Some(st) = w.child.try_wait()? {
            break st;
        }
        if Instant::now() > deadline {
            w.kill();
            bail!("wrk did not finish; stderr: {}", w.stderr());
        }
        thread::sleep(Duration::from_millis(10));
    };
    let mut output = String::new();
    while let Ok(l) = w.lines.recv_timeout(Duration::from_secs(2)) {
        output.push_str(&l);
        output.push('\n');
    }
    ensure!(
        status.success(),
        "wrk exited with {status}: {output}{}",
        w.stderr()
    );
    parse_wrk(&output).with_context(|| format!("parsing wrk output:\n{output}"))
}

/// wrk's time format (us, ms, s, m, h) in µs.
fn wrk_time_us(s: &str) -> Option<f64> {
    let (num, mul) = if let Some(n) = s.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix("ms") {
        (n, 1e3)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1e6)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60e6)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3600e6)
    } else {
        (s, 1.0)
    };
    num.parse::<f64>().ok().map(|v| v * mul)
}

/// wrk's byte format (binary units, "12.34MB").
fn wrk_bytes(s: &str) -> Option<f64> {
    let s = s.strip_suffix('B').unwrap_or(s);
    let (num, mul) = match s.chars().last()? {
        'K' => (&s[..s.len() - 1], 1024f64),
        'M' => (&s[..s.len() - 1], 1024f64.powi(2)),
        'G' => (&s[..s.len() - 1], 1024f64.powi(3)),
        'T' => (&s[..s.len() - 1], 1024f64.powi(4)),
        _ => (s, 1.0),
    };
    num.parse::<f64>().ok().map(|v| v * mul)
}

fn parse_wrk(out: &str) -> Result<WrkOut> {
    let mut w = WrkOut {
        output: out.to_string(),
        ..Default::default()
    };
    let (mut p50, mut p99, mut rps, mut total) = (None, None, None, None);
    for line in out.lines() {
        let t: Vec<&str> = line.split_whitespace().collect();
        match t.as_slice() {
            ["50%", v] => p50 = wrk_time_us(v),
            ["99%", v] => p99 = wrk_time_us(v),
            ["Latency", avg, _stdev, max, _] => {
                w.mean_us = wrk_time_us(avg).unwrap_or(0.0);
                w.max_us = wrk_time_us(max).unwrap_or(0.0);
            }
            ["Requests/sec:", v] => rps = v.parse::<f64>().ok(),
            [n, "requests", "in", secs, bytes, "read"] => {
                total = n.parse::<u64>().ok();
                w.secs = wrk_time_us(secs.trim_end_matches(','))
                    .map(|us| us / 1e6)
                    .unwrap_or(0.0);
                w.read_bytes = wrk_bytes(bytes).unwrap_or(0.0);
            }
            ["Socket", "errors:", rest @ ..] => {
                w.socket_errors = rest
                    .iter()
                    .filter_map(|x| x.trim_end_matches(',').parse::<u64>().ok())
                    .sum();
            }
            ["Non-2xx", "or", "3xx", "responses:", n] => w.non2xx = n.parse().unwrap_or(0),
            _ => {}
        }
    }
    w.p50_us = p50.context("no 50% line")?;
    w.p99_us = p99.context("no 99% line")?;
    w.per_s = rps.context("no Requests/sec line")?;
    w.requests = total.context("no 'requests in' line")?;
    ensure!(w.requests > 0, "wrk completed no request");
    Ok(w)
}

impl WrkOut {
    fn fill(self, rec: &mut MeshRecord, b: &Pod, size: usize) {
        // wrk's request: "GET /f<size> HTTP/1.1\r\nHost: <ip>\r\n\r\n".
        let req_len = format!("GET /f{size} HTTP/1.1\r\nHost: {}\r\n\r\n", b.ipv4).len() as u64;
        rec.p50_us = Some(self.p50_us);
        rec.p99_us = Some(self.p99_us);
        rec.mean_us = Some(self.mean_us);
        rec.max_us = Some(self.max_us);
        rec.per_s = Some(self.per_s);
        rec.count = Some(self.requests);
        rec.measured_secs = Some(self.secs);
        rec.mb_per_s = Some(self.read_bytes / self.secs.max(1e-9) / 1e6);
        rec.bytes_moved = self.read_bytes as u64 + self.requests * req_len;
        rec.wrk_socket_errors = self.socket_errors;
        rec.wrk_non2xx = self.non2xx;
        rec.wrk_output = Some(self.output);
    }
}

// ---------------------------------------------------------------------------
// Request/response and streaming workers
// ---------------------------------------------------------------------------

fn worker_cmd(
    pod: &Pod,
    exe: &Path,
    role: &str,
    case: MeshCase,
    cfg: &MeshConfig,
    cpu: Option<usize>,
) -> Command {
    let mut cmd = pod.command(exe);
    cmd.args([
        "worker",
        "--role",
        role,
        "--family",
        "tcp",
        "--workload",
        case.workload.name(),
    ])
    .args(["--size", &case.size.to_string()])
    .args(["--duration-ms", &cfg.duration.as_millis().to_string()])
    .args(["--warmup-ms", &cfg.warmup.as_millis().to_string()])
    .args(["--io", cfg.worker_io.name()]);
    if let Some(c) = cpu {
        cmd.args(["--cpu", &c.to_string()]);
    }
    cmd
}

/// Server (B, listening on 0.0.0.0:ephemeral) and client (A, connecting to
/// B's pod IP: REDIRECTed to A's sidecar, then B's sidecar, then B's app).
fn exchange(
    a: &Pod,
    b: &Pod,
    exe: &Path,
    cfg: &MeshConfig,
    placement: Placement,
    case: MeshCase,
) -> Result<(WorkerOut, WorkerOut)> {
    let cpu = placement.worker_cpu();
    let mut scmd = worker_cmd(b, exe, "server", case, cfg, cpu);
    scmd.args(["--listen", "0.0.0.0:0"]);
    let mut server = WorkerProc::from_command(scmd)?;
    let port = server
        .listen_addr()?
        .parse::<SocketAddr>()
        .context("server address")?
        .port();
    let mut ccmd = worker_cmd(a, exe, "client", case, cfg, cpu);
    ccmd.args(["--connect", &b.addr_v4(port).to_string()]);
    let mut client = WorkerProc::from_command(ccmd)?;

    let deadline = Instant::now() + cfg.warmup + cfg.duration + Duration::from_secs(60);
    finish_pair(&mut client, &mut server, deadline)
}

fn fill_worker(
    rec: &mut MeshRecord,
    case: MeshCase,
    client: &WorkerOut,
    server: &WorkerOut,
) -> Result<()> {
    let workload = match case.workload {
        MeshWorkload::Rr => Workload::Rr,
        MeshWorkload::Stream => Workload::Stream,
        MeshWorkload::Wrk => bail!("not a worker workload"),
    };
    let n = crate::worker::pair_numbers(workload, case.size, client, server)?;
    rec.send_eagain = n.send_eagain;
    rec.recv_eagain = n.recv_eagain;
    rec.p50_us = n.p50_us;
    rec.p99_us = n.p99_us;
    rec.mean_us = n.mean_us;
    rec.max_us = n.max_us;
    rec.count = n.round_trips;
    rec.per_s = n.per_s;
    rec.mb_per_s = n.mb_per_s;
    rec.measured_secs = n.measured_secs;
    rec.bytes_moved = n.bytes_moved;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_wrk_output() {
        let out = "Running 3s test @ http://10.244.0.3/f100
  1 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   245.12us  100.00us   5.10ms   90.00%
    Req/Sec    32.10k     1.00k   34.00k    70.00%
  Latency Distribution
     50%  230.00us
     75%  260.00us
     90%  300.00us
     99%    1.20ms
  96300 requests in 3.00s, 45.67MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
Requests/sec:  32100.00
Transfer/sec:     15.22MB
";
        let w = parse_wrk(out).unwrap();
        assert_eq!(w.requests, 96300);
        assert!((w.p50_us - 230.0).abs() < 1e-9);
        assert!((w.p99_us - 1200.0).abs() < 1e-9);
        assert!((w.per_s - 32100.0).abs() < 1e-9);
        assert!((w.secs - 3.0).abs() < 1e-9);
        assert!((w.read_bytes - 45.67 * 1024.0 * 1024.0).abs() < 1.0);
        assert_eq!(w.socket_errors, 3);
        assert!((w.max_us - 5100.0).abs() < 1e-9);
        assert_eq!(wrk_bytes("512.00B"), Some(512.0));
        assert_eq!(wrk_time_us("1.50s"), Some(1.5e6));
    }
}
