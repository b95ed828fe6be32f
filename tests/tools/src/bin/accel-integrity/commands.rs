//! The subcommands: both ends of each traffic shape, and their reports.

use std::{
    collections::{BTreeMap, BTreeSet},
    io::{BufRead, Read, Write},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    os::fd::AsRawFd,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use accel_test_harness::pattern::{self, Rng};
use accel_topology::sock;
use anyhow::{Context, Result, anyhow, bail, ensure};
use serde::Serialize;
use serde_json::json;

use crate::{
    io::{self, RecvEnd, RecvMode, RecvStats, SendMode},
    owner::{self, End},
};

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
pub fn start_watchdog(timeout: Duration) {
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
pub fn raise_fd_limit() {
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

// ---------------------------------------------------------------------------
// stream: every (send, receive) pair
// ---------------------------------------------------------------------------

pub struct StreamArgs {
    pub listen: SocketAddr,
    pub send: Vec<SendMode>,
    pub recv: Vec<RecvMode>,
    pub conns: usize,
    pub bytes: u64,
    pub max_msg: u64,
    pub min_msg: u64,
    pub max_read: usize,
    pub delay: Duration,
    pub seed: u64,
}

#[derive(Default, Serialize)]
struct PairReport {
    conns: usize,
    bytes_sent: u64,
    bytes_received: u64,
    reads: u64,
    empty_wakeups: u64,
    errors: Vec<String>,
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

pub fn stream(a: StreamArgs) -> Result<()> {
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
                spawn(move || -> Result<u64> {
                    let mut s = connect(target).context("connect")?;
                    send_seeded(&mut s, seed, recv.index(), bytes, msgs, send)
                        .with_context(|| format!("{send:?}"))?;
                    Ok(bytes)
                }),
                label,
            ));
        }
    }
    let mut reports: BTreeMap<String, PairReport> = BTreeMap::new();
    let key = |pi: usize| format!("{:?}->{:?}", pairs[pi].0, pairs[pi].1);
    let mut seed_pair = BTreeMap::new();
    for (pi, w, label) in writers {
        let r = reports.entry(key(pi)).or_default();
        r.conns += 1;
        match join(w) {
            Ok(b) => r.bytes_sent += b,
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

pub fn sink(
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

pub fn source(
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

// ---------------------------------------------------------------------------
// echo: many concurrent connections, random sizes, mixed interfaces
// ---------------------------------------------------------------------------

/// Errors of the in-process echo servers: part of every report that uses
/// them, since a server that fails closes its connection and the client
/// alone would only see an early EOF.
static SERVER_ERRORS: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn server_errors() -> Vec<String> {
    SERVER_ERRORS.lock().map(|e| e.clone()).unwrap_or_default()
}

/// Echo servers wait in poll() on EAGAIN (see `echo --server-polls`).
static ECHO_SERVER_POLLS: AtomicBool = AtomicBool::new(false);

pub fn set_echo_server_polls(on: bool) {
    ECHO_SERVER_POLLS.store(on, Ordering::Relaxed);
}

fn echo_serve(mut s: TcpStream) -> Result<()> {
    let mut buf = vec![0u8; 64 << 10];
    let mut echoed = 0u64;
    loop {
        let n = match s.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    && ECHO_SERVER_POLLS.load(Ordering::Relaxed) =>
            {
                io::poll_fd(s.as_raw_fd(), libc::POLLIN, Duration::from_secs(30))?;
                continue;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => bail!(
                "echo server: a BLOCKING read returned EAGAIN after {echoed} bytes \
                 (tcp_bpf_recvmsg wake-up without data)"
            ),
            Err(e) => return Err(e).context(format!("echo server read after {echoed} bytes")),
        };
        s.write_all(&buf[..n])
            .with_context(|| format!("echo server write after {echoed} bytes"))?;
        echoed += n as u64;
    }
}

/// Echo servers on `listeners`, one thread per connection, until the
/// process exits.
fn start_echo_servers(listeners: Vec<TcpListener>) {
    for l in listeners {
        spawn(move || {
            for s in l.incoming().flatten() {
                let peer = s.peer_addr().map(|a| a.to_string()).unwrap_or_default();
                spawn(move || {
                    if let Err(e) = echo_serve(s)
                        && let Ok(mut errs) = SERVER_ERRORS.lock()
                    {
                        errs.push(format!("server for {peer}: {e:#}"));
                    }
                });
            }
        });
    }
}

#[allow(clippy::too_many_arguments)]
pub fn echo(
    listen_at: SocketAddr,
    conns: usize,
    msgs: usize,
    max_msg: u64,
    big_conns: usize,
    big_max: u64,
    seed: u64,
    only_recv: Option<RecvMode>,
) -> Result<()> {
    let l = listen(listen_at)?;
    let target = connect_addr(&l)?;
    start_echo_servers(vec![l]);
    let started = Instant::now();
    let streams: Vec<TcpStream> = (0..conns)
        .map(|i| connect(target).with_context(|| format!("connect #{i}")))
        .collect::<Result<_>>()?;
    let established_ms = started.elapsed().as_millis();
    let sizes_of = |i: usize| {
        let mut rng = Rng::new(seed * 1_000_000 + i as u64);
        let max = if i < big_conns { big_max } else { max_msg };
        let mut sizes = vec![1, max];
        sizes.extend((0..msgs).map(|_| rng.log_size(max)));
        sizes
    };
    let total: u64 = (0..conns).map(|i| sizes_of(i).iter().sum::<u64>()).sum();
    let started = Instant::now();
    let mut workers = Vec::new();
    let recv_modes: Vec<RecvMode> = RecvMode::ALL
        .iter()
        .copied()
        .filter(|m| *m != RecvMode::Splice)
        .collect();
    for (i, s) in streams.into_iter().enumerate() {
        let cseed = seed * 1_000_000 + i as u64;
        let sizes = sizes_of(i);
        let bytes: u64 = sizes.iter().sum();
        let send = SendMode::ALL[i % SendMode::ALL.len()];
        let recv = only_recv.unwrap_or(recv_modes[(i / SendMode::ALL.len()) % recv_modes.len()]);
        let label = format!("#{i} {send:?}/{recv:?}");
        pending_add(&label);
        let w = s.try_clone()?;
        let writer = spawn(move || -> Result<()> {
            let mut rng = Rng::new(cseed ^ 1);
            io::send_stream(w.as_raw_fd(), cseed, &sizes, send, &mut rng)
        });
        workers.push(spawn(move || -> Result<()> {
            let mut rng = Rng::new(cseed ^ 2);
            let r = io::recv_stream(
                s.as_raw_fd(),
                cseed,
                0,
                recv,
                256 << 10,
                Duration::ZERO,
                Some(bytes),
                &mut rng,
            );
            if !matches!(&r, Ok(Ok(st)) if st.bytes == bytes) {
                // The reader gave up: unblock the writer (its echo would
                // never be read) so the error is reported, not a hang.
                let _ = s.shutdown(Shutdown::Both);
            }
            let w = join(writer).context("sender");
            let st = match r? {
                Ok(st) => st,
                Err(RecvEnd::Reset(st)) => bail!("reset after {} bytes", st.bytes),
            };
            ensure!(
                st.bytes == bytes,
                "echo: EOF after {} of {bytes} bytes (sender: {})",
                st.bytes,
                w.as_ref()
                    .map(|_| "ok".to_string())
                    .unwrap_or_else(|e| format!("{e:#}"))
            );
            w?;
            pending_done(&label);
            Ok(())
        }));
    }
    let mut errors: Vec<String> = workers
        .into_iter()
        .enumerate()
        .filter_map(|(i, w)| join(w).err().map(|e| format!("#{i}: {e:#}")))
        .collect();
    errors.extend(server_errors());
    print_report(&json!({
        "conns": conns,
        "bytes_each_way": total,
        "established_ms": established_ms,
        "elapsed_ms": started.elapsed().as_millis(),
        "errors": errors,
    }))?;
    ensure!(errors.is_empty(), "{} connections failed", errors.len());
    Ok(())
}

// ---------------------------------------------------------------------------
// half-close
// ---------------------------------------------------------------------------

/// One side of a half-close conversation: `first` sends, shuts down
/// writing, then reads the answer to EOF; the other reads to EOF first.
fn converse(
    s: &TcpStream,
    first: bool,
    mine: u64,
    theirs: u64,
    bytes: u64,
    mode: RecvMode,
) -> Result<RecvStats> {
    let mut rng = Rng::new(mine);
    let sizes = io::message_sizes(bytes, 64 << 10, &mut rng);
    let send = |rng: &mut Rng| -> Result<()> {
        io::send_stream(s.as_raw_fd(), mine, &sizes, SendMode::Write, rng)?;
        s.shutdown(Shutdown::Write).context("shutdown(SHUT_WR)")
    };
    let recv = |rng: &mut Rng, after: &str| -> Result<RecvStats> {
        match io::recv_stream(
            s.as_raw_fd(),
            theirs,
            0,
            mode,
            64 << 10,
            Duration::ZERO,
            None,
            rng,
        )
        .with_context(|| format!("reading {after}"))?
        {
            Ok(st) if st.bytes == bytes => Ok(st),
            Ok(st) => bail!("{after}: {} of {bytes} bytes", st.bytes),
            Err(RecvEnd::Reset(st)) => bail!("{after}: reset after {} bytes", st.bytes),
        }
    };
    if first {
        send(&mut rng)?;
        recv(&mut rng, "the answer after our own shutdown(SHUT_WR)")
    } else {
        let st = recv(&mut rng, "to the peer's EOF")?;
        send(&mut rng)?;
        Ok(st)
    }
}

pub fn half_close(
    at: SocketAddr,
    conns: usize,
    bytes: u64,
    client_first: bool,
    mode: RecvMode,
) -> Result<()> {
    let l = listen(at)?;
    let target = connect_addr(&l)?;
    let server = spawn(move || -> Result<Vec<Result<RecvStats>>> {
        let mut hs = Vec::new();
        for _ in 0..conns {
            let (mut s, _) = l.accept()?;
            hs.push(spawn(move || -> Result<RecvStats> {
                let mut id = [0u8; 8];
                s.read_exact(&mut id)?;
                let id = u64::from_le_bytes(id);
                converse(&s, !client_first, 2 * id + 1, 2 * id, bytes, mode)
                    .with_context(|| format!("server side #{id}"))
            }));
        }
        Ok(hs.into_iter().map(join).collect())
    });
    let clients: Vec<_> = (0..conns as u64)
        .map(|id| {
            let label = format!("client #{id}");
            pending_add(&label);
            spawn(move || -> Result<RecvStats> {
                let mut s = connect(target)?;
                s.write_all(&id.to_le_bytes())?;
                let r = converse(&s, client_first, 2 * id, 2 * id + 1, bytes, mode)
                    .with_context(|| format!("client side #{id}"));
                pending_done(&label);
                r
            })
        })
        .collect();
    let mut errors = Vec::new();
    let mut empty = 0;
    for r in clients.into_iter().map(join).chain(join(server)?) {
        match r {
            Ok(st) => empty += st.empty_wakeups,
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    print_report(&json!({
        "conns": conns, "bytes_each_way": bytes * conns as u64,
        "first": if client_first { "client" } else { "server" },
        "recv": mode, "empty_wakeups": empty, "errors": errors,
    }))?;
    ensure!(errors.is_empty(), "{} half-close errors", errors.len());
    Ok(())
}

// ---------------------------------------------------------------------------
// RST mid-stream
// ---------------------------------------------------------------------------

#[derive(Default, Serialize)]
struct RstReport {
    conns: usize,
    intact: usize,
    reset_by_sender: usize,
    reset_by_reader: usize,
    /// Readers of a sender-reset connection that saw ECONNRESET / EOF.
    reader_saw_reset: usize,
    reader_saw_eof: usize,
    /// Senders of a reader-reset connection whose writes failed.
    sender_saw_error: usize,
    bytes_verified: u64,
    errors: Vec<String>,
}

/// A reader's connection id and (bytes checked, whether it ended in a reset).
type ReaderEnd = (u64, Result<(u64, bool)>);

pub fn rst(at: SocketAddr, conns: usize, bytes: u64, every: usize, mode: RecvMode) -> Result<()> {
    let l = listen(at)?;
    let target = connect_addr(&l)?;
    let every = every.max(1);
    // Connection i: 0 intact, 1 reset by its sender, 2 reset by its reader.
    let role = move |i: u64| -> u8 {
        if !i.is_multiple_of(every as u64) {
            0
        } else if (i / every as u64).is_multiple_of(2) {
            1
        } else {
            2
        }
    };
    let cut = move |i: u64| Rng::new(i ^ 0x77).range(1, bytes - 1);
    let server = spawn(move || -> Result<Vec<ReaderEnd>> {
        let mut hs = Vec::new();
        for _ in 0..conns {
            let (mut s, _) = l.accept()?;
            hs.push(spawn(move || -> Result<ReaderEnd> {
                let mut id = [0u8; 8];
                s.read_exact(&mut id)?;
                let id = u64::from_le_bytes(id);
                let mut rng = Rng::new(id);
                let limit = (role(id) == 2).then(|| cut(id));
                let r = io::recv_stream(
                    s.as_raw_fd(),
                    id,
                    0,
                    mode,
                    64 << 10,
                    Duration::ZERO,
                    limit,
                    &mut rng,
                )
                .map(|r| match r {
                    Ok(st) => (st.bytes, false),
                    Err(RecvEnd::Reset(st)) => (st.bytes, true),
                });
                if limit.is_some() {
                    io::set_linger_zero(s.as_raw_fd())?;
                }
                drop(s);
                Ok((id, r))
            }));
        }
        hs.into_iter().map(join).collect()
    });
    let clients: Vec<_> = (0..conns as u64)
        .map(|id| {
            let label = format!("#{id} role {}", role(id));
            pending_add(&label);
            spawn(move || -> (u64, Result<()>) {
                let r = (|| -> Result<()> {
                    let mut s = connect(target)?;
                    s.write_all(&id.to_le_bytes())?;
                    let mut rng = Rng::new(id ^ 5);
                    let len = if role(id) == 1 { cut(id) } else { bytes };
                    let sizes = io::message_sizes(len, 256 << 10, &mut rng);
                    io::send_stream(s.as_raw_fd(), id, &sizes, SendMode::Write, &mut rng)?;
                    if role(id) == 1 {
                        io::set_linger_zero(s.as_raw_fd())?;
                    }
                    Ok(())
                })();
                pending_done(&label);
                (id, r)
            })
        })
        .collect();
    let mut rep = RstReport {
        conns,
        ..Default::default()
    };
    for h in clients {
        let (id, r) = h.join().map_err(|_| anyhow!("client panicked"))?;
        match (role(id), r) {
            (2, Err(e))
                if e.downcast_ref::<std::io::Error>().is_some_and(io::is_reset)
                    || format!("{e:#}").contains("Connection reset")
                    || format!("{e:#}").contains("Broken pipe") =>
            {
                rep.sender_saw_error += 1
            }
            (2, Ok(())) => {}
            (_, Ok(())) => {}
            (_, Err(e)) => rep.errors.push(format!("sender #{id}: {e:#}")),
        }
    }
    for (id, r) in join(server)? {
        if let Ok((n, _)) = &r {
            rep.bytes_verified += n;
        }
        match (role(id), r) {
            (0, Ok((n, false))) if n == bytes => rep.intact += 1,
            (0, Ok((n, reset))) => rep.errors.push(format!(
                "intact #{id}: {n} of {bytes} bytes (reset {reset})"
            )),
            (1, Ok((n, reset))) => {
                rep.reset_by_sender += 1;
                if n > cut(id) {
                    rep.errors
                        .push(format!("#{id}: {n} bytes, only {} sent", cut(id)));
                }
                if reset {
                    rep.reader_saw_reset += 1
                } else {
                    rep.reader_saw_eof += 1
                }
            }
            (2, Ok((n, _))) => {
                rep.reset_by_reader += 1;
                if n != cut(id) {
                    rep.errors
                        .push(format!("#{id}: read {n}, meant to read {}", cut(id)));
                }
            }
            (_, Err(e)) => rep.errors.push(format!("reader #{id}: {e:#}")),
            (_, Ok(_)) => {}
        }
    }
    print_report(&serde_json::to_value(&rep)?)?;
    ensure!(rep.errors.is_empty(), "{} RST errors", rep.errors.len());
    Ok(())
}

// ---------------------------------------------------------------------------
// collide: fixed sources, many targets, all open at once
// ---------------------------------------------------------------------------

pub fn collide(
    listen_at: &[SocketAddr],
    sources: &[SocketAddr],
    targets: &[SocketAddr],
    bytes: u64,
    seed: u64,
    hold: bool,
) -> Result<()> {
    let listeners = listen_at
        .iter()
        .map(|a| listen(*a))
        .collect::<Result<Vec<_>>>()?;
    start_echo_servers(listeners);
    let mut conns = Vec::new();
    for src in sources {
        for dst in targets {
            let s = sock::connect_reusing(*src, *dst)
                .with_context(|| format!("connect {dst} from {src}"))?;
            conns.push(s);
        }
    }
    if hold {
        println!("established {}", conns.len());
        std::io::stdout().flush()?;
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
    }
    let workers: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let cseed = seed + i as u64;
            spawn(move || -> Result<(TcpStream, serde_json::Value)> {
                let w = s.try_clone()?;
                let writer = spawn(move || -> Result<()> {
                    let mut rng = Rng::new(cseed);
                    let sizes = io::message_sizes(bytes, 16 << 10, &mut rng);
                    io::send_stream(w.as_raw_fd(), cseed, &sizes, SendMode::Write, &mut rng)
                });
                let mut rng = Rng::new(cseed ^ 9);
                let r = io::recv_stream(
                    s.as_raw_fd(),
                    cseed,
                    0,
                    RecvMode::Read,
                    64 << 10,
                    Duration::ZERO,
                    Some(bytes),
                    &mut rng,
                );
                let sent = join(writer);
                let (equal, got, err) = match (r, sent) {
                    (Ok(Ok(st)), Ok(())) => (st.bytes == bytes, st.bytes, String::new()),
                    (Ok(Err(RecvEnd::Reset(st))), _) => (false, st.bytes, "reset".into()),
                    (Err(e), _) | (_, Err(e)) => (false, 0, format!("{e:#}")),
                };
                let v = json!({
                    "local": s.local_addr()?, "peer": s.peer_addr()?, "seed": cseed,
                    "bytes": bytes, "received": got, "equal": equal, "error": err,
                });
                Ok((s, v))
            })
        })
        .collect();
    let mut held = Vec::new();
    let mut reports = Vec::new();
    for w in workers {
        let (s, v) = join(w)?;
        held.push(s);
        reports.push(v);
    }
    let bad = reports.iter().filter(|r| r["equal"] != true).count();
    let server_errors = server_errors();
    print_report(&json!({
        "conns": reports.len(), "bad": bad, "server_errors": server_errors, "reports": reports,
    }))?;
    ensure!(
        server_errors.is_empty(),
        "{} echo servers failed",
        server_errors.len()
    );
    if hold {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
    }
    ensure!(bad == 0, "{bad} connections carried wrong bytes");
    Ok(())
}

// ---------------------------------------------------------------------------
// churn
// ---------------------------------------------------------------------------

pub fn churn(
    listen_at: &[SocketAddr],
    threads: usize,
    duration: Duration,
    bytes: usize,
) -> Result<()> {
    let mut targets = Vec::new();
    for a in listen_at {
        let l = listen(*a)?;
        targets.push(connect_addr(&l)?);
        // Several acceptors per listener, each serving its connection
        // inline: a thread per short connection would dominate the cost.
        let l = Arc::new(l);
        for _ in 0..threads.max(2) {
            let l = l.clone();
            spawn(move || {
                let mut buf = vec![0u8; bytes.max(1)];
                while let Ok((mut s, _)) = l.accept() {
                    // The client closes first (TIME_WAIT on its side), after
                    // reading the echo; then our read sees EOF.
                    let _ = s
                        .read_exact(&mut buf)
                        .and_then(|_| s.write_all(&buf))
                        .and_then(|_| s.read(&mut buf[..1]).map(drop));
                }
            });
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let errors: Arc<Mutex<Vec<String>>> = Arc::default();
    let error_count = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let clients: Vec<_> = (0..threads)
        .map(|t| {
            let (stop, done, errors, error_count) = (
                stop.clone(),
                done.clone(),
                errors.clone(),
                error_count.clone(),
            );
            let targets = targets.clone();
            spawn(move || {
                let mut i = 0u64;
                let mut got = vec![0u8; bytes];
                while !stop.load(Ordering::Relaxed) {
                    let seed = ((t as u64) << 40) | i;
                    let dst = targets[(i as usize + t) % targets.len()];
                    let data = pattern::bytes(seed, 0, bytes);
                    let r = (|| -> Result<()> {
                        let mut s = connect(dst).context("connect")?;
                        s.write_all(&data).context("send")?;
                        s.read_exact(&mut got).context("read the echo")?;
                        ensure!(got == data, "echo differs");
                        Ok(())
                    })();
                    match r {
                        Ok(()) => {
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            if error_count.fetch_add(1, Ordering::Relaxed) < 20
                                && let Ok(mut v) = errors.lock()
                            {
                                v.push(format!("thread {t} #{i}: {e:#}"));
                            }
                        }
                    }
                    i += 1;
                }
            })
        })
        .collect();
    // One sample per second: the rate over time, not only the average.
    let mut per_second = Vec::new();
    let mut last = 0;
    while started.elapsed() < duration {
        thread::sleep(Duration::from_secs(1).min(duration.saturating_sub(started.elapsed())));
        let now = done.load(Ordering::Relaxed);
        per_second.push(now - last);
        last = now;
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().map_err(|_| anyhow!("churn client panicked"))?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let n = done.load(Ordering::Relaxed);
    let errs = error_count.load(Ordering::Relaxed);
    print_report(&json!({
        "connections": n,
        "errors": errs,
        "first_errors": *errors.lock().map_err(|_| anyhow!("poisoned"))?,
        "elapsed_s": elapsed,
        "rate_per_s": n as f64 / elapsed,
        "per_second": per_second,
    }))?;
    ensure!(errs == 0, "{errs} churn connections failed");
    Ok(())
}
