//! `stream`, `sink` and `source`: one-way seeded streams for every (send
//! mode, receive mode) pair, both ends here or the two halves apart.

use std::{
    collections::BTreeMap,
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    os::fd::AsRawFd,
    time::Duration,
};

use accel_test_harness::pattern::Rng;
use anyhow::{Context, Result, anyhow, bail, ensure};
use serde::Serialize;
use serde_json::json;

use super::{connect, connect_addr, join, listen, pending_add, pending_done, print_report, spawn};
use crate::io::{self, RecvEnd, RecvMode, RecvStats, SendMode};

pub(crate) struct StreamArgs {
    pub(crate) listen: SocketAddr,
    pub(crate) send: Vec<SendMode>,
    pub(crate) recv: Vec<RecvMode>,
    pub(crate) conns: usize,
    pub(crate) bytes: u64,
    pub(crate) max_msg: u64,
    pub(crate) min_msg: u64,
    pub(crate) max_read: usize,
    pub(crate) delay: Duration,
    pub(crate) seed: u64,
}

#[derive(Default, Serialize)]
struct PairReport {
    conns: usize,
    bytes_sent: u64,
    bytes_received: u64,
    reads: u64,
    empty_wakeups: u64,
    /// Each writer's TCP_NOTSENT_LOWAT once its reader has read everything.
    notsent_lowat: Vec<i32>,
    errors: Vec<String>,
}

/// TCP_NOTSENT_LOWAT of `s` (0: TCP's own, the sysctl's).
fn notsent_lowat(s: &TcpStream) -> Result<i32> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `v` and `len` outlive the call and match its contract.
    let r = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_NOTSENT_LOWAT,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    ensure!(
        r == 0,
        "getsockopt(TCP_NOTSENT_LOWAT): {}",
        std::io::Error::last_os_error()
    );
    Ok(v)
}

/// Opens a `stream` or `source` connection: a 16-byte header (the seed,
/// little-endian, then the index of the receive mode the reader is to use),
/// then `bytes` of the seed's pattern in messages of up to `max_msg`.
fn send_seeded(
    s: &mut TcpStream,
    seed: u64,
    recv_index: u8,
    bytes: u64,
    (min_msg, max_msg): (u64, u64),
    mode: SendMode,
) -> Result<()> {
    let mut hdr = [0u8; 16];
    hdr[..8].copy_from_slice(&seed.to_le_bytes());
    hdr[8] = recv_index;
    s.write_all(&hdr).context("send the header")?;
    let mut rng = Rng::new(seed);
    let sizes = io::message_sizes_from(bytes, min_msg, max_msg, &mut rng);
    io::send_stream(s.as_raw_fd(), seed, &sizes, mode, &mut rng)
}

/// The seed and receive-mode index of `send_seeded`'s header.
fn read_header(s: &mut TcpStream) -> Result<(u64, u8)> {
    let mut hdr = [0u8; 16];
    s.read_exact(&mut hdr).context("read the header")?;
    Ok((u64::from_le_bytes(hdr[..8].try_into()?), hdr[8]))
}

/// Reads the rest of a `send_seeded` stream to EOF, checking every byte
/// against the seed's pattern.
fn recv_seeded(
    s: &TcpStream,
    seed: u64,
    mode: RecvMode,
    max_read: usize,
    delay: Duration,
) -> Result<std::result::Result<RecvStats, RecvEnd>> {
    let mut rng = Rng::new(seed ^ 0xabc);
    io::recv_stream(
        s.as_raw_fd(),
        seed,
        0,
        mode,
        max_read,
        delay,
        None,
        &mut rng,
    )
}

pub(crate) fn stream(a: StreamArgs) -> Result<()> {
    let listener = listen(a.listen)?;
    let target = connect_addr(&listener)?;
    let pairs: Vec<(SendMode, RecvMode)> = a
        .send
        .iter()
        .flat_map(|s| a.recv.iter().map(move |r| (*s, *r)))
        .collect();
    let total_conns = pairs.len() * a.conns;
    let (max_read, delay) = (a.max_read, a.delay);
    let server = spawn(move || -> Result<Vec<(u64, Result<RecvStats>)>> {
        let mut readers = Vec::new();
        for _ in 0..total_conns {
            let (mut s, _) = listener.accept()?;
            readers.push(spawn(move || -> Result<(u64, Result<RecvStats>)> {
                let (seed, mode) = read_header(&mut s)?;
                let mode = RecvMode::from_index(mode).ok_or_else(|| anyhow!("bad mode"))?;
                let r = recv_seeded(&s, seed, mode, max_read, delay).and_then(|r| match r {
                    Ok(st) => Ok(st),
                    Err(RecvEnd::Reset(st)) => bail!("reset after {} bytes", st.bytes),
                });
                Ok((seed, r))
            }));
        }
        readers.into_iter().map(join).collect()
    });
    let mut writers = Vec::new();
    for (pi, (send, recv)) in pairs.iter().enumerate() {
        for c in 0..a.conns {
            let seed = a.seed * 1_000_000 + (pi * a.conns + c) as u64;
            let (send, recv, bytes, msgs) = (*send, *recv, a.bytes, (a.min_msg, a.max_msg));
            let label = format!("{send:?}->{recv:?} #{c} (seed {seed})");
            pending_add(&label);
            writers.push((
                pi,
                // The socket stays open, write side shut, until its reader
                // is done: its options are read then.
                spawn(move || -> Result<TcpStream> {
                    let mut s = connect(target).context("connect")?;
                    send_seeded(&mut s, seed, recv.index(), bytes, msgs, send)
                        .with_context(|| format!("{send:?}"))?;
                    s.shutdown(std::net::Shutdown::Write).context("shutdown")?;
                    Ok(s)
                }),
                label,
            ));
        }
    }
    let mut reports: BTreeMap<String, PairReport> = BTreeMap::new();
    let key = |pi: usize| format!("{:?}->{:?}", pairs[pi].0, pairs[pi].1);
    let mut seed_pair = BTreeMap::new();
    let mut sockets = Vec::new();
    for (pi, w, label) in writers {
        let r = reports.entry(key(pi)).or_default();
        r.conns += 1;
        match join(w) {
            Ok(s) => {
                r.bytes_sent += a.bytes;
                sockets.push((pi, s));
            }
            Err(e) => r.errors.push(format!("sender: {e:#}")),
        }
        let seed = label
            .rsplit("seed ")
            .next()
            .and_then(|s| s.trim_end_matches(')').parse::<u64>().ok())
            .unwrap_or(0);
        seed_pair.insert(seed, (pi, label));
    }
    let received = join(server)?;
    let mut errors = 0;
    for (seed, r) in received {
        let Some((pi, label)) = seed_pair.get(&seed) else {
            bail!("a reader got unknown seed {seed}");
        };
        let rep = reports.entry(key(*pi)).or_default();
        match r {
            Ok(st) => {
                rep.bytes_received += st.bytes;
                rep.reads += st.reads;
                rep.empty_wakeups += st.empty_wakeups;
                if st.bytes != a.bytes {
                    rep.errors
                        .push(format!("receiver: {} of {} bytes", st.bytes, a.bytes));
                }
            }
            Err(e) => rep.errors.push(format!("receiver: {e:#}")),
        }
        pending_done(label);
    }
    for (pi, s) in sockets {
        let rep = reports.entry(key(pi)).or_default();
        match notsent_lowat(&s) {
            Ok(v) => rep.notsent_lowat.push(v),
            Err(e) => rep.errors.push(format!("sender: {e:#}")),
        }
    }
    for r in reports.values() {
        errors += r.errors.len();
    }
    print_report(&json!({ "pairs": reports, "errors": errors }))?;
    ensure!(errors == 0, "{errors} errors");
    Ok(())
}

// ---------------------------------------------------------------------------
// sink and source: the two halves of `stream` in different places
// ---------------------------------------------------------------------------

pub(crate) fn sink(
    at: SocketAddr,
    conns: usize,
    bytes: u64,
    mode: RecvMode,
    max_read: usize,
    delay: Duration,
) -> Result<()> {
    let l = listen(at)?;
    println!("listening");
    std::io::stdout().flush()?;
    let mut readers = Vec::new();
    for i in 0..conns {
        let (mut s, _) = l.accept()?;
        let label = format!("reader #{i}");
        pending_add(&label);
        readers.push(spawn(move || -> Result<RecvStats> {
            // The sink reads as its own --recv says, whatever the header asks.
            let (seed, _) = read_header(&mut s)?;
            let r = recv_seeded(&s, seed, mode, max_read, delay)
                .with_context(|| format!("stream {seed}"))?;
            pending_done(&label);
            match r {
                Ok(st) if st.bytes == bytes => Ok(st),
                Ok(st) => bail!("stream {seed}: {} of {bytes} bytes", st.bytes),
                Err(RecvEnd::Reset(st)) => bail!("stream {seed}: reset after {} bytes", st.bytes),
            }
        }));
    }
    let mut errors = Vec::new();
    let mut received = 0;
    for r in readers {
        match join(r) {
            Ok(st) => received += st.bytes,
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    print_report(&json!({ "conns": conns, "bytes_received": received, "errors": errors }))?;
    ensure!(errors.is_empty(), "{} readers failed", errors.len());
    Ok(())
}

pub(crate) fn source(
    to: SocketAddr,
    conns: usize,
    bytes: u64,
    mode: SendMode,
    max_msg: u64,
    seed: u64,
) -> Result<()> {
    let writers: Vec<_> = (0..conns as u64)
        .map(|c| {
            let seed = seed * 1_000_000 + c;
            spawn(move || -> Result<()> {
                let mut s = connect(to).with_context(|| format!("connect {to}"))?;
                send_seeded(&mut s, seed, 0, bytes, (1, max_msg), mode)
                    .with_context(|| format!("stream {seed}"))
            })
        })
        .collect();
    let errors: Vec<String> = writers
        .into_iter()
        .filter_map(|w| join(w).err().map(|e| format!("{e:#}")))
        .collect();
    print_report(&json!({ "conns": conns, "bytes_each": bytes, "errors": errors }))?;
    ensure!(errors.is_empty(), "{} writers failed", errors.len());
    Ok(())
}
