//! The request/response and streaming runs of `accel-bench mesh`: a worker
//! pair, the server in pod B and the client in pod A (through both
//! sidecars), pinned per placement, and their numbers in the run's record.

use std::{
    net::SocketAddr,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use accel_topology::Pod;
use anyhow::{Context, Result, bail};

use crate::{
    records::{
        mesh::{MeshCase, MeshConfig, MeshRecord, MeshWorkload},
        placement::Placement,
    },
    worker::{self, WorkerOut, Workload},
    worker_proc::{WorkerProc, finish_pair},
};

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
pub(super) fn exchange(
    a: &Pod,
    b: &Pod,
    exe: &Path,
    cfg: &MeshConfig,
    placement: Placement,
    case: MeshCase,
) -> Result<(WorkerOut, WorkerOut)> {
    let (client_cpu, server_cpu) = placement.cpus();
    let mut scmd = worker_cmd(b, exe, "server", case, cfg, server_cpu);
    scmd.args(["--listen", "0.0.0.0:0"]);
    let mut server = WorkerProc::from_command(scmd)?;
    let port = server
        .listen_addr()?
        .parse::<SocketAddr>()
        .context("server address")?
        .port();
    let mut ccmd = worker_cmd(a, exe, "client", case, cfg, client_cpu);
    ccmd.args(["--connect", &b.addr_v4(port).to_string()]);
    let mut client = WorkerProc::from_command(ccmd)?;

    let deadline = Instant::now() + cfg.warmup + cfg.duration + Duration::from_secs(60);
    finish_pair(&mut client, &mut server, deadline)
}

pub(super) fn fill_worker(
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
    let n = worker::pair_numbers(workload, case.size, client, server)?;
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
