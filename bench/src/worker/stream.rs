//! Streaming: the client writes `size`-byte messages for the whole run,
//! the server reads to EOF and measures what arrived in its window.

use std::time::{Duration, Instant};

use anyhow::Result;

use super::{
    STREAM_READ_BUF, WorkerOut,
    sock_io::{Conn, Eagain, drain, pattern, recv, send_all},
};

pub(super) fn write_stream<C: Conn>(
    size: usize,
    run_for: Duration,
    mut s: C,
    ea: &mut Eagain,
) -> Result<WorkerOut> {
    let msg = pattern(size, 3);
    let mut written = 0u64;
    let start = Instant::now();
    while start.elapsed() < run_for {
        send_all(&mut s, &msg, ea)?;
        written += size as u64;
    }
    s.shutdown_write()?;
    // Wait for the reader to drain everything and close.
    let rest = drain(&mut s, ea)?;
    Ok(WorkerOut {
        role: "client".into(),
        bytes_written: written,
        echo_ok: rest == 0,
        send_eagain: ea.send,
        recv_eagain: ea.recv,
        ..Default::default()
    })
}

/// Reads to EOF. The measured window starts `warmup` after the first byte
/// and ends at EOF, so bytes still queued when the writer stops count, with
/// the time it takes to read them.
pub(super) fn read_stream<C: Conn>(
    warmup: Duration,
    mut s: C,
    ea: &mut Eagain,
) -> Result<WorkerOut> {
    let mut buf = vec![0u8; STREAM_READ_BUF];
    let mut total = 0u64;
    let mut first: Option<Instant> = None;
    let mut mark: Option<(Instant, u64)> = None;
    loop {
        let n = recv(&mut s, &mut buf, ea)?;
        if n == 0 {
            break;
        }
        let now = Instant::now();
        total += n as u64;
        let f = *first.get_or_insert(now);
        if mark.is_none() && now.duration_since(f) >= warmup {
            // Bytes returned by this read arrived before `now`: not in the window.
            mark = Some((now, total));
        }
    }
    let end = Instant::now();
    let (t0, before) = mark.unwrap_or((first.unwrap_or(end), 0));
    Ok(WorkerOut {
        role: "server".into(),
        bytes_read: total,
        measured_bytes: total - before,
        elapsed_ns: end.duration_since(t0).as_nanos() as u64,
        send_eagain: ea.send,
        recv_eagain: ea.recv,
        ..Default::default()
    })
}
