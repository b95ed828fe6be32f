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

mod bpf_stats;
mod host;
mod load;
mod loopback;
mod mesh;
mod nonblock;
mod plan;
mod records;
mod report;
mod run_local;
mod sandbox;
mod topology;
mod units;
mod worker;
mod worker_proc;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
    Loopback(loopback::LoopbackArgs),
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
    Worker(worker::WorkerArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let res = match cli.command {
        Cmd::Worker(a) => worker::run(a),
        Cmd::Loopback(a) => loopback::run(a),
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
