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
    net::SocketAddr,
    path::PathBuf,
    sync::{
        Arc, Barrier,
        atomic::{AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context, Result, ensure};
use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;

use crate::report::fortio::{self, AccelExtra, RunnerResults};

mod conn;
mod echo;
#[cfg(test)]
mod tests;

use conn::Conn;
pub use echo::{EchoServerArgs, echo_server};

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
