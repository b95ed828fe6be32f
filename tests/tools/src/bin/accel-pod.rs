//! Pod workloads for the topology tests (`accel_topology`):
//!
//! - `echo`: the pods' echo app (one thread per connection, echoes until EOF);
//! - `client`: sends a pattern, reads the echo back and compares it byte for
//!   byte, prints a JSON report, then (with `--hold`) keeps the connection
//!   open until its stdin closes, so a test can inspect it;
//! - `proxy`: the IPv6 half of the sidecar (haproxy 2.6 cannot read the
//!   original destination of IPv6 connections): Istio's outbound listener
//!   (forward to the original destination) and inbound listener (forward to
//!   the original destination from `::6`), as uid 1337.

use std::{
    io::{Read, Write},
    net::{IpAddr, SocketAddr, TcpStream},
    thread,
    time::Duration,
};

use accel_test_harness::{pattern, sha256_hex};
use accel_topology::{PASSTHROUGH_V4, PASSTHROUGH_V6, SIDECAR_GID, SIDECAR_UID, sock};
use anyhow::{Context, Result, ensure};
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Echo server.
    Echo {
        #[arg(long, required = true)]
        listen: Vec<SocketAddr>,
    },
    /// Echo client: one connection, `--bytes` of pattern, compared.
    Client {
        #[arg(long)]
        connect: SocketAddr,
        #[arg(long, default_value_t = 65536)]
        bytes: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// After the report, keep the connection open until stdin closes.
        #[arg(long)]
        hold: bool,
    },
    /// Several connections from ONE source address and port (SO_REUSEADDR)
    /// to different destinations, all open at once, each with its own
    /// pattern (seed `--seed` + index): a misdelivered byte cannot match.
    /// Prints one JSON report per connection, then holds them open until
    /// stdin closes.
    Reuse {
        #[arg(long)]
        source: SocketAddr,
        #[arg(long, required = true)]
        connect: Vec<SocketAddr>,
        #[arg(long, default_value_t = 65536)]
        bytes: usize,
        #[arg(long, default_value_t = 100)]
        seed: u64,
    },
    /// `--count` short connections one after another, each echoing a small
    /// distinct pattern; prints how many succeeded.
    Churn {
        #[arg(long)]
        connect: SocketAddr,
        #[arg(long, default_value_t = 1000)]
        count: u64,
        #[arg(long, default_value_t = 64)]
        bytes: usize,
    },
    /// One connection driven by stdin: prints "connected", then for every
    /// line read does one echo exchange of `--bytes` (pattern seed + round)
    /// and prints "ok <round>"; exits at EOF.
    Interactive {
        #[arg(long)]
        connect: SocketAddr,
        #[arg(long, default_value_t = 65536)]
        bytes: usize,
    },
    /// A (slow) reader: accepts `--conns` connections, reads each to EOF,
    /// sleeping `--delay-us` after every read, checking every byte against
    /// the pattern its writer announced (8-byte seed first). Prints bytes.
    Sink {
        #[arg(long)]
        listen: SocketAddr,
        #[arg(long, default_value_t = 1)]
        conns: usize,
        #[arg(long, default_value_t = 16384)]
        read_size: usize,
        #[arg(long, default_value_t = 0)]
        delay_us: u64,
    },
    /// A fast writer: `--conns` connections each writing `--bytes` of its
    /// own pattern as fast as it can.
    Source {
        #[arg(long)]
        connect: SocketAddr,
        #[arg(long, default_value_t = 1)]
        conns: usize,
        #[arg(long)]
        bytes: u64,
        #[arg(long, default_value_t = 500)]
        seed: u64,
    },
    /// Istio-style sidecar listeners forwarding to the original destination.
    Proxy {
        #[arg(long)]
        outbound: Vec<SocketAddr>,
        #[arg(long)]
        inbound: Vec<SocketAddr>,
        /// Drop to this uid/gid after binding (if still root).
        #[arg(long, default_value_t = SIDECAR_UID)]
        uid: u32,
        #[arg(long, default_value_t = SIDECAR_GID)]
        gid: u32,
    },
}

fn main() -> Result<()> {
    match Args::parse().cmd {
        Cmd::Echo { listen } => echo(listen),
        Cmd::Client {
            connect,
            bytes,
            seed,
            hold,
        } => client(connect, bytes, seed, hold),
        Cmd::Reuse {
            source,
            connect,
            bytes,
            seed,
        } => reuse(source, connect, bytes, seed),
        Cmd::Churn {
            connect,
            count,
            bytes,
        } => churn(connect, count, bytes),
        Cmd::Interactive { connect, bytes } => interactive(connect, bytes),
        Cmd::Sink {
            listen,
            conns,
            read_size,
            delay_us,
        } => sink(listen, conns, read_size, Duration::from_micros(delay_us)),
        Cmd::Source {
            connect,
            conns,
            bytes,
            seed,
        } => source(connect, conns, bytes, seed),
        Cmd::Proxy {
            outbound,
            inbound,
            uid,
            gid,
        } => proxy(outbound, inbound, uid, gid),
    }
}

fn echo(listen: Vec<SocketAddr>) -> Result<()> {
    let mut threads = Vec::new();
    for addr in listen {
        let l = sock::listen(addr).with_context(|| format!("listen {addr}"))?;
        threads.push(thread::spawn(move || {
            for s in l.incoming().flatten() {
                thread::spawn(move || sock::echo_until_eof(s));
            }
        }));
    }
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}

fn client(connect: SocketAddr, bytes: usize, seed: u64, hold: bool) -> Result<()> {
    let s = TcpStream::connect_timeout(&connect, Duration::from_secs(10))
        .with_context(|| format!("connect {connect}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let data = pattern::bytes(seed, 0, bytes);
    let sent_sha256 = sha256_hex(&data);
    let mut w = s.try_clone()?;
    let writer = thread::spawn(move || w.write_all(&data).map(|_| data));
    let mut got = vec![0u8; bytes];
    let mut r = &s;
    r.read_exact(&mut got).context("read the echo")?;
    let data = writer.join().expect("writer thread").context("send")?;
    let equal = got == data;
    let report = serde_json::json!({
        "local": s.local_addr()?,
        "peer": s.peer_addr()?,
        "bytes": bytes,
        "sent_sha256": sent_sha256,
        "received_sha256": sha256_hex(&got),
        "equal": equal,
        "pid": std::process::id(),
    });
    println!("{report}");
    std::io::stdout().flush()?;
    ensure!(equal, "echo differs from what was sent");
    if hold {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
    }
    let _ = s.shutdown(std::net::Shutdown::Write);
    Ok(())
}

fn reuse(source: SocketAddr, targets: Vec<SocketAddr>, bytes: usize, seed: u64) -> Result<()> {
    let streams: Vec<TcpStream> = targets
        .iter()
        .map(|dst| {
            sock::connect_reusing(source, *dst)
                .with_context(|| format!("connect {dst} from {source}"))
        })
        .collect::<Result<_>>()?;
    let workers: Vec<_> = streams
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            thread::spawn(move || -> Result<(TcpStream, serde_json::Value)> {
                s.set_read_timeout(Some(Duration::from_secs(30)))?;
                let data = pattern::bytes(seed + i as u64, 0, bytes);
                let mut w = s.try_clone()?;
                let writer = thread::spawn(move || w.write_all(&data).map(|_| data));
                let mut got = vec![0u8; bytes];
                (&s).read_exact(&mut got).context("read the echo")?;
                let data = writer
                    .join()
                    .map_err(|_| anyhow::anyhow!("writer panicked"))??;
                let report = serde_json::json!({
                    "local": s.local_addr()?,
                    "peer": s.peer_addr()?,
                    "seed": seed + i as u64,
                    "bytes": bytes,
                    "equal": got == data,
                    "received_sha256": sha256_hex(&got),
                });
                Ok((s, report))
            })
        })
        .collect();
    let mut held = Vec::new();
    for w in workers {
        let (s, report) = w.join().map_err(|_| anyhow::anyhow!("worker panicked"))??;
        println!("{report}");
        held.push(s);
    }
    std::io::stdout().flush()?;
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    Ok(())
}

fn churn(connect: SocketAddr, count: u64, bytes: usize) -> Result<()> {
    for i in 0..count {
        let mut s = TcpStream::connect_timeout(&connect, Duration::from_secs(10))
            .with_context(|| format!("connection {i}: connect {connect}"))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        let data = pattern::bytes(i, 0, bytes);
        s.write_all(&data)
            .with_context(|| format!("connection {i}: send"))?;
        let mut got = vec![0u8; bytes];
        s.read_exact(&mut got)
            .with_context(|| format!("connection {i}: read the echo"))?;
        ensure!(got == data, "connection {i}: echo differs");
    }
    println!(
        "{}",
        serde_json::json!({ "connections": count, "ok": true })
    );
    Ok(())
}

fn interactive(connect: SocketAddr, bytes: usize) -> Result<()> {
    use std::io::BufRead;
    let s = TcpStream::connect_timeout(&connect, Duration::from_secs(10))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    println!("connected {}", s.local_addr()?);
    std::io::stdout().flush()?;
    for (round, line) in std::io::stdin().lock().lines().enumerate() {
        line?;
        let data = pattern::bytes(9000 + round as u64, 0, bytes);
        let mut w = s.try_clone()?;
        let writer = thread::spawn(move || w.write_all(&data).map(|_| data));
        let mut got = vec![0u8; bytes];
        (&s).read_exact(&mut got)
            .with_context(|| format!("round {round}: read the echo"))?;
        let data = writer
            .join()
            .map_err(|_| anyhow::anyhow!("writer panicked"))??;
        ensure!(got == data, "round {round}: echo differs");
        println!("ok {round}");
        std::io::stdout().flush()?;
    }
    Ok(())
}

fn sink(listen: SocketAddr, conns: usize, read_size: usize, delay: Duration) -> Result<()> {
    let l = sock::listen(listen).with_context(|| format!("listen {listen}"))?;
    println!("listening");
    std::io::stdout().flush()?;
    let readers: Vec<_> = (0..conns)
        .map(|_| {
            let (mut s, _) = l.accept()?;
            Ok(thread::spawn(move || -> Result<u64> {
                let mut seed = [0u8; 8];
                s.read_exact(&mut seed).context("read the seed")?;
                let seed = u64::from_le_bytes(seed);
                let mut buf = vec![0u8; read_size];
                let mut at = 0u64;
                let mut scratch = Vec::new();
                loop {
                    let n = s.read(&mut buf).context("slow reader: read")?;
                    if n == 0 {
                        return Ok(at);
                    }
                    if let Err(i) = pattern::check(seed, at, &buf[..n], &mut scratch) {
                        anyhow::bail!("stream {seed}: byte {} differs", at + i as u64);
                    }
                    at += n as u64;
                    if !delay.is_zero() {
                        thread::sleep(delay);
                    }
                }
            }))
        })
        .collect::<Result<_>>()?;
    let mut total = Vec::new();
    for r in readers {
        total.push(r.join().map_err(|_| anyhow::anyhow!("reader panicked"))??);
    }
    println!("{}", serde_json::json!({ "received": total }));
    Ok(())
}

fn source(connect: SocketAddr, conns: usize, bytes: u64, seed: u64) -> Result<()> {
    let writers: Vec<_> = (0..conns as u64)
        .map(|c| {
            thread::spawn(move || -> Result<()> {
                let mut s = TcpStream::connect_timeout(&connect, Duration::from_secs(10))?;
                let seed = seed + c;
                s.write_all(&seed.to_le_bytes())?;
                let mut at = 0u64;
                while at < bytes {
                    let n = (64 * 1024).min(bytes - at);
                    let chunk = pattern::bytes(seed, at, n as usize);
                    s.write_all(&chunk).context("fast writer: write")?;
                    at += n;
                }
                Ok(())
            })
        })
        .collect();
    for w in writers {
        w.join().map_err(|_| anyhow::anyhow!("writer panicked"))??;
    }
    println!(
        "{}",
        serde_json::json!({ "sent_each": bytes, "conns": conns })
    );
    Ok(())
}

fn proxy(outbound: Vec<SocketAddr>, inbound: Vec<SocketAddr>, uid: u32, gid: u32) -> Result<()> {
    let mut listeners = Vec::new();
    for addr in outbound {
        listeners.push((
            false,
            sock::listen(addr).with_context(|| format!("listen {addr}"))?,
        ));
    }
    for addr in inbound {
        listeners.push((
            true,
            sock::listen(addr).with_context(|| format!("listen {addr}"))?,
        ));
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        sock::drop_privileges(uid, gid).context("drop privileges")?;
    }
    let mut threads = Vec::new();
    for (is_inbound, l) in listeners {
        let own = l.local_addr()?;
        threads.push(thread::spawn(move || {
            for s in l.incoming().flatten() {
                thread::spawn(move || {
                    if let Err(e) = forward(s, own, is_inbound) {
                        eprintln!("proxy: {e:#}");
                    }
                });
            }
        }));
    }
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}

fn forward(s: TcpStream, own: SocketAddr, is_inbound: bool) -> Result<()> {
    let dst = sock::original_dst(&s).context("original destination")?;
    // Not redirected (someone connected to the listener itself): refuse
    // rather than loop.
    ensure!(
        dst.port() != own.port(),
        "connection to {dst} was not redirected"
    );
    let up = if is_inbound {
        let src: IpAddr = if dst.is_ipv4() {
            PASSTHROUGH_V4.into()
        } else {
            PASSTHROUGH_V6.into()
        };
        sock::connect_from(src, dst).with_context(|| format!("connect {dst} from {src}"))?
    } else {
        TcpStream::connect_timeout(&dst, Duration::from_secs(10))
            .with_context(|| format!("connect {dst}"))?
    };
    sock::splice_both(s, up);
    Ok(())
}
