//! Connection churn: the client opens a connection, sends `size` bytes,
//! reads them echoed and then the server's close, and opens the next one.
//! What it measures is a connection's setup and teardown: the handshake,
//! the datapath recording both ends (sock_ops) and removing them on close.
//!
//! The server closes first, so TIME_WAIT stays on the listener's side and
//! the client never runs out of ephemeral ports. The client ends the run
//! with one more connection that carries the stop pattern.

use std::{
    net::{TcpListener, TcpStream},
    os::unix::net::{UnixListener, UnixStream},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, ensure};

use super::{
    IoStyle, WorkerArgs, WorkerOut,
    rr::percentile,
    sock_io::{Conn, Eagain, drain, pattern, read_full, send_all},
};
use crate::nonblock;

/// Salt of the request that ends the server's accept loop.
const STOP_SALT: u8 = 9;
/// Salt of every other request.
const REQUEST_SALT: u8 = 4;

pub(super) fn serve_tcp(args: &WorkerArgs, l: &TcpListener) -> Result<WorkerOut> {
    let nonblocking = args.io == IoStyle::Epoll;
    serve(args, || {
        let s = nonblock::accept(l, nonblocking).context("accept")?;
        s.set_nodelay(true)?;
        Ok(s)
    })
}

pub(super) fn serve_unix(args: &WorkerArgs, l: &UnixListener) -> Result<WorkerOut> {
    let nonblocking = args.io == IoStyle::Epoll;
    serve(args, || {
        let (s, _) = l.accept().context("accept")?;
        Ok(nonblock::unix_styled(s, nonblocking)?)
    })
}

pub(super) fn drive_tcp(args: &WorkerArgs, addr: &str) -> Result<WorkerOut> {
    let nonblocking = args.io == IoStyle::Epoll;
    drive(args, || {
        let s: TcpStream =
            nonblock::connect(addr, nonblocking).with_context(|| format!("connect {addr}"))?;
        s.set_nodelay(true)?;
        Ok(s)
    })
}

pub(super) fn drive_unix(args: &WorkerArgs, path: &str) -> Result<WorkerOut> {
    let nonblocking = args.io == IoStyle::Epoll;
    drive(args, || {
        let s = UnixStream::connect(path).with_context(|| format!("connect {path}"))?;
        Ok(nonblock::unix_styled(s, nonblocking)?)
    })
}

/// Echoes one request per connection and closes, until the stop pattern.
fn serve<C: Conn>(args: &WorkerArgs, mut accept: impl FnMut() -> Result<C>) -> Result<WorkerOut> {
    let stop = pattern(args.size, STOP_SALT);
    let mut buf = vec![0u8; args.size];
    let mut out = WorkerOut {
        role: "server".into(),
        ..Default::default()
    };
    loop {
        let mut s = accept()?;
        let mut ea = Eagain::for_socket(args.io, &s)?;
        ensure!(
            read_full(&mut s, &mut buf, &mut ea)?,
            "client closed before its request"
        );
        send_all(&mut s, &buf, &mut ea)?;
        out.send_eagain += ea.send;
        out.recv_eagain += ea.recv;
        if buf == stop {
            return Ok(out);
        }
        out.rts_served += 1;
    }
}

/// Connections one after another for warm-up plus duration; the latency
/// of each measured one runs from socket creation to the server's close.
fn drive<C: Conn>(args: &WorkerArgs, mut connect: impl FnMut() -> Result<C>) -> Result<WorkerOut> {
    let warmup = Duration::from_millis(args.warmup_ms);
    let duration = Duration::from_millis(args.duration_ms);
    let request = pattern(args.size, REQUEST_SALT);
    let mut back = vec![0u8; args.size];
    let mut out = WorkerOut {
        role: "client".into(),
        echo_ok: true,
        ..Default::default()
    };
    let mut one = |req: &[u8], out: &mut WorkerOut| -> Result<()> {
        let mut s = connect()?;
        let mut ea = Eagain::for_socket(args.io, &s)?;
        send_all(&mut s, req, &mut ea)?;
        ensure!(read_full(&mut s, &mut back, &mut ea)?, "server closed");
        out.echo_ok &= back == req;
        let rest = drain(&mut s, &mut ea)?;
        ensure!(rest == 0, "server sent {rest} unexpected bytes");
        out.send_eagain += ea.send;
        out.recv_eagain += ea.recv;
        Ok(())
    };

    let start = Instant::now();
    while start.elapsed() < warmup {
        one(&request, &mut out)?;
        out.rts_total += 1;
    }
    let mut lat: Vec<u64> = Vec::with_capacity(1 << 16);
    let t0 = Instant::now();
    let mut now = t0;
    while now.duration_since(t0) < duration {
        let t = now;
        one(&request, &mut out)?;
        now = Instant::now();
        lat.push(now.duration_since(t).as_nanos() as u64);
    }
    out.rts_total += lat.len() as u64;
    one(&pattern(args.size, STOP_SALT), &mut out)?;

    ensure!(
        !lat.is_empty(),
        "no connection completed in the measured window"
    );
    out.rts = lat.len() as u64;
    out.elapsed_ns = now.duration_since(t0).as_nanos() as u64;
    out.mean_ns = lat.iter().sum::<u64>() / out.rts;
    lat.sort_unstable();
    out.p50_ns = percentile(&lat, 50.0);
    out.p99_ns = percentile(&lat, 99.0);
    out.min_ns = lat[0];
    out.max_ns = lat[lat.len() - 1];
    Ok(out)
}
