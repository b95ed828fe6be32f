//! Traffic for the end-to-end tests: an echo server and clients in one
//! process, so the test can place both ends in its private cgroup.
//!
//! Every byte is checked: each connection sends a pattern derived from its
//! own id, and reads back the echo, comparing byte for byte. Connections
//! with distinct patterns also expose any cross-delivery.

use std::{
    io::{BufRead, Read, Write},
    net::{IpAddr, SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use accel_test_harness::pattern;
use anyhow::{Context, Result, bail, ensure};
use clap::Parser;
use serde::Serialize;

#[derive(Parser, Debug)]
struct Args {
    /// Address to listen on (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    #[arg(long, default_value_t = 10)]
    conns: usize,
    /// Message sizes in bytes, cycled through by every connection.
    #[arg(long, value_delimiter = ',', default_value = "1,100,1500,65536")]
    sizes: Vec<usize>,
    /// Rounds over the size list per connection (ignored with --duration-ms).
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// Keep exchanging for this long instead of a fixed number of rounds.
    #[arg(long)]
    duration_ms: Option<u64>,
    /// Establish every connection, print "established", wait for a line on
    /// stdin, then start the traffic.
    #[arg(long)]
    hold: bool,
    /// End each connection with shutdown(SHUT_WR) and a blocking read to
    /// EOF instead of a plain close (the half-close shape).
    #[arg(long)]
    half_close: bool,
    /// The server waits this long before its first read, so what clients
    /// send meanwhile sits unread in its receive queue.
    #[arg(long, default_value_t = 0)]
    server_delay_ms: u64,
    /// Streaming instead of echo: each client writes this many bytes as fast
    /// as it can; the server only reads (and checks every byte).
    #[arg(long)]
    stream_bytes: Option<u64>,
    /// Streaming: the server sleeps this long after each read (a slow reader).
    #[arg(long, default_value_t = 0)]
    reader_delay_us: u64,
    /// Instead of traffic: check how the receive side behaves (FIONREAD,
    /// MSG_PEEK, poll) on one connection and print the findings as JSON.
    /// (Receive-side splice: tests/tests/transparency.rs.)
    #[arg(long)]
    receive_modes: bool,
    /// Streaming: bytes per read on the server side.
    #[arg(long, default_value_t = 65536)]
    read_size: usize,
}

#[derive(Serialize)]
struct Report {
    port: u16,
    connections: usize,
    messages: u64,
    bytes_each_way: u64,
    errors: Vec<String>,
    elapsed_ms: u128,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(total) = args.stream_bytes {
        return stream(&args, total);
    }
    if args.receive_modes {
        return receive_modes(&args);
    }
    ensure!(
        !args.sizes.is_empty() && args.conns > 0,
        "need sizes and connections"
    );
    let listener =
        TcpListener::bind(args.listen).with_context(|| format!("bind {}", args.listen))?;
    let addr = listener.local_addr()?;
    let conns = args.conns;
    let delay = Duration::from_millis(args.server_delay_ms);
    let server = thread::spawn(move || serve(listener, conns, delay));

    let connect_addr = SocketAddr::new(
        if addr.ip().is_unspecified() {
            IpAddr::from([127, 0, 0, 1])
        } else {
            addr.ip()
        },
        addr.port(),
    );
    let mut streams = Vec::with_capacity(args.conns);
    for _ in 0..args.conns {
        let s = TcpStream::connect(connect_addr).context("connect")?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        streams.push(s);
    }
    if args.hold {
        println!("established {}", addr.port());
        std::io::stdout().flush()?;
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
    }

    let start = Instant::now();
    let messages = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let deadline = args.duration_ms.map(|ms| start + Duration::from_millis(ms));
    let handles: Vec<_> = streams
        .into_iter()
        .enumerate()
        .map(|(id, stream)| {
            let sizes = args.sizes.clone();
            let rounds = args.rounds;
            let half_close = args.half_close;
            let (messages, bytes) = (messages.clone(), bytes.clone());
            thread::spawn(move || {
                client(
                    id, stream, &sizes, rounds, deadline, half_close, &messages, &bytes,
                )
            })
        })
        .collect();
    let mut errors = Vec::new();
    for (id, h) in handles.into_iter().enumerate() {
        match h.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => errors.push(format!("conn {id}: {e:#}")),
            Err(_) => errors.push(format!("conn {id}: panicked")),
        }
    }
    match server.join() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => errors.push(format!("server: {e:#}")),
        Err(_) => errors.push("server panicked".into()),
    }
    let report = Report {
        port: addr.port(),
        connections: args.conns,
        messages: messages.load(Ordering::Relaxed),
        bytes_each_way: bytes.load(Ordering::Relaxed),
        errors,
        elapsed_ms: start.elapsed().as_millis(),
    };
    println!("{}", serde_json::to_string(&report)?);
    if !report.errors.is_empty() {
        bail!("{} connection errors", report.errors.len());
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn client(
    id: usize,
    mut stream: TcpStream,
    sizes: &[usize],
    rounds: usize,
    deadline: Option<Instant>,
    half_close: bool,
    messages: &AtomicU64,
    bytes: &AtomicU64,
) -> Result<()> {
    let mut offset = 0u64;
    let mut round = 0;
    loop {
        match deadline {
            Some(d) if Instant::now() >= d => break,
            None if round >= rounds => break,
            _ => {}
        }
        for &n in sizes {
            let msg = pattern::bytes(id as u64, offset, n);
            stream.write_all(&msg).context("write")?;
            let mut back = vec![0u8; n];
            stream
                .read_exact(&mut back)
                .with_context(|| format!("read echo of {n} bytes"))?;
            if back != msg {
                let at = back.iter().zip(&msg).position(|(a, b)| a != b).unwrap_or(0);
                bail!("echo of {n}-byte message at stream offset {offset} differs at byte {at}");
            }
            offset += n as u64;
            messages.fetch_add(1, Ordering::Relaxed);
            bytes.fetch_add(n as u64, Ordering::Relaxed);
        }
        round += 1;
    }
    if half_close {
        // Half-close, then a blocking read until the server's close.
        stream.shutdown(std::net::Shutdown::Write)?;
        let mut rest = Vec::new();
        stream
            .read_to_end(&mut rest)
            .context("blocking read to EOF after shutdown(SHUT_WR)")?;
        ensure!(
            rest.is_empty(),
            "{} unexpected bytes after the last echo",
            rest.len()
        );
    }
    Ok(())
}

fn serve(listener: TcpListener, conns: usize, delay: Duration) -> Result<()> {
    let mut workers = Vec::with_capacity(conns);
    for _ in 0..conns {
        let (mut s, _) = listener.accept()?;
        workers.push(thread::spawn(move || -> Result<()> {
            thread::sleep(delay);
            let mut buf = vec![0u8; 256 * 1024];
            loop {
                let n = s.read(&mut buf)?;
                if n == 0 {
                    return Ok(());
                }
                s.write_all(&buf[..n])?;
            }
        }));
    }
    for w in workers {
        w.join()
            .map_err(|_| anyhow::anyhow!("server worker panicked"))??;
    }
    Ok(())
}

/// One-way streams with a (possibly slow) reader, every byte checked.
fn stream(args: &Args, total: u64) -> Result<()> {
    let listener =
        TcpListener::bind(args.listen).with_context(|| format!("bind {}", args.listen))?;
    let addr = listener.local_addr()?;
    let (conns, delay, read_size) = (
        args.conns,
        Duration::from_micros(args.reader_delay_us),
        args.read_size,
    );
    let start = Instant::now();
    let server = thread::spawn(move || -> Result<Vec<u64>> {
        let mut readers = Vec::new();
        for _ in 0..conns {
            let (mut s, _) = listener.accept()?;
            readers.push(thread::spawn(move || -> Result<u64> {
                let mut id = [0u8; 8];
                s.read_exact(&mut id)?;
                let id = u64::from_le_bytes(id) as usize;
                let mut buf = vec![0u8; read_size];
                let mut offset = 0u64;
                let mut scratch = Vec::new();
                loop {
                    let n = s.read(&mut buf).context("slow reader: read")?;
                    if n == 0 {
                        return Ok(offset);
                    }
                    if let Err(i) = pattern::check(id as u64, offset, &buf[..n], &mut scratch) {
                        bail!("stream {id}: byte {} differs", offset + i as u64);
                    }
                    offset += n as u64;
                    if !delay.is_zero() {
                        thread::sleep(delay);
                    }
                }
            }));
        }
        readers
            .into_iter()
            .map(|r| r.join().map_err(|_| anyhow::anyhow!("reader panicked"))?)
            .collect()
    });
    let writers: Vec<_> = (0..conns)
        .map(|id| {
            thread::spawn(move || -> Result<()> {
                let mut s = TcpStream::connect(addr)?;
                s.write_all(&(id as u64).to_le_bytes())?;
                let mut offset = 0u64;
                let chunk = 64 * 1024u64;
                while offset < total {
                    let n = chunk.min(total - offset);
                    let msg = pattern::bytes(id as u64, offset, n as usize);
                    s.write_all(&msg).context("writer: write")?;
                    offset += n;
                }
                Ok(())
            })
        })
        .collect();
    let mut errors = Vec::new();
    for (id, w) in writers.into_iter().enumerate() {
        match w.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => errors.push(format!("writer {id}: {e:#}")),
            Err(_) => errors.push(format!("writer {id}: panicked")),
        }
    }
    match server.join() {
        Ok(Ok(received)) => {
            for (i, r) in received.iter().enumerate() {
                if *r != total {
                    errors.push(format!("reader {i}: got {r} of {total} bytes"));
                }
            }
        }
        Ok(Err(e)) => errors.push(format!("server: {e:#}")),
        Err(_) => errors.push("server panicked".into()),
    }
    let report = Report {
        port: addr.port(),
        connections: conns,
        messages: 0,
        bytes_each_way: total * conns as u64,
        errors,
        elapsed_ms: start.elapsed().as_millis(),
    };
    println!("{}", serde_json::to_string(&report)?);
    if !report.errors.is_empty() {
        bail!("{} stream errors", report.errors.len());
    }
    Ok(())
}

/// What a receiver sees of 1000 sent bytes through each receive interface.
fn receive_modes(args: &Args) -> Result<()> {
    use std::os::fd::AsRawFd;
    let listener = TcpListener::bind(args.listen)?;
    let mut client = TcpStream::connect(listener.local_addr()?)?;
    let (server, _) = listener.accept()?;
    let fd = server.as_raw_fd();
    client.write_all(&[7u8; 1000])?;
    thread::sleep(Duration::from_millis(50));
    let mut avail: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int.
    unsafe { libc::ioctl(fd, libc::FIONREAD, &mut avail) };
    let mut buf = vec![0u8; 4096];
    // SAFETY: buffer of the stated length.
    let peeked = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), 100, libc::MSG_PEEK) };
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one pollfd.
    let readable = unsafe { libc::poll(&mut pfd, 1, 100) } == 1;
    let got = (&server).read(&mut buf)?;
    let report = serde_json::json!({
        "fionread": avail, "msg_peek": peeked, "poll_readable": readable, "read": got,
    });
    println!("{report}");
    std::io::stdout().flush()?;
    std::process::exit(0)
}
