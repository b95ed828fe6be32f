//! Child processes and polling: stderr collection, sinks that announce they
//! listen, free ports, waiting for a condition, sampling a peak.

use std::{
    fs,
    io::{BufRead, BufReader},
    process::{Child, ChildStdout, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

/// Node-wide TCP memory in pages: the `mem` field of the `TCP:` line of
/// /proc/net/sockstat (0 if it cannot be read).
fn tcp_mem_pages() -> u64 {
    fs::read_to_string("/proc/net/sockstat")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("TCP:"))?.to_string();
            let mut words = line.split_whitespace();
            words.find(|w| *w == "mem")?;
            words.next()?.parse().ok()
        })
        .unwrap_or(0)
}

/// Peak node TCP memory above the starting level while `f` runs, in bytes.
/// The counter is node-wide: other TCP traffic on the machine inflates it.
pub fn peak_tcp_mem(f: impl FnOnce()) -> u64 {
    peak_tcp_mem_while(Duration::from_millis(5), f).0
}

/// [`peak_tcp_mem`], sampled every `every`, with what `f` returned.
pub fn peak_tcp_mem_while<T>(every: Duration, f: impl FnOnce() -> T) -> (u64, T) {
    const PAGE: u64 = 4096;
    let base = tcp_mem_pages();
    let (peak, out) = peak_while(base, every, tcp_mem_pages, f);
    (peak.saturating_sub(base) * PAGE, out)
}

/// Runs `f` while a thread samples `sample` every `every`; returns the
/// largest sample (at least `floor`) and what `f` returned.
pub fn peak_while<T>(
    floor: u64,
    every: Duration,
    sample: impl Fn() -> u64 + Send + 'static,
    f: impl FnOnce() -> T,
) -> (u64, T) {
    let peak = Arc::new(AtomicU64::new(floor));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, stop) = (peak.clone(), stop.clone());
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(sample(), Ordering::Relaxed);
                thread::sleep(every);
            }
        })
    };
    let out = f();
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    (peak.load(Ordering::Relaxed), out)
}

/// A free TCP port on loopback (bound and released; tests use distinct ones).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Reads `child`'s piped stderr on a thread, handing each line to `on_line`;
/// the thread returns all of it once the child has closed it.
pub fn collect_stderr(
    child: &mut Child,
    mut on_line: impl FnMut(&str) + Send + 'static,
) -> thread::JoinHandle<String> {
    let stderr = child.stderr.take().expect("stderr piped");
    thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            on_line(&line);
            all.push_str(&line);
            all.push('\n');
        }
        all
    })
}

/// Spawns a sink (`cmd`: stdin closed, stdout and stderr piped) and returns
/// once it prints `listening`, with the rest of its stdout (its report).
pub fn spawn_listening(cmd: &mut Command) -> (Child, std::io::Lines<BufReader<ChildStdout>>) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let mut lines = BufReader::new(child.stdout.take().expect("stdout piped")).lines();
    let first = lines.next().and_then(Result::ok);
    if first.as_deref() != Some("listening") {
        let _ = child.kill();
        let out = child.wait_with_output().expect("wait for the sink");
        panic!(
            "{cmd:?} never said `listening` (first line {first:?}, exit {:?}); stderr: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    (child, lines)
}

/// Polls `f` every 20 ms until it holds; panics naming `what` after
/// `limit`. Returns how long it took.
pub fn wait_until(limit: Duration, what: &str, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if f() {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        thread::sleep(Duration::from_millis(20));
    }
}
