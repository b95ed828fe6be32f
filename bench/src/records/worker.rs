//! What a worker pair is asked to do and what it measured: the socket
//! family, the I/O style, the workload and a pair's checked numbers. The
//! workers (`crate::worker`) produce them; the records and the reports of
//! every runner carry them.

use clap::ValueEnum;
use serde::{Deserialize, Serialize};

/// Read buffer of the streaming reader, the same for every transport.
pub const STREAM_READ_BUF: usize = 256 * 1024;

/// Socket family as seen by the worker (accelerated TCP is plain TCP in
/// another cgroup).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    Tcp,
    Unix,
}

/// How a worker does its I/O: the two kinds of application the datapath's
/// default mode treats differently (blocking ones stay on TCP).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IoStyle {
    /// Blocking sockets (threads-and-read(2) applications).
    #[default]
    Blocking,
    /// Non-blocking from socket creation (connect, accept4), waiting in
    /// epoll_wait (edge-triggered) as an event loop does.
    Epoll,
}

impl IoStyle {
    pub fn is_blocking(&self) -> bool {
        *self == IoStyle::Blocking
    }

    pub fn name(self) -> &'static str {
        match self {
            IoStyle::Blocking => "blocking",
            IoStyle::Epoll => "epoll",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Workload {
    /// Ping-pong: client writes N, server reads exactly N and writes N back.
    Rr,
    /// Client writes N-byte messages as fast as it can, server reads.
    Stream,
    /// Connection churn: a new connection per N-byte request and echo,
    /// closed by the server (setup and teardown cost).
    Churn,
}

/// What one run of a client/server pair measured, checked for integrity.
/// The loopback benchmark's records carry it as it is (its JSON fields).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PairNumbers {
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    pub mean_us: Option<f64>,
    pub min_us: Option<f64>,
    pub max_us: Option<f64>,
    /// rr: measured round trips.
    pub round_trips: Option<u64>,
    /// rr: round trips per second; churn: connections per second.
    #[serde(rename = "rts_per_s")]
    pub per_s: Option<f64>,
    pub mb_per_s: Option<f64>,
    pub measured_bytes: Option<u64>,
    pub measured_secs: Option<f64>,
    /// Application bytes written in the run, both directions, warm-up included.
    pub bytes_moved: u64,
    /// EAGAIN from send(2)/recv(2) on the blocking sockets of the run, both
    /// ends. Anything but 0 is an anomaly: the workers retried.
    pub send_eagain: u64,
    pub recv_eagain: u64,
}
