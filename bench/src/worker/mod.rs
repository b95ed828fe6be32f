//! The traffic: one worker process per connection end, spawned by the
//! driver (`accel-bench worker ...`, hidden) inside a cgroup and pinned to
//! a CPU. The accelerated and the plain-TCP runs execute exactly this code;
//! only the cgroup the processes live in differs.
//!
//! Protocol with the driver: the server prints `LISTEN <addr>` once it is
//! listening, every worker prints one JSON line ([`WorkerOut`]) when done.

use std::{
    io::{self, Write},
    net::TcpListener,
    os::unix::net::{UnixListener, UnixStream},
    path::PathBuf,
    time::Duration,
};

use anyhow::{Context, Result, bail, ensure};
use clap::{Args, ValueEnum};
use nix::{
    sched::{CpuSet, sched_setaffinity},
    unistd::Pid,
};
use serde::{Deserialize, Serialize};

use crate::nonblock;
pub use crate::records::worker::{Family, IoStyle, PairNumbers, Workload};

mod churn;
mod rr;
mod sock_io;
mod stream;

use rr::{client_rr, serve_rr};
use sock_io::{Conn, Eagain};
use stream::{read_stream, write_stream};

pub use crate::records::worker::STREAM_READ_BUF;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Server,
    Client,
}

#[derive(Args, Debug, Clone)]
pub struct WorkerArgs {
    #[arg(long, value_enum)]
    pub role: Role,
    #[arg(long, value_enum)]
    pub family: Family,
    #[arg(long, value_enum)]
    pub workload: Workload,
    #[arg(long)]
    pub size: usize,
    /// CPU this process pins itself to (none: no affinity set).
    #[arg(long)]
    pub cpu: Option<usize>,
    #[arg(long)]
    pub duration_ms: u64,
    #[arg(long)]
    pub warmup_ms: u64,
    /// Server: Unix socket path to listen on (family unix).
    #[arg(long)]
    pub unix_path: Option<PathBuf>,
    /// Server: TCP address to listen on (family tcp).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: String,
    /// Client: address (tcp) or path (unix) to connect to.
    #[arg(long)]
    pub connect: Option<String>,
    #[arg(long, value_enum, default_value = "blocking")]
    pub io: IoStyle,
}

/// The one JSON line a worker prints when it is done.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct WorkerOut {
    pub role: String,
    /// rr client: round trips including warm-up.
    pub rts_total: u64,
    /// rr client: measured round trips.
    pub rts: u64,
    /// rr client: measured window; stream server: measured window.
    pub elapsed_ns: u64,
    pub p50_ns: u64,
    pub p99_ns: u64,
    pub mean_ns: u64,
    pub min_ns: u64,
    pub max_ns: u64,
    /// rr client: the echo matched what was sent (first and last round trip).
    pub echo_ok: bool,
    /// rr server: round trips served.
    pub rts_served: u64,
    /// stream client.
    pub bytes_written: u64,
    /// stream server: everything read, and what fell in the measured window.
    pub bytes_read: u64,
    pub measured_bytes: u64,
    /// EAGAIN returned by send/recv on this blocking socket (must be 0).
    pub send_eagain: u64,
    pub recv_eagain: u64,
}

/// The numbers of a finished pair, after checking that the echo matched
/// (rr) or that the reader got every byte written (stream).
pub fn pair_numbers(
    workload: Workload,
    size: usize,
    client: &WorkerOut,
    server: &WorkerOut,
) -> Result<PairNumbers> {
    let mut n = PairNumbers {
        send_eagain: client.send_eagain + server.send_eagain,
        recv_eagain: client.recv_eagain + server.recv_eagain,
        ..Default::default()
    };
    match workload {
        Workload::Rr | Workload::Churn => {
            ensure!(client.echo_ok, "echoed bytes differ from what was sent");
            ensure!(
                server.rts_served == client.rts_total,
                "server served {} round trips, client made {}",
                server.rts_served,
                client.rts_total
            );
            let secs = client.elapsed_ns as f64 / 1e9;
            n.p50_us = Some(client.p50_ns as f64 / 1e3);
            n.p99_us = Some(client.p99_ns as f64 / 1e3);
            n.mean_us = Some(client.mean_ns as f64 / 1e3);
            n.min_us = Some(client.min_ns as f64 / 1e3);
            n.max_us = Some(client.max_ns as f64 / 1e3);
            n.round_trips = Some(client.rts);
            n.per_s = Some(client.rts as f64 / secs);
            n.measured_secs = Some(secs);
            n.bytes_moved = 2 * size as u64 * client.rts_total;
        }
        Workload::Stream => {
            ensure!(client.echo_ok, "reader sent unexpected bytes back");
            ensure!(
                server.bytes_read == client.bytes_written,
                "reader got {} bytes, writer wrote {}",
                server.bytes_read,
                client.bytes_written
            );
            let secs = server.elapsed_ns as f64 / 1e9;
            ensure!(secs > 0.0, "empty measured window");
            n.mb_per_s = Some(server.measured_bytes as f64 / secs / 1e6);
            n.measured_bytes = Some(server.measured_bytes);
            n.measured_secs = Some(secs);
            n.bytes_moved = client.bytes_written;
        }
    }
    Ok(n)
}

pub fn run(args: WorkerArgs) -> Result<()> {
    if let Some(cpu) = args.cpu {
        let mut set = CpuSet::new();
        set.set(cpu)
            .with_context(|| format!("cpu {cpu} out of range"))?;
        sched_setaffinity(Pid::from_raw(0), &set)
            .with_context(|| format!("pinning to cpu {cpu}"))?;
    }
    ensure!(args.size > 0, "size must be > 0");

    let out = match (args.role, args.family) {
        (Role::Server, Family::Tcp) => {
            let l =
                TcpListener::bind(&args.listen).with_context(|| format!("bind {}", args.listen))?;
            announce(&l.local_addr()?.to_string())?;
            if args.workload == Workload::Churn {
                churn::serve_tcp(&args, &l)?
            } else {
                let s = nonblock::accept(&l, args.io == IoStyle::Epoll).context("accept")?;
                drop(l);
                s.set_nodelay(true)?;
                serve(&args, s)?
            }
        }
        (Role::Server, Family::Unix) => {
            let path = args.unix_path.clone().context("--unix-path needed")?;
            let _ = std::fs::remove_file(&path);
            let l =
                UnixListener::bind(&path).with_context(|| format!("bind {}", path.display()))?;
            announce(&path.display().to_string())?;
            let out = if args.workload == Workload::Churn {
                churn::serve_unix(&args, &l)?
            } else {
                let (s, _) = l.accept().context("accept")?;
                serve(&args, nonblock::unix_styled(s, args.io == IoStyle::Epoll)?)?
            };
            drop(l);
            let _ = std::fs::remove_file(&path);
            out
        }
        (Role::Client, Family::Tcp) => {
            let addr = args.connect.clone().context("--connect needed")?;
            if args.workload == Workload::Churn {
                return print(&churn::drive_tcp(&args, &addr)?);
            }
            let s = nonblock::connect(&addr, args.io == IoStyle::Epoll)
                .with_context(|| format!("connect {addr}"))?;
            s.set_nodelay(true)?;
            drive(&args, s)?
        }
        (Role::Client, Family::Unix) => {
            let addr = args.connect.clone().context("--connect needed")?;
            if args.workload == Workload::Churn {
                return print(&churn::drive_unix(&args, &addr)?);
            }
            let s = UnixStream::connect(&addr).with_context(|| format!("connect {addr}"))?;
            drive(&args, nonblock::unix_styled(s, args.io == IoStyle::Epoll)?)?
        }
    };
    print(&out)
}

fn print(out: &WorkerOut) -> Result<()> {
    println!("{}", serde_json::to_string(out)?);
    Ok(())
}

fn announce(addr: &str) -> Result<()> {
    let mut o = io::stdout().lock();
    writeln!(o, "LISTEN {addr}")?;
    o.flush()?;
    Ok(())
}

fn serve<C: Conn>(args: &WorkerArgs, s: C) -> Result<WorkerOut> {
    let mut ea = Eagain::for_socket(args.io, &s)?;
    match args.workload {
        Workload::Rr => serve_rr(args.size, s, &mut ea),
        Workload::Stream => read_stream(Duration::from_millis(args.warmup_ms), s, &mut ea),
        Workload::Churn => bail!("churn serves on the listener, not on one connection"),
    }
}

fn drive<C: Conn>(args: &WorkerArgs, s: C) -> Result<WorkerOut> {
    let warmup = Duration::from_millis(args.warmup_ms);
    let duration = Duration::from_millis(args.duration_ms);
    let mut ea = Eagain::for_socket(args.io, &s)?;
    match args.workload {
        Workload::Rr => client_rr(args.size, warmup, duration, s, &mut ea),
        Workload::Stream => write_stream(args.size, warmup + duration, s, &mut ea),
        Workload::Churn => bail!("churn opens its own connections"),
    }
}
