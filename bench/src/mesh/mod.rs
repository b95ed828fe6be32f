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

mod workers;
mod wrk;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::{Duration, Instant, SystemTime},
};

use accel_test_harness::{TestEnv, peak_tcp_mem_while, sha256_hex};
use anyhow::{Result, bail, ensure};
use clap::Args;

use crate::{
    host::online_cpus,
    plan::{Bench, Order, Slot, drive},
    records::{
        PEAK_SAMPLE_EVERY,
        mesh::{MeshCase, MeshConfig, MeshRecord, MeshWorkload, Mode},
        placement::Placement,
    },
    report::mesh as mesh_report,
    sandbox::{check_interrupted, install_signal_handlers},
    topology::{
        PodServer, ProofState, SidecarPair, catching_topology_panics, file_content, topology_bins,
    },
    worker,
};
use workers::{exchange, fill_worker};
use wrk::run_wrk;

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
        default_value = "one-core,unpinned"
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
    /// where they are non-blocking and the kernel's FIONREAD counts TCP
    /// bytes on sockhash sockets), `app-safe` or `all` (three legs),
    /// `proxy-only` (the sidecar-to-sidecar hop only).
    #[arg(long, default_value = "auto", value_parser = ["auto", "app-safe", "all", "proxy-only"])]
    pod_acceleration: String,
    /// The rr/stream workers' I/O: blocking, or non-blocking driven by
    /// epoll (the two kinds of application `auto` treats differently).
    #[arg(long, value_enum, default_value = "blocking")]
    worker_io: worker::IoStyle,
    /// Turn the kernel's BPF run-time statistics on for the whole benchmark
    /// and report the datapath programs' runs and run time per request,
    /// round trip or message. Every BPF program on the machine then costs
    /// a few tens of nanoseconds more a run, the baseline's runs included.
    #[arg(long)]
    bpf_stats: bool,
}

pub fn run(args: MeshArgs) -> Result<()> {
    catching_topology_panics("mesh", || mesh(args))
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

    let ncpu = online_cpus();
    let placements = Placement::usable(&args.placements, ncpu, "accel-bench mesh");
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
    // Off again when this process exits, however it exits.
    let _bpf_stats = crate::bpf_stats::BpfStats::when(args.bpf_stats)?;

    // Drop order: the pair (daemon control, pods file, node: pods,
    // sidecars, nginx), then the cgroup and pins.
    let env = TestEnv::new("mesh-bench");
    let mut pair = SidecarPair::start(
        &env,
        "mb",
        PodServer::Nginx { sizes: &sizes },
        &["--pod-acceleration", &cfg.pod_acceleration],
    )?;
    let (a, b) = (&pair.a, &pair.b);
    eprintln!(
        "accel-bench mesh: pods A {} and B {} up (haproxy sidecars, nginx pid {}); cgroup {}",
        a.ipv4,
        b.ipv4,
        pair.server_pid,
        env.cgroup.display()
    );

    // Smoke test: every file through both sidecars, both modes.
    for mode in [Mode::Baseline, Mode::Accel] {
        pair.ctl.set(mode)?;
        let before = match mode {
            Mode::Accel => pair.ctl.counters()?,
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
            let after = pair.ctl.counters()?;
            let d = after.get("redirect_bytes").copied().unwrap_or(0)
                - before.get("redirect_bytes").copied().unwrap_or(0);
            let want: usize = sizes.iter().sum();
            ensure!(
                d >= want as u64,
                "smoke test: redirect_bytes grew by {d}, less than the {want} body bytes: \
                 the mesh is not accelerated; daemon log:\n{}",
                pair.ctl.log()
            );
        }
    }
    eprintln!("accel-bench mesh: smoke test passed (curl through both sidecars, both modes)");

    let mut bench = MeshBench {
        pair: &mut pair,
        exe: &exe,
        cfg: &cfg,
        ncpu,
        t_start,
        records: Vec::new(),
    };
    drive(&mut bench, Order::ByCase, &placements, &cases, cfg.repeats)?;
    let records = bench.records;
    pair.ctl.set(Mode::Baseline)?;
    let toggles = pair.ctl.toggles();
    let log = pair.ctl.log();
    drop(pair);
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

/// The mesh runner's part of the plan: every run on the sidecar pair,
/// wrk or a worker pair, proven by the daemon's counters or its absence.
struct MeshBench<'p, 'e> {
    pair: &'p mut SidecarPair<'e>,
    /// This executable (the workers).
    exe: &'p Path,
    cfg: &'p MeshConfig,
    ncpu: usize,
    /// When the run started (progress lines, record start times).
    t_start: Instant,
    records: Vec<MeshRecord>,
}

impl Bench for MeshBench<'_, '_> {
    type Case = MeshCase;
    type Side = Mode;

    fn sides(&self, n: usize) -> Vec<Mode> {
        Mode::abba(n).to_vec()
    }

    fn enter_placement(&mut self, placement: Placement) -> Result<()> {
        self.pair.place(placement, self.ncpu)
    }

    fn enter_side(&mut self, mode: Mode) -> Result<()> {
        self.pair.ctl.set(mode)
    }

    fn run(&mut self, slot: Slot<MeshCase, Mode>) -> Result<()> {
        let Slot {
            placement,
            case,
            repeat,
            side: mode,
            seq,
        } = slot;
        let (a, b, cfg) = (&self.pair.a, &self.pair.b, self.cfg);
        let mut rec = MeshRecord::new(seq, placement, case, mode, repeat);
        rec.started_s = self.t_start.elapsed().as_secs_f64();
        let before = self.pair.ctl.proof_state()?;
        let res = match case.workload {
            MeshWorkload::Wrk => {
                run_wrk(a, b, cfg, placement, case.size).map(|w| w.fill(&mut rec, b, case.size))
            }
            MeshWorkload::Rr => exchange(a, b, self.exe, cfg, placement, case)
                .and_then(|(c, s)| fill_worker(&mut rec, case, &c, &s)),
            // What each mode queues for its speed; rr runs go without the
            // sampler, whose wake-ups would be in their latency.
            MeshWorkload::Stream => {
                let (peak, out) = peak_tcp_mem_while(PEAK_SAMPLE_EVERY, || {
                    exchange(a, b, self.exe, cfg, placement, case)
                });
                rec.peak_tcp_mem = Some(peak);
                out.and_then(|(c, s)| fill_worker(&mut rec, case, &c, &s))
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
        let after = self.pair.ctl.proof_state()?;
        verify(
            &mut rec,
            &before,
            &after,
            matches!(cfg.pod_acceleration.as_str(), "proxy-only" | "auto"),
        );
        self.records.push(rec);
        Ok(())
    }

    fn case_done(&mut self, placement: Placement, case: MeshCase) {
        eprintln!(
            "{}  [{:.0} s]",
            mesh_report::progress_line(placement, case, &self.records),
            self.t_start.elapsed().as_secs_f64()
        );
    }
}

/// `partial`: a mode where some legs carry bytes by TCP on purpose
/// (`proxy-only`: the application legs; `auto`: bytes to applications), so
/// the TCP bytes of recorded sockets count as the datapath's (`pass_bytes`
/// is only ever counted for recorded sockets). In `all` and `app-safe`
/// every leg must redirect, except a stream writer that left for TCP by
/// policy: its later bytes are counted in `stream_writer_left_bytes`
/// (docs/design.md), in every mode.
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
            // A stream writer that left for TCP by policy counts what it
            // sent afterwards in stream_writer_left_bytes, in every mode.
            let left = d("stream_writer_left_bytes");
            let carried = left + if partial { rb + d("pass_bytes") } else { rb };
            rec.verified = !rec.counters_delta.is_empty() && rb > 0 && carried >= floor as i64;
            if rec.bytes_moved > 0 {
                rec.redirected_legs = Some(rb as f64 / rec.bytes_moved as f64);
            }
            rec.verify_note = format!(
                "redirect_bytes +{rb} for {} bytes moved by the apps ({:.2} legs); pass_bytes +{}; \
                 stream_writer_left_bytes +{left}; passive_paired +{}",
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
