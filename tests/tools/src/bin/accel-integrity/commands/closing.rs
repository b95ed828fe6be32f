//! `half-close` and `rst`: connections that end one way at a time, or
//! with a reset mid-stream.

use std::{
    io::{Read, Write},
    net::{Shutdown, SocketAddr, TcpStream},
    os::fd::AsRawFd,
    time::Duration,
};

use accel_test_harness::pattern::Rng;
use anyhow::{Context, Result, anyhow, bail, ensure};
use serde::Serialize;
use serde_json::json;

use super::{connect, connect_addr, join, listen, pending_add, pending_done, print_report, spawn};
use crate::io::{self, RecvEnd, RecvMode, RecvStats, SendMode};

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

pub(crate) fn half_close(
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

pub(crate) fn rst(
    at: SocketAddr,
    conns: usize,
    bytes: u64,
    every: usize,
    mode: RecvMode,
) -> Result<()> {
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
