//! Traffic drivers for the reliability tests (tests/tests/integrity.rs,
//! isolation.rs, churn.rs). Each subcommand runs both ends in this one
//! process (or, for `collide` against remote echo servers, the client end),
//! so a test places all of it in its private cgroup or pod namespace.
//!
//! Every byte is checked against a per-connection, position-dependent
//! stream (see `pattern`); each subcommand prints one JSON report line and
//! exits non-zero if anything went wrong, or with code 3 when its watchdog
//! finds connections stalled.

mod app_proxy;
mod commands;
mod io;
mod owner;

use std::{net::SocketAddr, time::Duration};

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::io::{RecvMode, SendMode};

#[derive(Parser, Debug)]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
    /// Give up (print what stalled, exit 3) after this long.
    #[arg(long, default_value_t = 300, global = true)]
    timeout_secs: u64,
    /// The end whose sockets belong to the sidecar proxy's user (uid 1337):
    /// the other end is the application, to the datapath's default mode.
    #[arg(long, value_enum, global = true)]
    sidecar_end: Option<owner::End>,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// One-way streams for every (send mode, receive mode) pair given.
    Stream {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        #[arg(long, value_delimiter = ',', required = true)]
        send: Vec<SendMode>,
        #[arg(long, value_delimiter = ',', required = true)]
        recv: Vec<RecvMode>,
        /// Connections per pair.
        #[arg(long, default_value_t = 2)]
        conns: usize,
        /// Bytes per connection.
        #[arg(long, default_value_t = 1 << 20)]
        bytes: u64,
        /// Largest message (sizes are log-uniform from 1 B).
        #[arg(long, default_value_t = 4 << 20)]
        max_msg: u64,
        /// Smallest message: smaller sizes are raised to it.
        #[arg(long, default_value_t = 1)]
        min_msg: u64,
        /// Largest read request.
        #[arg(long, default_value_t = 256 << 10)]
        max_read: usize,
        /// The reader sleeps this long after each read (a slow reader).
        #[arg(long, default_value_t = 0)]
        delay_us: u64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// The receiving half of `stream` alone (e.g. in another pod): prints
    /// "listening", reads `conns` streams to EOF, checks every byte.
    Sink {
        #[arg(long)]
        listen: SocketAddr,
        #[arg(long)]
        conns: usize,
        /// Bytes each stream must carry.
        #[arg(long)]
        bytes: u64,
        #[arg(long, value_enum, default_value = "read")]
        recv: RecvMode,
        #[arg(long, default_value_t = 256 << 10)]
        max_read: usize,
        #[arg(long, default_value_t = 0)]
        delay_us: u64,
    },
    /// The sending half of `stream` alone: `conns` connections to `connect`.
    Source {
        #[arg(long)]
        connect: SocketAddr,
        #[arg(long)]
        conns: usize,
        #[arg(long)]
        bytes: u64,
        #[arg(long, value_enum, default_value = "write")]
        send: SendMode,
        #[arg(long, default_value_t = 65536)]
        max_msg: u64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Many concurrent echo connections with random message sizes; every
    /// connection is established before any traffic starts.
    Echo {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        #[arg(long, default_value_t = 1000)]
        conns: usize,
        /// Messages per connection after the first two (1 B and the maximum).
        #[arg(long, default_value_t = 6)]
        msgs: usize,
        #[arg(long, default_value_t = 64 << 10)]
        max_msg: u64,
        /// The first `big_conns` connections use messages up to `big_max`.
        #[arg(long, default_value_t = 16)]
        big_conns: usize,
        #[arg(long, default_value_t = 4 << 20)]
        big_max: u64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Every client reads with this mode (default: modes that never wait
        /// in a read, in turn).
        #[arg(long, value_enum)]
        recv: Option<RecvMode>,
    },
    /// Half-close: one side sends and shuts down writing, the other reads to
    /// EOF, then answers and shuts down; the first reads the answer to EOF.
    HalfClose {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        #[arg(long, default_value_t = 50)]
        conns: usize,
        #[arg(long, default_value_t = 256 << 10)]
        bytes: u64,
        /// Who shuts down first: the connecting side or the accepting side.
        #[arg(long, value_enum)]
        first: Side,
        /// Receive mode of both sides.
        #[arg(long, value_enum, default_value = "read")]
        recv: RecvMode,
    },
    /// Streams where some connections are reset (SO_LINGER 0 close) mid-way.
    Rst {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        #[arg(long, default_value_t = 100)]
        conns: usize,
        #[arg(long, default_value_t = 4 << 20)]
        bytes: u64,
        /// Every n-th connection is reset, alternately by sender and reader.
        #[arg(long, default_value_t = 4)]
        every: usize,
        /// Receive mode of the readers.
        #[arg(long, value_enum, default_value = "read")]
        recv: RecvMode,
    },
    /// Echo connections from fixed source addresses to every target, all
    /// open at once (4-tuple collisions), each with its own stream.
    Collide {
        /// Echo servers to run in this process first.
        #[arg(long)]
        listen: Vec<SocketAddr>,
        #[arg(long, required = true)]
        source: Vec<SocketAddr>,
        #[arg(long, required = true)]
        connect: Vec<SocketAddr>,
        #[arg(long, default_value_t = 65536)]
        bytes: u64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Print "established N", wait for a stdin line before the traffic,
        /// and after the report keep every connection open until stdin closes.
        #[arg(long)]
        hold: bool,
    },
    /// An application and its sidecar (see app_proxy.rs).
    AppProxy(app_proxy::AppProxyArgs),
    /// Short connections (connect, echo a few bytes, close) as fast as
    /// `threads` clients can, against in-process servers.
    Churn {
        #[arg(long, required = true)]
        listen: Vec<SocketAddr>,
        #[arg(long, default_value_t = 4)]
        threads: usize,
        #[arg(long, default_value_t = 10_000)]
        duration_ms: u64,
        #[arg(long, default_value_t = 64)]
        bytes: usize,
        /// Each client sleeps this long after each connection (0: none).
        #[arg(long, default_value_t = 0)]
        pause_ms: u64,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
enum Side {
    Client,
    Server,
}

fn main() -> Result<()> {
    let args = Args::parse();
    owner::set_sidecar_end(args.sidecar_end);
    commands::raise_fd_limit();
    commands::start_watchdog(Duration::from_secs(args.timeout_secs));
    match args.cmd {
        Cmd::AppProxy(a) => app_proxy::app_proxy(a),
        Cmd::Stream {
            listen,
            send,
            recv,
            conns,
            bytes,
            max_msg,
            min_msg,
            max_read,
            delay_us,
            seed,
        } => commands::stream(commands::StreamArgs {
            listen,
            send,
            recv,
            conns,
            bytes,
            max_msg,
            min_msg,
            max_read,
            delay: Duration::from_micros(delay_us),
            seed,
        }),
        Cmd::Sink {
            listen,
            conns,
            bytes,
            recv,
            max_read,
            delay_us,
        } => commands::sink(
            listen,
            conns,
            bytes,
            recv,
            max_read,
            Duration::from_micros(delay_us),
        ),
        Cmd::Source {
            connect,
            conns,
            bytes,
            send,
            max_msg,
            seed,
        } => commands::source(connect, conns, bytes, send, max_msg, seed),
        Cmd::Echo {
            listen,
            conns,
            msgs,
            max_msg,
            big_conns,
            big_max,
            seed,
            recv,
        } => commands::echo(listen, conns, msgs, max_msg, big_conns, big_max, seed, recv),
        Cmd::HalfClose {
            listen,
            conns,
            bytes,
            first,
            recv,
        } => commands::half_close(listen, conns, bytes, first == Side::Client, recv),
        Cmd::Rst {
            listen,
            conns,
            bytes,
            every,
            recv,
        } => commands::rst(listen, conns, bytes, every, recv),
        Cmd::Collide {
            listen,
            source,
            connect,
            bytes,
            seed,
            hold,
        } => commands::collide(&listen, &source, &connect, bytes, seed, hold),
        Cmd::Churn {
            listen,
            threads,
            duration_ms,
            bytes,
            pause_ms,
        } => commands::churn(
            &listen,
            threads,
            Duration::from_millis(duration_ms),
            bytes,
            Duration::from_millis(pause_ms),
        ),
    }
}
