//! accel-bench: micro-benchmarks of the sockmap acceleration.
//!
//! `accel-bench loopback` compares, in one run, plain TCP, accelerated TCP
//! and a Unix stream socket over loopback, for request/response and
//! streaming workloads across message sizes, with both ends on one core and
//! on two cores.
//!
//! `accel-bench mesh` runs real sidecar traffic (pods with Istio's
//! interception and haproxy sidecars, from the end-to-end tests' topology)
//! with and without the daemon: wrk against nginx, request/response and
//! streaming through both sidecars. See bench/README.md.

mod load;
mod mesh;
mod nonblock;
mod records;
mod report;
mod run_local;
mod sandbox;
mod worker;

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Read},
    os::unix::process::CommandExt,
    path::PathBuf,
    process::{Child, Command, ExitCode, Stdio},
    sync::{Arc, Mutex, mpsc},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use clap::{Args, Parser, Subcommand};
use serde::{Deserialize, Serialize};

use crate::{
    sandbox::{Sandbox, check_interrupted, interrupted},
    worker::{Family, WorkerArgs, WorkerOut, Workload},
};

#[derive(Parser)]
#[command(
    name = "accel-bench",
    version,
    about = "Benchmarks for the sockmap acceleration"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Plain TCP vs accelerated TCP vs Unix socket over loopback
    /// (request/response latency and streaming throughput). Needs root.
    Loopback(LoopbackArgs),
    /// Same-node sidecar mesh: pod A -> sidecar A -> sidecar B -> pod B,
    /// daemon stopped vs running (wrk/nginx, request/response, streaming).
    /// Needs root, wrk, nginx, haproxy.
    Mesh(mesh::MeshArgs),
    /// Load generator (HTTP/1.1 keep-alive, TCP request/response, connection
    /// setup) at a fixed or maximum rate; writes fortio's JSON result format.
    Load(load::LoadArgs),
    /// Compares fortio JSON results (cluster or `load`): baseline vs
    /// accelerated table with ratios, SVG plots.
    Report(report::command::ReportArgs),
    /// The local benchmark kit: sidecar topology, baseline and accelerated
    /// interleaved, pinned and unpinned, over sizes and concurrency, daemon
    /// RSS/CPU, unmeshed connection setup cost. Needs root.
    RunLocal(run_local::RunLocalArgs),
    /// Echo server for `load --proto tcp|connect` (prints `LISTEN <addr>`).
    #[command(hide = true)]
    EchoServer(load::EchoServerArgs),
    /// One end of one benchmark connection (spawned by `loopback`).
    #[command(hide = true)]
    Worker(WorkerArgs),
}

#[derive(Args, Debug, Clone)]
pub struct LoopbackArgs {
    /// Measured seconds per run (after a warm-up of a tenth of it).
    #[arg(long, default_value_t = 1.0)]
    duration: f64,
    /// Runs per transport and case; transports are interleaved (A B C A B C ...).
    #[arg(long, default_value_t = 5)]
    repeats: usize,
    /// Shorter: 0.3 s runs and 3 repeats (overrides --duration and --repeats).
    #[arg(long)]
    quick: bool,
    /// Message sizes (bytes; K/M suffixes mean KiB/MiB).
    #[arg(long, value_delimiter = ',', value_parser = parse_size,
          default_value = "64,256,1K,4K,16K,64K,256K,1M")]
    sizes: Vec<usize>,
    /// Extra streaming-only sizes (small-message streams).
    #[arg(long, value_delimiter = ',', value_parser = parse_size, default_value = "100")]
    stream_extra_sizes: Vec<usize>,
    /// Workloads to run.
    #[arg(long, value_delimiter = ',', value_enum, default_value = "rr,stream")]
    workloads: Vec<Workload>,
    /// Placements to run.
    #[arg(
        long,
        value_delimiter = ',',
        value_enum,
        default_value = "one-core,two-core"
    )]
    placements: Vec<PlacementKind>,
    /// The accel-daemon binary [default: next to this executable].
    #[arg(long)]
    daemon_bin: Option<PathBuf>,
    /// The workers' I/O: blocking, or non-blocking driven by epoll.
    #[arg(long, value_enum, default_value = "blocking")]
    worker_io: worker::IoStyle,
    /// Where loopback.md and loopback.json go [default: bench/results/<YYYY-MM-DD>].
    #[arg(long)]
    out_dir: Option<PathBuf>,
}

fn parse_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let (num, mul) = match s.chars().last() {
        Some('k' | 'K') => (&s[..s.len() - 1], 1024),
        Some('m' | 'M') => (&s[..s.len() - 1], 1024 * 1024),
        _ => (s, 1),
    };
    let n: usize = num.parse().map_err(|e| format!("bad size {s:?}: {e}"))?;
    if n == 0 {
        return Err("size must be > 0".into());
    }
    Ok(n * mul)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PlacementKind {
    /// Both ends on CPU 0.
    OneCore,
    /// Client on CPU 0, server on CPU 1.
    TwoCore,
}

impl PlacementKind {
    pub fn cpus(self) -> (usize, usize) {
        match self {
            PlacementKind::OneCore => (0, 0),
            PlacementKind::TwoCore => (0, 1),
        }
    }
    pub fn title(self) -> &'static str {
        match self {
            PlacementKind::OneCore => "one core (client CPU 0, server CPU 0)",
            PlacementKind::TwoCore => "two cores (client CPU 0, server CPU 1)",
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            PlacementKind::OneCore => "one-core",
            PlacementKind::TwoCore => "two-core",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    Tcp,
    Accel,
    Unix,
}

impl Transport {
    pub const ALL: [Transport; 3] = [Transport::Tcp, Transport::Accel, Transport::Unix];
    pub fn label(self) -> &'static str {
        match self {
            Transport::Tcp => "plain TCP",
            Transport::Accel => "accelerated",
            Transport::Unix => "unix",
        }
    }
    fn family(self) -> Family {
        match self {
            Transport::Tcp | Transport::Accel => Family::Tcp,
            Transport::Unix => Family::Unix,
        }
    }
}

pub type Case = records::Case<Workload>;

/// One run of one transport: raw numbers plus the counter proof.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    pub placement: PlacementKind,
    pub workload: Workload,
    pub size: usize,
    pub transport: Transport,
    pub repeat: usize,
    pub ok: bool,
    pub error: Option<String>,
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    pub mean_us: Option<f64>,
    pub min_us: Option<f64>,
    pub max_us: Option<f64>,
    pub round_trips: Option<u64>,
    pub rts_per_s: Option<f64>,
    pub mb_per_s: Option<f64>,
    pub measured_bytes: Option<u64>,
    pub measured_secs: Option<f64>,
    /// Application bytes written in the run, both directions, warm-up included.
    pub bytes_moved: u64,
    /// EAGAIN from send(2)/recv(2) on the (blocking) sockets of this run,
    /// both ends. Anything but 0 is an anomaly: the workers retried.
    pub send_eagain: u64,
    pub recv_eagain: u64,
    /// Datapath counters after minus before the run.
    pub counters_delta: BTreeMap<String, i64>,
    /// Accelerated: redirect_bytes + pass_bytes grew by >= bytes_moved, and
    /// pass_bytes only after the datapath's policy switches. Baseline/unix:
    /// redirect and pass counters did not move at all.
    pub verified: bool,
    pub verify_note: String,
}

impl RunRecord {
    /// Accelerated: % of the moved bytes the datapath did not redirect.
    pub fn tcp_share_pct(&self) -> Option<f64> {
        let rb = self.counters_delta.get("redirect_bytes").copied()?;
        (self.transport == Transport::Accel && self.bytes_moved > 0).then(|| {
            100.0 * (self.bytes_moved as f64 - rb as f64).max(0.0) / self.bytes_moved as f64
        })
    }
}

pub struct Config {
    pub duration: Duration,
    pub warmup: Duration,
    pub repeats: usize,
    pub worker_io: worker::IoStyle,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let res = match cli.command {
        Cmd::Worker(a) => worker::run(a),
        Cmd::Loopback(a) => loopback(a),
        Cmd::Mesh(a) => mesh::run(a),
        Cmd::Load(a) => load::run(a),
        Cmd::Report(a) => report::command::run(a),
        Cmd::RunLocal(a) => run_local::run(a),
        Cmd::EchoServer(a) => load::echo_server(a),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("accel-bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

pub(crate) fn locate_daemon(arg: &Option<PathBuf>) -> Result<PathBuf> {
    let path = match arg {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .context("locating own executable")?
            .parent()
            .context("executable has no parent dir")?
            .join("accel-daemon"),
    };
    ensure!(
        path.is_file(),
        "accel-daemon binary not found at {}; build it next to accel-bench with \
         `cargo build --release --workspace --bins` or pass --daemon-bin PATH",
        path.display()
    );
    Ok(path)
}

fn loopback(mut args: LoopbackArgs) -> Result<()> {
    if args.quick {
        args.duration = 0.3;
        args.repeats = 3;
    }
    ensure!(
        args.duration > 0.0 && args.repeats > 0,
        "need a positive duration and repeats"
    );
    let duration = Duration::from_secs_f64(args.duration);
    let cfg = Config {
        duration,
        warmup: (duration / 10).max(Duration::from_millis(20)),
        repeats: args.repeats,
        worker_io: args.worker_io,
    };
    let daemon_bin = locate_daemon(&args.daemon_bin)?;
    let exe = std::env::current_exe().context("locating own executable")?;
    let ncpu = online_cpus();
    let mut placements = args.placements.clone();
    placements.dedup();
    if ncpu < 2 {
        placements.retain(|p| *p != PlacementKind::TwoCore);
        eprintln!("accel-bench: only {ncpu} CPU online; skipping the two-core placement");
    }

    let mut cases = Vec::new();
    for w in [Workload::Rr, Workload::Stream] {
        if !args.workloads.contains(&w) {
            continue;
        }
        let mut sizes = args.sizes.clone();
        if w == Workload::Stream {
            sizes.extend(&args.stream_extra_sizes);
        }
        sizes.sort_unstable();
        sizes.dedup();
        cases.extend(sizes.into_iter().map(|size| Case { workload: w, size }));
    }
    ensure!(!cases.is_empty(), "nothing to run");

    let started = std::time::SystemTime::now();
    let facts = report::loopback::Facts::collect(&args, &cfg, started);
    let total_runs = placements.len() * cases.len() * cfg.repeats * Transport::ALL.len();
    eprintln!(
        "accel-bench: {} placements x {} cases x {} repeats x 3 transports = {total_runs} runs of {:.2} s (+{:.2} s warm-up)",
        placements.len(),
        cases.len(),
        cfg.repeats,
        cfg.duration.as_secs_f64(),
        cfg.warmup.as_secs_f64()
    );

    sandbox::install_signal_handlers()?;
    let mut sb = Sandbox::create(daemon_bin)?;
    eprintln!(
        "accel-bench: starting accel-daemon on {} (baseline cgroup {})",
        sb.accel_cg.display(),
        sb.plain_cg.display()
    );
    sb.start_daemon()?;
    eprintln!("accel-bench: daemon ready, accelerated");

    let mut records = Vec::new();
    let mut counters = sb.counters()?;
    let mut seq = 0usize;
    for &placement in &placements {
        for case in &cases {
            for repeat in 0..cfg.repeats {
                for transport in Transport::ALL {
                    check_interrupted()?;
                    seq += 1;
                    let mut rec =
                        run_once(&sb, &exe, &cfg, placement, *case, transport, repeat, seq);
                    check_interrupted()?;
                    let after = sb.counters()?;
                    verify(&mut rec, &counters, &after);
                    counters = after;
                    records.push(rec);
                }
            }
            eprintln!(
                "{}",
                report::loopback::progress_line(placement, *case, &records)
            );
        }
    }
    // The datapath counters were read after every run; the daemon must
    // still be the one that was started.
    let log = sb.log();
    drop(sb);

    let rep = report::loopback::Report::build(facts, &placements, &cases, records);
    let md = rep.markdown();
    println!("{md}");
    rep.save(&md, args.out_dir.clone(), "accel-bench")?;
    if rep.failures() > 0 {
        eprintln!("accel-bench: daemon log:\n{log}");
        bail!(
            "{} runs failed or could not be verified (see the tables)",
            rep.failures()
        );
    }
    Ok(())
}

pub(crate) fn online_cpus() -> usize {
    nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0))
        .map(|set| {
            (0..nix::sched::CpuSet::count())
                .filter(|&i| set.is_set(i).unwrap_or(false))
                .count()
        })
        .unwrap_or(1)
}

pub(crate) struct WorkerProc {
    pub(crate) child: Child,
    pub(crate) lines: mpsc::Receiver<String>,
    stderr: Arc<Mutex<String>>,
}

impl WorkerProc {
    fn spawn(exe: &PathBuf, procs_fd: i32, args: &[String]) -> Result<Self> {
        let mut cmd = Command::new(exe);
        cmd.arg("worker").args(args);
        // SAFETY: only async-signal-safe calls (write(2) on an fd opened
        // before fork) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::write(procs_fd, b"0".as_ptr().cast(), 1) != 1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        Self::from_command(cmd)
    }

    /// Spawns `cmd` (stdout and stderr captured, killed with the benchmark).
    pub(crate) fn from_command(mut cmd: Command) -> Result<Self> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: prctl is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = cmd.spawn().context("spawning worker")?;
        let stdout = child.stdout.take().context("worker stdout")?;
        let mut stderr_pipe = child.stderr.take().context("worker stderr")?;
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for l in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let e2 = stderr.clone();
        thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr_pipe.read_to_string(&mut s);
            if let Ok(mut e) = e2.lock() {
                *e = s;
            }
        });
        Ok(WorkerProc {
            child,
            lines,
            stderr,
        })
    }

    /// The address a server worker printed (`LISTEN <addr>`); kills it if
    /// it never does.
    pub(crate) fn listen_addr(&mut self) -> Result<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            check_interrupted()?;
            match self.lines.recv_timeout(Duration::from_millis(50)) {
                Ok(l) => {
                    if let Some(a) = l.strip_prefix("LISTEN ") {
                        return Ok(a.to_string());
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {}
                Err(_) => {
                    self.kill();
                    bail!("server did not listen; stderr: {}", self.stderr());
                }
            }
        }
    }

    pub(crate) fn stderr(&self) -> String {
        self.stderr
            .lock()
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    }

    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The JSON result line (after the process exited).
    pub(crate) fn result(&self) -> Result<WorkerOut> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l.starts_with('{') => {
                    return serde_json::from_str(&l).context("worker result JSON");
                }
                Ok(_) => {}
                Err(_) => bail!("worker printed no result; stderr: {}", self.stderr()),
            }
        }
    }
}

impl Drop for WorkerProc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill();
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn run_once(
    sb: &Sandbox,
    exe: &PathBuf,
    cfg: &Config,
    placement: PlacementKind,
    case: Case,
    transport: Transport,
    repeat: usize,
    seq: usize,
) -> RunRecord {
    let mut rec = RunRecord {
        placement,
        workload: case.workload,
        size: case.size,
        transport,
        repeat,
        ok: false,
        error: None,
        p50_us: None,
        p99_us: None,
        mean_us: None,
        min_us: None,
        max_us: None,
        round_trips: None,
        rts_per_s: None,
        mb_per_s: None,
        measured_bytes: None,
        measured_secs: None,
        bytes_moved: 0,
        send_eagain: 0,
        recv_eagain: 0,
        counters_delta: BTreeMap::new(),
        verified: false,
        verify_note: String::new(),
    };
    match exchange(sb, exe, cfg, placement, case, transport, seq) {
        Ok((client, server)) => {
            if let Err(e) = fill(&mut rec, case, &client, &server) {
                rec.error = Some(format!("{e:#}"));
            } else {
                rec.ok = true;
            }
        }
        Err(e) => rec.error = Some(format!("{e:#}")),
    }
    if let Some(e) = &rec.error {
        eprintln!(
            "accel-bench: run failed ({} {:?} {} B {}): {e}",
            placement.name(),
            case.workload,
            case.size,
            transport.label()
        );
    }
    rec
}

fn exchange(
    sb: &Sandbox,
    exe: &PathBuf,
    cfg: &Config,
    placement: PlacementKind,
    case: Case,
    transport: Transport,
    seq: usize,
) -> Result<(WorkerOut, WorkerOut)> {
    let (client_cpu, server_cpu) = placement.cpus();
    let family = transport.family();
    let procs_fd = sb.procs_fd(transport == Transport::Accel);
    let common = |role: &str, cpu: usize| -> Vec<String> {
        vec![
            "--role".into(),
            role.into(),
            "--family".into(),
            format!("{family:?}").to_lowercase(),
            "--workload".into(),
            format!("{:?}", case.workload).to_lowercase(),
            "--size".into(),
            case.size.to_string(),
            "--cpu".into(),
            cpu.to_string(),
            "--duration-ms".into(),
            cfg.duration.as_millis().to_string(),
            "--warmup-ms".into(),
            cfg.warmup.as_millis().to_string(),
            "--io".into(),
            cfg.worker_io.name().into(),
        ]
    };
    let mut sargs = common("server", server_cpu);
    if family == Family::Unix {
        sargs.push("--unix-path".into());
        sargs.push(
            sb.sock_dir
                .join(format!("s{seq}.sock"))
                .display()
                .to_string(),
        );
    }
    let mut server = WorkerProc::spawn(exe, procs_fd, &sargs)?;
    let addr = server.listen_addr()?;
    let mut cargs = common("client", client_cpu);
    cargs.push("--connect".into());
    cargs.push(addr);
    let mut client = WorkerProc::spawn(exe, procs_fd, &cargs)?;

    let deadline = Instant::now() + cfg.warmup + cfg.duration + Duration::from_secs(60);
    finish_pair(&mut client, &mut server, deadline)
}

fn fill(rec: &mut RunRecord, case: Case, client: &WorkerOut, server: &WorkerOut) -> Result<()> {
    let n = worker::pair_numbers(case.workload, case.size, client, server)?;
    rec.send_eagain = n.send_eagain;
    rec.recv_eagain = n.recv_eagain;
    rec.p50_us = n.p50_us;
    rec.p99_us = n.p99_us;
    rec.mean_us = n.mean_us;
    rec.min_us = n.min_us;
    rec.max_us = n.max_us;
    rec.round_trips = n.round_trips;
    rec.rts_per_s = n.per_s;
    rec.mb_per_s = n.mb_per_s;
    rec.measured_bytes = n.measured_bytes;
    rec.measured_secs = n.measured_secs;
    rec.bytes_moved = n.bytes_moved;
    Ok(())
}

/// Counters of the datapath's own switches of a redirecting socket to TCP.
pub const POLICY_SWITCHES: [&str; 1] = ["flow_reader_behind_to_tcp"];

const PROOF_COUNTERS: [&str; 4] = ["redirect_msgs", "redirect_bytes", "pass_msgs", "pass_bytes"];

fn verify(rec: &mut RunRecord, before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) {
    rec.counters_delta = after
        .iter()
        .map(|(k, v)| {
            let b = before.get(k).copied().unwrap_or(0);
            (k.clone(), *v as i64 - b as i64)
        })
        .collect();
    let d = |k: &str| rec.counters_delta.get(k).copied().unwrap_or(0);
    if !rec.ok {
        rec.verify_note = "run failed".into();
        return;
    }
    match rec.transport {
        Transport::Accel => {
            // Every byte redirected, or the rest sent by TCP because the
            // datapath's flow control switched the socket there (a reader
            // behind its budget). The bytes
            // sent by TCP are the moved ones not redirected: pass_bytes
            // under-counts (docs/known-issues.md, I-6).
            let rb = d("redirect_bytes");
            let switches = POLICY_SWITCHES.iter().map(|k| d(k)).sum::<i64>();
            rec.verified = rb > 0 && (rb >= rec.bytes_moved as i64 || switches > 0);
            rec.verify_note = format!(
                "redirect_bytes +{rb} for {} bytes moved ({:.1} % by TCP); {switches} flow-control \
                 switches to TCP; pass_bytes +{}",
                rec.bytes_moved,
                rec.tcp_share_pct().unwrap_or(0.0),
                d("pass_bytes")
            );
        }
        Transport::Tcp | Transport::Unix => {
            let moved: Vec<String> = PROOF_COUNTERS
                .iter()
                .filter(|k| d(k) != 0)
                .map(|k| format!("{k} {:+}", d(k)))
                .collect();
            rec.verified = moved.is_empty();
            rec.verify_note = if moved.is_empty() {
                "datapath counters unchanged".into()
            } else {
                format!("datapath counters moved: {}", moved.join(", "))
            };
        }
    }
    if !rec.verified {
        eprintln!(
            "accel-bench: COUNTER CHECK FAILED ({} {:?} {} B {}): {}",
            rec.placement.name(),
            rec.workload,
            rec.size,
            rec.transport.label(),
            rec.verify_note
        );
    }
}

/// Waits for both workers of a run to exit (killing both if one fails, on
/// a signal or after `deadline`) and returns their results.
pub(crate) fn finish_pair(
    client: &mut WorkerProc,
    server: &mut WorkerProc,
    deadline: Instant,
) -> Result<(WorkerOut, WorkerOut)> {
    let (mut c_done, mut s_done) = (None, None);
    while c_done.is_none() || s_done.is_none() {
        if interrupted() {
            client.kill();
            server.kill();
            bail!("interrupted");
        }
        if c_done.is_none() {
            c_done = client.child.try_wait()?;
        }
        if s_done.is_none() {
            s_done = server.child.try_wait()?;
        }
        let failed = c_done.is_some_and(|s| !s.success()) || s_done.is_some_and(|s| !s.success());
        if failed || Instant::now() > deadline {
            client.kill();
            server.kill();
            bail!(
                "{} (client {:?}, server {:?}); client stderr: {}; server stderr: {}",
                if failed { "worker failed" } else { "timed out" },
                c_done,
                s_done,
                client.stderr(),
                server.stderr()
            );
        }
        thread::sleep(Duration::from_millis(10));
    }
    Ok((client.result()?, server.result()?))
}
