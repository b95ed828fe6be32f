//! wrk against nginx through both sidecars: the run and its output parsed
//! into a mesh record.

use std::{
    thread,
    time::{Duration, Instant},
};

use accel_topology::Pod;
use anyhow::{Context, Result, bail, ensure};

use crate::{
    records::{
        mesh::{MeshConfig, MeshRecord},
        placement::Placement,
    },
    sandbox::interrupted,
    worker_proc::WorkerProc,
};

/// What one wrk run measured, parsed from its output.
#[derive(Debug, Default)]
pub(crate) struct WrkOut {
    requests: u64,
    secs: f64,
    read_bytes: f64,
    per_s: f64,
    p50_us: f64,
    p99_us: f64,
    mean_us: f64,
    max_us: f64,
    socket_errors: u64,
    non2xx: u64,
    output: String,
}

/// `wrk` in pod A against nginx in pod B for the body of `size` bytes.
pub(crate) fn run_wrk(
    a: &Pod,
    b: &Pod,
    cfg: &MeshConfig,
    placement: Placement,
    size: usize,
) -> Result<WrkOut> {
    let url = format!("http://{}/f{size}", b.ipv4);
    let mut cmd = match placement.cpus().0 {
        Some(cpu) => {
            let mut c = a.command("taskset");
            c.args(["-c", &cpu.to_string(), "wrk"]);
            c
        }
        None => a.command("wrk"),
    };
    cmd.args([
        format!("-t{}", cfg.wrk_threads),
        format!("-c{}", cfg.wrk_connections),
        format!("-d{}s", cfg.wrk_duration),
        "--timeout".into(),
        "10s".into(),
        "--latency".into(),
        url,
    ]);
    let mut w = WorkerProc::from_command(cmd)?;
    let deadline = Instant::now() + Duration::from_secs(u64::from(cfg.wrk_duration) + 30);
    let status = loop {
        if interrupted() {
            w.kill();
            bail!("interrupted");
        }
        if let Some(st) = w.child.try_wait()? {
            break st;
        }
        if Instant::now() > deadline {
            w.kill();
            bail!("wrk did not finish; stderr: {}", w.stderr());
        }
        thread::sleep(Duration::from_millis(10));
    };
    let mut output = String::new();
    while let Ok(l) = w.lines.recv_timeout(Duration::from_secs(2)) {
        output.push_str(&l);
        output.push('\n');
    }
    ensure!(
        status.success(),
        "wrk exited with {status}: {output}{}",
        w.stderr()
    );
    parse_wrk(&output).with_context(|| format!("parsing wrk output:\n{output}"))
}

/// wrk's time format (us, ms, s, m, h) in µs.
fn wrk_time_us(s: &str) -> Option<f64> {
    let (num, mul) = if let Some(n) = s.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix("ms") {
        (n, 1e3)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1e6)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60e6)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3600e6)
    } else {
        (s, 1.0)
    };
    num.parse::<f64>().ok().map(|v| v * mul)
}

/// wrk's byte format (binary units, "12.34MB").
fn wrk_bytes(s: &str) -> Option<f64> {
    let s = s.strip_suffix('B').unwrap_or(s);
    let (num, mul) = match s.chars().last()? {
        'K' => (&s[..s.len() - 1], 1024f64),
        'M' => (&s[..s.len() - 1], 1024f64.powi(2)),
        'G' => (&s[..s.len() - 1], 1024f64.powi(3)),
        'T' => (&s[..s.len() - 1], 1024f64.powi(4)),
        _ => (s, 1.0),
    };
    num.parse::<f64>().ok().map(|v| v * mul)
}

fn parse_wrk(out: &str) -> Result<WrkOut> {
    let mut w = WrkOut {
        output: out.to_string(),
        ..Default::default()
    };
    let (mut p50, mut p99, mut rps, mut total) = (None, None, None, None);
    for line in out.lines() {
        let t: Vec<&str> = line.split_whitespace().collect();
        match t.as_slice() {
            ["50%", v] => p50 = wrk_time_us(v),
            ["99%", v] => p99 = wrk_time_us(v),
            ["Latency", avg, _stdev, max, _] => {
                w.mean_us = wrk_time_us(avg).unwrap_or(0.0);
                w.max_us = wrk_time_us(max).unwrap_or(0.0);
            }
            ["Requests/sec:", v] => rps = v.parse::<f64>().ok(),
            [n, "requests", "in", secs, bytes, "read"] => {
                total = n.parse::<u64>().ok();
                w.secs = wrk_time_us(secs.trim_end_matches(','))
                    .map(|us| us / 1e6)
                    .unwrap_or(0.0);
                w.read_bytes = wrk_bytes(bytes).unwrap_or(0.0);
            }
            ["Socket", "errors:", rest @ ..] => {
                w.socket_errors = rest
                    .iter()
                    .filter_map(|x| x.trim_end_matches(',').parse::<u64>().ok())
                    .sum();
            }
            ["Non-2xx", "or", "3xx", "responses:", n] => w.non2xx = n.parse().unwrap_or(0),
            _ => {}
        }
    }
    w.p50_us = p50.context("no 50% line")?;
    w.p99_us = p99.context("no 99% line")?;
    w.per_s = rps.context("no Requests/sec line")?;
    w.requests = total.context("no 'requests in' line")?;
    ensure!(w.requests > 0, "wrk completed no request");
    Ok(w)
}

impl WrkOut {
    pub(crate) fn fill(self, rec: &mut MeshRecord, b: &Pod, size: usize) {
        // wrk's request: "GET /f<size> HTTP/1.1\r\nHost: <ip>\r\n\r\n".
        let req_len = format!("GET /f{size} HTTP/1.1\r\nHost: {}\r\n\r\n", b.ipv4).len() as u64;
        rec.p50_us = Some(self.p50_us);
        rec.p99_us = Some(self.p99_us);
        rec.mean_us = Some(self.mean_us);
        rec.max_us = Some(self.max_us);
        rec.per_s = Some(self.per_s);
        rec.count = Some(self.requests);
        rec.measured_secs = Some(self.secs);
        rec.mb_per_s = Some(self.read_bytes / self.secs.max(1e-9) / 1e6);
        rec.bytes_moved = self.read_bytes as u64 + self.requests * req_len;
        rec.wrk_socket_errors = self.socket_errors;
        rec.wrk_non2xx = self.non2xx;
        rec.wrk_output = Some(self.output);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_wrk_output() {
        let out = "Running 3s test @ http://10.244.0.3/f100
  1 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   245.12us  100.00us   5.10ms   90.00%
    Req/Sec    32.10k     1.00k   34.00k    70.00%
  Latency Distribution
     50%  230.00us
     75%  260.00us
     90%  300.00us
     99%    1.20ms
  96300 requests in 3.00s, 45.67MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
Requests/sec:  32100.00
Transfer/sec:     15.22MB
";
        let w = parse_wrk(out).unwrap();
        assert_eq!(w.requests, 96300);
        assert!((w.p50_us - 230.0).abs() < 1e-9);
        assert!((w.p99_us - 1200.0).abs() < 1e-9);
        assert!((w.per_s - 32100.0).abs() < 1e-9);
        assert!((w.secs - 3.0).abs() < 1e-9);
        assert!((w.read_bytes - 45.67 * 1024.0 * 1024.0).abs() < 1.0);
        assert_eq!(w.socket_errors, 3);
        assert!((w.max_us - 5100.0).abs() < 1e-9);
        assert_eq!(wrk_bytes("512.00B"), Some(512.0));
        assert_eq!(wrk_time_us("1.50s"), Some(1.5e6));
    }
}
