//! The daemon's and the pods' resource use, read from /proc and the cgroup.

use std::{fs, path::Path};

use accel_test_harness::TestEnv;
use anyhow::{Context, Result, bail, ensure};
use serde::Serialize;

/// Daemon memory and CPU, from /proc.
#[derive(Debug, Clone, Copy, Serialize, Default)]
pub struct ProcSample {
    pub rss_kib: u64,
    /// The parts of the RSS: anonymous memory (heap, stacks, maps' user
    /// copies) and file-backed pages (mostly the binary itself).
    pub rss_anon_kib: u64,
    pub rss_file_kib: u64,
    pub hwm_kib: u64,
    /// utime + stime in clock ticks.
    pub cpu_ticks: u64,
}

/// `pid`'s memory and CPU time now.
pub(crate) fn proc_sample(pid: u32) -> Result<ProcSample> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Fields after the command (which may hold spaces) start after ") ";
    // utime and stime are fields 14 and 15, i.e. 12th and 13th after it.
    let rest = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or("");
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    ensure!(f.len() > 12, "short /proc/{pid}/stat");
    Ok(ProcSample {
        rss_kib: kib("VmRSS:"),
        rss_anon_kib: kib("RssAnon:"),
        rss_file_kib: kib("RssFile:"),
        hwm_kib: kib("VmHWM:"),
        cpu_ticks: f[11] + f[12],
    })
}

/// Clock ticks per second (the unit of /proc/PID/stat's CPU times).
pub(crate) fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// The running daemon of `env`: the `accel-daemon run` whose command line
/// names this sandbox's pin dir.
pub(crate) fn daemon_pid(env: &TestEnv) -> Result<u32> {
    let pin = env.pin_dir.display().to_string();
    for e in fs::read_dir("/proc")?.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(cmd) = fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmd.split(|&b| b == 0).collect();
        if args.contains(&&b"run"[..]) && args.contains(&pin.as_bytes()) {
            return Ok(pid);
        }
    }
    bail!("no accel-daemon process with --pin-dir {pin}")
}

/// CPU time of every process in the cgroup so far (µs).
pub(crate) fn cgroup_cpu_usec(cg: &Path) -> Result<u64> {
    let s = fs::read_to_string(cg.join("cpu.stat"))
        .with_context(|| format!("reading {}/cpu.stat", cg.display()))?;
    s.lines()
        .find_map(|l| l.strip_prefix("usage_usec "))
        .and_then(|v| v.trim().parse().ok())
        .context("no usage_usec in cpu.stat")
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    #[test]
    fn samples_own_process() {
        let a = proc_sample(std::process::id()).unwrap();
        assert!(a.rss_kib > 0 && a.hwm_kib >= a.rss_kib, "{a:?}");
        assert!(a.rss_anon_kib + a.rss_file_kib <= a.rss_kib + 4, "{a:?}");
        // Burn CPU until the tick count moves (a loaded machine may give
        // this thread little CPU, so wait on CPU time, not wall time).
        let t = Instant::now();
        let mut x = 0u64;
        let b = loop {
            for _ in 0..1_000_000 {
                x = x.wrapping_mul(31).wrapping_add(7);
            }
            std::hint::black_box(x);
            let b = proc_sample(std::process::id()).unwrap();
            if b.cpu_ticks > a.cpu_ticks || t.elapsed() > Duration::from_secs(20) {
                break b;
            }
        };
        assert!(b.cpu_ticks > a.cpu_ticks, "{a:?} {b:?}");
    }
}
