//! The subcommands: both ends of each traffic shape, and their reports.
//!
//! One file per family; here, what they share: the pending list the
//! watchdog reports, threads, listeners and connects, and the report line.

mod churn;
mod closing;
mod echo;
mod stream;

use std::{
    collections::BTreeSet,
    io::Write,
    net::{SocketAddr, TcpListener, TcpStream},
    sync::Mutex,
    thread,
    time::Duration,
};

use accel_topology::sock;
use anyhow::{Context, Result, anyhow};
use serde_json::json;

use crate::owner::{self, End};

pub(crate) use churn::churn;
pub(crate) use closing::{half_close, rst};
pub(crate) use echo::{collide, echo};
pub(crate) use stream::{StreamArgs, sink, source, stream};

/// Connections not finished yet, by label: what the watchdog reports.
static PENDING: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

fn pending_add(label: &str) {
    if let Ok(mut p) = PENDING.lock() {
        p.insert(label.to_string());
    }
}

fn pending_done(label: &str) {
    if let Ok(mut p) = PENDING.lock() {
        p.remove(label);
    }
}

/// After `timeout`, prints what is still pending and exits 3: a stall is a
/// finding to report, not a hang of the test run.
pub(crate) fn start_watchdog(timeout: Duration) {
    thread::spawn(move || {
        thread::sleep(timeout);
        let pending: Vec<String> = PENDING
            .lock()
            .map(|p| p.iter().cloned().collect())
            .unwrap_or_default();
        println!(
            "{}",
            json!({ "stalled": true, "timeout_secs": timeout.as_secs(), "pending": pending })
        );
        let _ = std::io::stdout().flush();
        std::process::exit(3);
    });
}

/// 1,000 connections are 2,000 descriptors plus pipes and memfds.
pub(crate) fn raise_fd_limit() {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: get/setrlimit on our own process.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

fn spawn<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> thread::JoinHandle<T> {
    // Thousands of threads: small stacks (buffers live on the heap).
    thread::Builder::new()
        .stack_size(256 << 10)
        .spawn(f)
        .expect("spawn thread")
}

fn join<T>(h: thread::JoinHandle<Result<T>>) -> Result<T> {
    h.join().map_err(|_| anyhow!("thread panicked"))?
}

pub(crate) fn print_report(v: &serde_json::Value) -> Result<()> {
    println!("{v}");
    std::io::stdout().flush()?;
    Ok(())
}

fn connect_addr(l: &TcpListener) -> Result<SocketAddr> {
    let a = l.local_addr()?;
    Ok(if a.ip().is_unspecified() {
        SocketAddr::new([127, 0, 0, 1].into(), a.port())
    } else {
        a
    })
}

fn listen(addr: SocketAddr) -> Result<TcpListener> {
    // SO_REUSEADDR and a backlog of 1024 (std's is 128): bursts of connects.
    owner::created_by(End::Server, || sock::listen(addr)).with_context(|| format!("listen {addr}"))
}

/// A client connection, owned by the proxy's user if the client end is the sidecar.
fn connect(to: SocketAddr) -> std::io::Result<TcpStream> {
    owner::created_by(End::Client, || TcpStream::connect(to))
}
