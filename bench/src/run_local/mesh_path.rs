//! Part 3 of `run-local`: the meshed request path, every case in both modes
//! per placement and round, each run proven accelerated or untouched.

use std::{fs, path::Path, time::Instant};

use anyhow::Result;

use super::{
    Part, RunLocalArgs,
    kit::Kit,
    mode_word,
    usage::{ProcSample, cgroup_cpu_usec, clk_tck, daemon_pid, proc_sample},
};
use crate::{
    plan::{self, Bench, Order, drive},
    records::{
        local::{DaemonUsage, LocalProto, RunProof},
        mesh::Mode,
        placement::Placement,
    },
    topology::ProofState,
};

/// One case: payload size, connections, request rate (0: as fast as
/// possible).
#[derive(Clone, Copy)]
struct Case {
    size: usize,
    c: usize,
    qps: f64,
}

/// Where a run sits in the plan: placement, case, round (`repeat`) and
/// mode (`side`).
type Slot = plan::Slot<Case, Mode>;

/// Runs every placement (only if the mesh part was asked for) x round x
/// mode x case; returns the proof of every run and adds the daemon's CPU
/// and RSS of each accelerated round to `usage`. `ncpu` online CPUs give
/// the unpinned CPU lists; progress lines count seconds from `t0`.
pub(super) fn measure_mesh(
    kit: &mut Kit<'_>,
    a: &RunLocalArgs,
    ncpu: usize,
    t0: Instant,
    usage: &mut DaemonUsage,
) -> Result<Vec<RunProof>> {
    let cases = cases(a);
    let placements: &[Placement] = if a.parts.contains(&Part::Mesh) {
        &a.placements
    } else {
        &[]
    };
    let total = placements.len() * a.rounds * 2 * cases.len();
    eprintln!(
        "accel-bench run-local: {} placements x {} rounds x 2 modes x {} cases = {total} runs of {:.1} s",
        placements.len(),
        a.rounds,
        cases.len(),
        a.duration
    );
    let mut mesh = MeshPath {
        kit,
        a,
        ncpu,
        usage,
        proofs: Vec::new(),
        done: 0,
        total,
        t0,
        round_start: None,
    };
    drive(&mut mesh, Order::BySide, placements, &cases, a.rounds)?;
    Ok(mesh.proofs)
}

/// Every size (sorted, deduplicated) x connections x rate, in that order.
fn cases(a: &RunLocalArgs) -> Vec<Case> {
    let mut sizes = a.sizes.clone();
    sizes.sort_unstable();
    sizes.dedup();
    let mut cases = Vec::new();
    for &size in &sizes {
        for &c in &a.connections {
            for &qps in &a.qps {
                cases.push(Case { size, c, qps });
            }
        }
    }
    cases
}

/// The meshed request path measurement in progress.
struct MeshPath<'r, 'e> {
    kit: &'r mut Kit<'e>,
    a: &'r RunLocalArgs,
    ncpu: usize,
    usage: &'r mut DaemonUsage,
    proofs: Vec<RunProof>,
    /// Runs that completed (failed ones only get a proof).
    done: usize,
    total: usize,
    t0: Instant,
    /// Accelerated rounds: the daemon's pid and sample at the round's
    /// start, and when it started.
    round_start: Option<(u32, ProcSample, Instant)>,
}

impl Bench for MeshPath<'_, '_> {
    type Case = Case;
    type Side = Mode;

    /// Baseline first in even rounds, accelerated first in odd ones.
    fn sides(&self, n: usize) -> Vec<Mode> {
        Mode::abba(n).to_vec()
    }

    fn enter_placement(&mut self, placement: Placement) -> Result<()> {
        self.kit.pair.place(placement, self.ncpu)
    }

    /// Sets the mode; accelerated, samples the daemon.
    fn enter_side(&mut self, mode: Mode) -> Result<()> {
        self.kit.pair.ctl.set(mode)?;
        self.round_start = match mode {
            Mode::Accel => {
                let pid = daemon_pid(self.kit.env)?;
                Some((pid, proc_sample(pid)?, Instant::now()))
            }
            Mode::Baseline => None,
        };
        Ok(())
    }

    fn run(&mut self, slot: Slot) -> Result<()> {
        self.case(slot)
    }

    /// Accelerated, samples the daemon again; a progress line.
    fn side_done(&mut self, placement: Placement, round: usize, mode: Mode) -> Result<()> {
        if let Some((pid, d0, since)) = self.round_start.take() {
            self.record_daemon_load(pid, d0, since)?;
        }
        eprintln!(
            "accel-bench run-local: [{}] round {} {} done ({}/{} runs, {:.0} s)",
            placement.name(),
            round + 1,
            mode.label(),
            self.done,
            self.total,
            self.t0.elapsed().as_secs_f64()
        );
        Ok(())
    }
}

impl MeshPath<'_, '_> {
    /// The daemon's CPU since `d0` (taken at `since`) and its RSS now.
    fn record_daemon_load(&mut self, pid: u32, d0: ProcSample, since: Instant) -> Result<()> {
        let d1 = proc_sample(pid)?;
        let secs = since.elapsed().as_secs_f64();
        self.usage
            .load_cpu_pct
            .push((d1.cpu_ticks - d0.cpu_ticks) as f64 / clk_tck() / secs * 100.0);
        self.usage.load_rss_kib.push(d1.rss_kib);
        self.usage.max_hwm_kib = self.usage.max_hwm_kib.max(d1.hwm_kib);
        Ok(())
    }

    /// One `accel-bench load` run in pod A: the pods' cgroup CPU goes into
    /// its file, and its proof (or its failure) into the proofs.
    fn case(&mut self, slot: Slot) -> Result<()> {
        let file = self.kit.json_dir.join(self.file_name(slot));
        let extra = self.load_args(slot);
        let before = self.kit.pair.ctl.proof_state()?;
        let cpu0 = cgroup_cpu_usec(&self.kit.env.cgroup)?;
        let res = self.kit.load(&self.kit.pair.a, &extra, &file);
        let cpu1 = cgroup_cpu_usec(&self.kit.env.cgroup)?;
        let after = self.kit.pair.ctl.proof_state()?;
        let mut r = match res {
            Ok(r) => r,
            Err(e) => {
                eprintln!("accel-bench run-local: run failed: {e:#}");
                self.proofs.push(RunProof {
                    file: file.display().to_string(),
                    mode: slot.side,
                    verified: false,
                    note: format!("run failed: {e:#}"),
                });
                return Ok(());
            }
        };
        // The cgroup's CPU over the whole run (warm-up included),
        // scaled to the measured window.
        let window = self.a.duration / (self.a.duration + self.a.warmup);
        if let Some(x) = r.accel_bench.as_mut() {
            x.cpu_seconds = Some((cpu1 - cpu0) as f64 / 1e6 * window);
        }
        fs::write(&file, serde_json::to_string_pretty(&r)?)?;
        let bytes = r.accel_bench.as_ref().map_or(0, |x| x.bytes);
        self.proofs
            .push(prove(&file, slot.side, bytes, &before, &after));
        self.done += 1;
        Ok(())
    }

    fn proto(&self) -> &'static str {
        match self.a.proto {
            LocalProto::Http => "http",
            LocalProto::Tcp => "tcp",
        }
    }

    /// `<proto>-<placement>-s<size>-c<c>-q<qps|max>-<mode>-r<round>.json`.
    fn file_name(&self, slot: Slot) -> String {
        let Case { size, c, qps } = slot.case;
        let qname = if qps > 0.0 {
            format!("{qps}")
        } else {
            "max".into()
        };
        format!(
            "{}-{}-s{size}-c{c}-q{qname}-{}-r{}.json",
            self.proto(),
            slot.placement.name(),
            mode_word(slot.side),
            slot.repeat
        )
    }

    /// The `accel-bench load` arguments of one run (all but `--json`).
    fn load_args(&self, slot: Slot) -> Vec<String> {
        let Case { size, c, qps } = slot.case;
        let proto = self.proto();
        let mut extra: Vec<String> = vec![
            "--target".into(),
            self.kit.pair.b.addr_v4(self.kit.target_port).to_string(),
            "--proto".into(),
            proto.into(),
            "--size".into(),
            size.to_string(),
            "-c".into(),
            c.to_string(),
            "--qps".into(),
            qps.to_string(),
            "--duration".into(),
            self.a.duration.to_string(),
            "--warmup".into(),
            self.a.warmup.to_string(),
            "--labels".into(),
            format!(
                "mode={} proto={proto} placement={} size={size} round={}",
                mode_word(slot.side),
                slot.placement.name(),
                slot.repeat
            ),
        ];
        if self.a.proto == LocalProto::Http {
            extra.extend(["--path".into(), format!("/f{size}")]);
            extra.push("--expect-pattern".into());
        }
        if let Some(cpu) = slot.placement.cpus().0 {
            extra.extend(["--cpus".into(), cpu.to_string()]);
        }
        extra
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
