//! `echo` and `collide`: echo connections against the in-process echo
//! servers, many at once with random sizes, or from fixed source addresses
//! to every target (4-tuple collisions).

use std::{
    io::{BufRead, ErrorKind, Read, Write},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    os::fd::AsRawFd,
    sync::Mutex,
    time::{Duration, Instant},
};

use accel_test_harness::pattern::Rng;
use accel_topology::sock;
use anyhow::{Context, Result, bail, ensure};
use serde_json::json;

use super::{connect, connect_addr, join, listen, pending_add, pending_done, print_report, spawn};
use crate::io::{self, RecvEnd, RecvMode, SendMode};

/// Errors of the in-process echo servers: part of every report that uses
/// them, since a server that fails closes its connection and the client
/// alone would only see an early EOF.
static SERVER_ERRORS: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn server_errors() -> Vec<String> {
    SERVER_ERRORS.lock().map(|e| e.clone()).unwrap_or_default()
}

/// One echo connection, served as a thread of an application that writes
/// blocking and never waits in a read: poll(2), then recv(MSG_DONTWAIT).
/// A blocking read woken by the socket's own send-buffer space can return
/// EAGAIN on a recorded socket in `all` (docs/known-issues.md, I-5);
/// transparency.rs covers blocking echo servers in the default mode.
fn echo_serve(mut s: TcpStream) -> Result<()> {
    let fd = s.as_raw_fd();
    let mut buf = vec![0u8; 64 << 10];
    let mut echoed = 0u64;
    loop {
        let n = match io::poll_then_recv(fd, &mut buf)
            .with_context(|| format!("echo server after {echoed} bytes"))?
        {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::Interrupted | ErrorKind::WouldBlock) => {
                continue;
            }
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
pub(crate) fn echo(
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
    // A thread reads each client while another writes it, blocking, so the
    // readers never wait in a read (I-5, as for the servers) and leave the
    // socket blocking for the writer. The large clients' echoes come partly
    // by TCP, where FIONREAD may read 0 (I-4): they read without it.
    let recv_modes = [RecvMode::Dontwait, RecvMode::Fionread];
    for (i, s) in streams.into_iter().enumerate() {
        let cseed = seed * 1_000_000 + i as u64;
        let sizes = sizes_of(i);
        let bytes: u64 = sizes.iter().sum();
        let send = SendMode::ALL[i % SendMode::ALL.len()];
        let recv = only_recv.unwrap_or(if i < big_conns {
            RecvMode::Dontwait
        } else {
            recv_modes[(i / SendMode::ALL.len()) % recv_modes.len()]
        });
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
// collide: fixed sources, many targets, all open at once
// ---------------------------------------------------------------------------

pub(crate) fn collide(
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
                // Read alongside the blocking writer without blocking, as
                // the echo clients do (I-5).
                let mut rng = Rng::new(cseed ^ 9);
                let r = io::recv_stream(
                    s.as_raw_fd(),
                    cseed,
                    0,
                    RecvMode::Dontwait,
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
