//! `accel-bench load`: a small closed/open-loop load generator for this
//! machine (fortio cannot be installed here), writing fortio's JSON result
//! format so `accel-bench report` reads local and cluster runs alike.
//!
//! Protocols:
//! - `http`: HTTP/1.1 keep-alive GETs (one request in flight per
//!   connection); the response is framed by its Content-Length, whose value
//!   must be `--size`, and with `--expect-pattern` the body must equal the
//!   topology's `pattern(size, size)` (the files the benchmark's nginx serves).
//! - `tcp`: request/response over one connection per worker: `--size` bytes
//!   written, the same bytes must come back (an echo server).
//! - `connect`: connection setup: connect, one byte each way, close with
//!   RST (SO_LINGER 0, so no TIME_WAIT piles up): connections per second.
//!
//! Rate: `--qps 0` is as fast as each connection can go; `--qps N` spreads N
//! requests per second over the connections on a fixed schedule, and every
//! latency is measured from the request's *intended* send time, so a stall
//! is charged to every request it delayed (no coordinated omission).

use std::{
    io::{self, Read, Write},
    net::{SocketAddr, TcpStream},
    path::PathBuf,
    sync::{
        Arc, Barrier,
        atomic::{AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context, Result, bail, ensure};
use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;

use crate::report::fortio::{self, AccelExtra, RunnerResults};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Proto {
    Http,
    Tcp,
    Connect,
}

impl Proto {
    fn name(self) -> &'static str {
        match self {
            Proto::Http => "http",
            Proto::Tcp => "tcp",
            Proto::Connect => "connect",
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct LoadArgs {
    /// Server address (ip:port).
    #[arg(long)]
    pub target: SocketAddr,
    #[arg(long, value_enum, default_value = "http")]
    pub proto: Proto,
    /// HTTP request path.
    #[arg(long, default_value = "/")]
    pub path: String,
    /// Payload size (K/M suffixes: KiB/MiB): TCP request (echoed back);
    /// HTTP: the response body (its Content-Length must be this).
    #[arg(long, value_parser = crate::units::parse_size, default_value = "1K")]
    pub size: usize,
    /// HTTP: the body must be the benchmark's `pattern(size, size)`.
    #[arg(long)]
    pub expect_pattern: bool,
    /// Connections (one worker thread and one request in flight each).
    #[arg(short = 'c', long, default_value_t = 1)]
    pub connections: usize,
    /// Total requests per second over all connections; 0 = as fast as possible.
    #[arg(long, default_value_t = 0.0)]
    pub qps: f64,
    /// Measured seconds.
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// Seconds of load before the measurement starts (not recorded).
    #[arg(long, default_value_t = 0.5)]
    pub warmup: f64,
    /// fortio-style labels ("mode=baseline size=1024 ...").
    #[arg(long, default_value = "")]
    pub labels: String,
    /// Where the fortio JSON goes ("-": stdout).
    #[arg(long, default_value = "-")]
    pub json: PathBuf,
    /// CPUs to run on (e.g. "0" or "0,1"); default: no affinity.
    #[arg(long, value_delimiter = ',')]
    pub cpus: Vec<usize>,
}

/// What one worker measured.
struct WorkerResult {
    hist: Histogram<u64>,
    errors: u64,
    bytes: u64,
    first_error: Option<String>,
}

fn new_hist() -> Result<Histogram<u64>> {
    // 1 ns .. 60 s at 3 significant digits.
    Histogram::new_with_bounds(1, 60_000_000_000, 3).context("creating histogram")
}

pub fn run(args: LoadArgs) -> Result<()> {
    let res = generate(&args)?;
    let text = serde_json::to_string_pretty(&res)?;
    if args.json.as_os_str() == "-" {
        println!("{text}");
    } else {
        std::fs::write(&args.json, text)
            .with_context(|| format!("writing {}", args.json.display()))?;
    }
    let extra = res.accel_bench.as_ref();
    let errors = extra.map_or(0, |x| x.errors);
    eprintln!(
        "accel-bench load: {} {} -c {} qps {}: {:.0} req/s, p50 {:.1} µs, p99 {:.1} µs, {} errors",
        args.proto.name(),
        args.target,
        args.connections,
        res.requested_qps,
        res.actual_qps,
        res.percentile(50.0).unwrap_or(0.0) * 1e6,
        res.percentile(99.0).unwrap_or(0.0) * 1e6,
        errors
    );
    ensure!(
        errors == 0,
        "{errors} requests failed (see AccelBench.Errors in the JSON)"
    );
    Ok(())
}

/// Runs the load and returns it as a fortio result.
pub fn generate(args: &LoadArgs) -> Result<RunnerResults> {
    ensure!(args.connections > 0, "need at least one connection");
    ensure!(
        args.duration > 0.0 && args.warmup >= 0.0 && args.qps >= 0.0,
        "need a positive duration, warm-up >= 0 and qps >= 0"
    );
    if !args.cpus.is_empty() {
        let mut set = nix::sched::CpuSet::new();
        for &c in &args.cpus {
            set.set(c).context("CPU number")?;
        }
        // Worker threads inherit the mask.
        nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
            .context("sched_setaffinity")?;
    }
    let expected: Arc<Vec<u8>> = Arc::new(accel_test_harness::pattern::bytes(
        args.size as u64,
        0,
        args.size,
    ));
    let warmup = Duration::from_secs_f64(args.warmup);
    let duration = Duration::from_secs_f64(args.duration);
    // Fixed rate: each connection sends every `interval`, the connections'
    // schedules offset evenly so the aggregate is smooth.
    let interval =
        (args.qps > 0.0).then(|| Duration::from_secs_f64(args.connections as f64 / args.qps));
    let barrier = Arc::new(Barrier::new(args.connections + 1));
    let start_ns = Arc::new(AtomicU64::new(0));
    let epoch = Instant::now();
    let mut handles = Vec::new();
    for i in 0..args.connections {
        let (a, expected, barrier, start_ns) = (
            args.clone(),
            expected.clone(),
            barrier.clone(),
            start_ns.clone(),
        );
        handles.push(thread::spawn(move || -> Result<WorkerResult> {
            let mut conn = Conn::new(&a, expected);
            // Connect before the clock starts (keep-alive protocols).
            let pre = conn.ensure();
            barrier.wait();
            pre?;
            let start = epoch + Duration::from_nanos(start_ns.load(Ordering::SeqCst));
            let measure_from = start + warmup;
            let end = measure_from + duration;
            let mut w = WorkerResult {
                hist: new_hist()?,
                errors: 0,
                bytes: 0,
                first_error: None,
            };
            let mut next = match interval {
                Some(iv) => start + iv.mul_f64(i as f64 / a.connections as f64),
                None => start,
            };
            loop {
                let intended = match interval {
                    Some(iv) => {
                        if next >= end {
                            break;
                        }
                        let now = Instant::now();
                        if next > now {
                            thread::sleep(next - now);
                        }
                        let t = next;
                        next += iv;
                        t
                    }
                    None => {
                        let now = Instant::now();
                        if now >= end {
                            break;
                        }
                        now
                    }
                };
                match conn.request() {
                    Ok(bytes) => {
                        let done = Instant::now();
                        if intended >= measure_from && (interval.is_some() || done <= end) {
                            let ns = done.saturating_duration_since(intended).as_nanos();
                            w.hist.saturating_record(ns.max(1) as u64);
                            w.bytes += bytes;
                        }
                    }
                    Err(e) => {
                        if intended >= measure_from {
                            w.errors += 1;
                        }
                        w.first_error.get_or_insert_with(|| format!("{e:#}"));
                        conn.reset();
                        if w.errors > 1000 {
                            break;
                        }
                    }
                }
            }
            Ok(w)
        }));
    }
    // Start a little in the future so every worker is waiting when it comes.
    let start = Instant::now() + Duration::from_millis(20);
    start_ns.store(
        start.duration_since(epoch).as_nanos() as u64,
        Ordering::SeqCst,
    );
    let started_wall = SystemTime::now();
    barrier.wait();
    let mut hist = new_hist()?;
    let (mut errors, mut bytes, mut first_error) = (0, 0, None);
    for h in handles {
        let w = h
            .join()
            .map_err(|_| anyhow::anyhow!("load worker panicked"))??;
        hist.add(&w.hist).context("merging histograms")?;
        errors += w.errors;
        bytes += w.bytes;
        if first_error.is_none() {
            first_error = w.first_error;
        }
    }
    if let Some(e) = &first_error {
        eprintln!("accel-bench load: first error: {e}");
    }
    ensure!(
        !hist.is_empty(),
        "no request completed in the measured window (first error: {})",
        first_error.as_deref().unwrap_or("none")
    );
    let count = hist.len();
    let ok_key = match args.proto {
        Proto::Http => "200",
        Proto::Tcp | Proto::Connect => "OK",
    };
    let mut ret_codes = std::collections::BTreeMap::from([(ok_key.to_string(), count)]);
    if errors > 0 {
        // fortio's code for a socket-level error.
        ret_codes.insert("-1".into(), errors);
    }
    let (run_type, url) = match args.proto {
        Proto::Http => ("HTTP", format!("http://{}{}", args.target, args.path)),
        Proto::Tcp => ("TCP", format!("tcp://{}", args.target)),
        Proto::Connect => ("TCP-connect", format!("tcp://{}", args.target)),
    };
    Ok(RunnerResults {
        run_type: run_type.into(),
        labels: args.labels.clone(),
        start_time: rfc3339(started_wall),
        requested_qps: if args.qps > 0.0 {
            format!("{}", args.qps)
        } else {
            "max".into()
        },
        requested_duration: format!("{}s", args.duration),
        actual_qps: count as f64 / duration.as_secs_f64(),
        actual_duration: duration.as_nanos() as u64,
        num_threads: args.connections,
        version: format!("accel-bench {}", env!("CARGO_PKG_VERSION")),
        duration_histogram: fortio::histogram_data(&hist, &fortio::PERCENTILES),
        ret_codes,
        sizes: None,
        url: Some(url),
        accel_bench: Some(AccelExtra {
            payload_size: args.size,
            protocol: args.proto.name().into(),
            errors,
            bytes,
            cpu_seconds: None,
            from_intended_time: interval.is_some(),
        }),
    })
}

fn rfc3339(t: SystemTime) -> String {
    let (date, time) = crate::report::utc(t);
    // "YYYY-MM-DD HH:MM:SS UTC" -> "YYYY-MM-DDTHH:MM:SSZ"
    let hms = time.split(' ').nth(1).unwrap_or("00:00:00");
    format!("{date}T{hms}Z")
}

/// One client connection and its protocol.
struct Conn {
    target: SocketAddr,
    proto: Proto,
    request: Vec<u8>,
    size: usize,
    expected: Arc<Vec<u8>>,
    check_body: bool,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
}

impl Conn {
    fn new(a: &LoadArgs, expected: Arc<Vec<u8>>) -> Conn {
        let request = match a.proto {
            Proto::Http => format!(
                "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: accel-bench\r\n\r\n",
                a.path,
                a.target.ip()
            )
            .into_bytes(),
            Proto::Tcp => expected.to_vec(),
            Proto::Connect => vec![b'x'],
        };
        Conn {
            target: a.target,
            proto: a.proto,
            request,
            size: a.size,
            expected,
            check_body: a.expect_pattern,
            stream: None,
            buf: vec![0; 64 * 1024],
        }
    }

    fn connect(&self) -> io::Result<TcpStream> {
        let s = TcpStream::connect_timeout(&self.target, Duration::from_secs(5))?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        Ok(s)
    }

    fn ensure(&mut self) -> Result<()> {
        if self.stream.is_none() && self.proto != Proto::Connect {
            self.stream = Some(
                self.connect()
                    .with_context(|| format!("connecting to {}", self.target))?,
            );
        }
        Ok(())
    }

    fn reset(&mut self) {
        self.stream = None;
    }

    /// One request; returns the application bytes moved (both directions).
    fn request(&mut self) -> Result<u64> {
        match self.proto {
            Proto::Connect => self.connect_once(),
            Proto::Tcp => {
                self.ensure()?;
                let s = self.stream.as_mut().context("no connection")?;
                s.write_all(&self.request).context("send")?;
                let mut got = 0;
                while got < self.size {
                    let want = (self.size - got).min(self.buf.len());
                    let n = s.read(&mut self.buf[..want]).context("recv")?;
                    ensure!(n > 0, "echo server closed the connection");
                    ensure!(
                        self.buf[..n] == self.expected[got..got + n],
                        "echoed bytes differ at offset {got}"
                    );
                    got += n;
                }
                Ok(2 * self.size as u64)
            }
            Proto::Http => {
                self.ensure()?;
                self.http_get()
            }
        }
    }

    fn connect_once(&mut self) -> Result<u64> {
        let mut s = self.connect().context("connect")?;
        s.write_all(&self.request).context("send")?;
        let mut b = [0u8; 1];
        s.read_exact(&mut b).context("recv")?;
        ensure!(b == [b'x'], "echo returned {b:?}");
        // RST instead of FIN: no TIME_WAIT, so the port range never runs out.
        let l = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: setsockopt on a socket we own with a correctly sized value.
        unsafe {
            use std::os::fd::AsRawFd;
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&l as *const libc::linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            );
        }
        Ok(2)
    }

    fn http_get(&mut self) -> Result<u64> {
        let s = self.stream.as_mut().context("no connection")?;
        s.write_all(&self.request).context("send")?;
        // Headers: read until the blank line.
        let mut head = Vec::with_capacity(512);
        let body_start = loop {
            let n = s.read(&mut self.buf).context("recv")?;
            ensure!(n > 0, "server closed the connection");
            head.extend_from_slice(&self.buf[..n]);
            if let Some(p) = find(&head, b"\r\n\r\n") {
                break p + 4;
            }
            ensure!(head.len() < 64 * 1024, "response header too long");
        };
        let text = std::str::from_utf8(&head[..body_start]).context("header not UTF-8")?;
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse::<u16>().ok())
            .context("no status code")?;
        ensure!(status == 200, "HTTP status {status}");
        let len = text
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse::<usize>().ok())?
            })
            .context("no Content-Length")?;
        ensure!(
            len == self.size,
            "Content-Length {len}, expected {}",
            self.size
        );
        let mut body_got = head.len() - body_start;
        ensure!(
            body_got <= len,
            "more bytes than the response (pipelining?)"
        );
        if self.check_body {
            ensure!(
                head[body_start..] == self.expected[..body_got],
                "body differs from the pattern"
            );
        }
        while body_got < len {
            let want = (len - body_got).min(self.buf.len());
            let n = s.read(&mut self.buf[..want]).context("recv body")?;
            ensure!(n > 0, "server closed mid-body");
            if self.check_body {
                ensure!(
                    self.buf[..n] == self.expected[body_got..body_got + n],
                    "body differs from the pattern at offset {body_got}"
                );
            }
            body_got += n;
        }
        Ok((self.request.len() + body_start + len) as u64)
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A thread-per-connection echo server (`accel-bench echo-server`, and the
/// unit tests): every byte read is written back.
pub fn serve_echo(listener: std::net::TcpListener) {
    for s in listener.incoming() {
        let Ok(mut s) = s else { continue };
        thread::spawn(move || {
            let _ = s.set_nodelay(true);
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if s.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                }
            }
        });
    }
}

#[derive(Args, Debug, Clone)]
pub struct EchoServerArgs {
    /// Address to listen on (port 0: any; the bound address is printed as
    /// `LISTEN <addr>`).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
}

pub fn echo_server(a: EchoServerArgs) -> Result<()> {
    let l =
        std::net::TcpListener::bind(a.listen).with_context(|| format!("binding {}", a.listen))?;
    println!("LISTEN {}", l.local_addr()?);
    io::stdout().flush()?;
    serve_echo(l);
    bail!("listener closed")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn echo() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        thread::spawn(move || serve_echo(l));
        addr
    }

    /// A keep-alive HTTP server answering every GET with the pattern body.
    fn http(size: usize) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let body = accel_test_harness::pattern::bytes(size as u64, 0, size);
        thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { continue };
                let body = body.clone();
                thread::spawn(move || {
                    let mut buf = vec![0u8; 4096];
                    let mut pending = Vec::new();
                    loop {
                        let n = match s.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        pending.extend_from_slice(&buf[..n]);
                        while let Some(p) = find(&pending, b"\r\n\r\n") {
                            pending.drain(..p + 4);
                            let mut resp = format!(
                                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
                                body.len()
                            )
                            .into_bytes();
                            resp.extend_from_slice(&body);
                            if s.write_all(&resp).is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        addr
    }

    fn args(target: SocketAddr, proto: Proto, size: usize) -> LoadArgs {
        LoadArgs {
            target,
            proto,
            path: "/f".into(),
            size,
            expect_pattern: true,
            connections: 2,
            qps: 0.0,
            duration: 0.3,
            warmup: 0.05,
            labels: format!("mode=baseline size={size}"),
            json: "-".into(),
            cpus: vec![],
        }
    }

    #[test]
    fn tcp_echo_max_rate_round_trips_through_the_fortio_format() {
        let a = args(echo(), Proto::Tcp, 4096);
        let r = generate(&a).unwrap();
        let x = r.accel_bench.clone().unwrap();
        assert_eq!(x.errors, 0);
        assert!(r.duration_histogram.count > 50, "{r:?}");
        assert_eq!(x.bytes, r.duration_histogram.count * 2 * 4096);
        assert_eq!(r.requested_qps, "max");
        assert_eq!(r.num_threads, 2);
        // What we write, the parser reads back identically.
        let text = serde_json::to_string_pretty(&r).unwrap();
        let back = RunnerResults::parse(&text, "mem").unwrap();
        assert_eq!(back.duration_histogram.count, r.duration_histogram.count);
        assert_eq!(
            back.duration_histogram.data.len(),
            r.duration_histogram.data.len()
        );
        assert_eq!(back.accel_bench, r.accel_bench);
        assert_eq!(back.labels, r.labels);
        assert_eq!(back.payload_size(), Some(4096));
        let (p50, p99) = (
            back.percentile(50.0).unwrap(),
            back.percentile(99.0).unwrap(),
        );
        assert!(p50 > 0.0 && p50 <= p99, "{p50} {p99}");
    }

    #[test]
    fn http_fixed_rate_is_scheduled_and_checked() {
        let size = 1500;
        let mut a = args(http(size), Proto::Http, size);
        a.qps = 400.0;
        a.duration = 0.5;
        let r = generate(&a).unwrap();
        let n = r.duration_histogram.count;
        // 400/s for 0.5 s: 200 intended sends in the window.
        assert!((190..=201).contains(&n), "{n} requests");
        assert!(r.accel_bench.as_ref().unwrap().from_intended_time);
        assert_eq!(r.requested_qps, "400");
        assert_eq!(r.ret_codes.get("200"), Some(&n));
        // A wrong expected size is an error, not a silent success.
        let mut bad = args(a.target, Proto::Http, size + 1);
        bad.duration = 0.1;
        assert!(generate(&bad).is_err());
    }

    #[test]
    fn connect_rate() {
        let mut a = args(echo(), Proto::Connect, 1);
        a.connections = 1;
        let r = generate(&a).unwrap();
        assert!(r.duration_histogram.count > 20);
        assert_eq!(r.run_type, "TCP-connect");
    }
}
