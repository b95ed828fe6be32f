//! Request/response: the client writes `size` bytes, the server reads
//! exactly that many and writes them back; latency per round trip.

use std::time::{Duration, Instant};

use anyhow::{Result, ensure};

use super::{
    WorkerOut,
    sock_io::{Conn, Eagain, drain, pattern, read_full, send_all},
};

pub(super) fn serve_rr<C: Conn>(size: usize, mut s: C, ea: &mut Eagain) -> Result<WorkerOut> {
    let mut buf = vec![0u8; size];
    let mut n = 0u64;
    while read_full(&mut s, &mut buf, ea)? {
        send_all(&mut s, &buf, ea)?;
        n += 1;
    }
    Ok(WorkerOut {
        role: "server".into(),
        rts_served: n,
        send_eagain: ea.send,
        recv_eagain: ea.recv,
        ..Default::default()
    })
}

pub(super) fn client_rr<C: Conn>(
    size: usize,
    warmup: Duration,
    duration: Duration,
    mut s: C,
    ea: &mut Eagain,
) -> Result<WorkerOut> {
    let first = pattern(size, 1);
    let out = pattern(size, 2);
    let mut back = vec![0u8; size];
    let mut echo_ok = true;
    let mut total = 0u64;

    // Warm-up (also the first content check).
    send_all(&mut s, &first, ea)?;
    ensure!(read_full(&mut s, &mut back, ea)?, "server closed");
    echo_ok &= back == first;
    total += 1;
    let start = Instant::now();
    while start.elapsed() < warmup {
        send_all(&mut s, &out, ea)?;
        ensure!(read_full(&mut s, &mut back, ea)?, "server closed");
        total += 1;
    }

    let mut lat: Vec<u64> = Vec::with_capacity(1 << 20);
    let t0 = Instant::now();
    let mut now = t0;
    while now.duration_since(t0) < duration {
        let t = now;
        send_all(&mut s, &out, ea)?;
        ensure!(read_full(&mut s, &mut back, ea)?, "server closed");
        now = Instant::now();
        lat.push(now.duration_since(t).as_nanos() as u64);
    }
    let elapsed = now.duration_since(t0);
    total += lat.len() as u64;
    echo_ok &= back == out;

    s.shutdown_write()?;
    let rest = drain(&mut s, ea)?;
    ensure!(rest == 0, "server sent {rest} unexpected bytes");

    let rts = lat.len() as u64;
    ensure!(rts > 0, "no round trip completed in the measured window");
    let mean = lat.iter().sum::<u64>() / rts;
    lat.sort_unstable();
    Ok(WorkerOut {
        role: "client".into(),
        rts_total: total,
        rts,
        elapsed_ns: elapsed.as_nanos() as u64,
        p50_ns: percentile(&lat, 50.0),
        p99_ns: percentile(&lat, 99.0),
        mean_ns: mean,
        min_ns: lat[0],
        max_ns: lat[lat.len() - 1],
        echo_ok,
        send_eagain: ea.send,
        recv_eagain: ea.recv,
        ..Default::default()
    })
}

/// Nearest-rank percentile of sorted data.
pub(super) fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}
