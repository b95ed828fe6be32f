//! Flow control: a fast writer and a slow reader must not make the kernel
//! queue much more than plain TCP would. The only test in its binary, since
//! the kernel's TCP memory counter (/proc/net/sockstat) is node-wide.

use std::{
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::Duration,
};

use accel_tests::{TestEnv, counter_of, free_port, parse_load_report};

const LOADGEN: &str = env!("CARGO_BIN_EXE_accel-loadgen");
const PAGE: u64 = 4096;

fn tcp_mem_pages() -> u64 {
    std::fs::read_to_string("/proc/net/sockstat")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("TCP:")).and_then(|l| {
                l.split_whitespace()
                    .skip_while(|w| *w != "mem")
                    .nth(1)
                    .map(str::to_owned)
            })
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Runs a slow-reader stream (in `env`'s cgroup when `accelerated`) and
/// returns the peak TCP memory above the starting level, in bytes.
fn slow_reader_stream(env: &TestEnv, accelerated: bool) -> u64 {
    let base = tcp_mem_pages();
    let peak = Arc::new(AtomicU64::new(base));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, stop) = (peak.clone(), stop.clone());
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(tcp_mem_pages(), Ordering::Relaxed);
                thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let mut cmd = Command::new(LOADGEN);
    cmd.arg("--listen")
        .arg(format!("127.0.0.1:{}", free_port()))
        .args(["--conns", "1", "--stream-bytes", "67108864"])
        .args(["--read-size", "16384", "--reader-delay-us", "500"])
        .stdin(Stdio::null());
    let _procs = accelerated.then(|| env.in_cgroup(&mut cmd));
    let out = cmd.output().expect("loadgen");
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    let r = parse_load_report(&out);
    assert!(
        r.errors.is_empty() && out.status.success(),
        "stream broke (accelerated {accelerated}): {:?} {}",
        r.errors,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(r.bytes_each_way, 64 << 20);
    peak.load(Ordering::Relaxed).saturating_sub(base) * PAGE
}

#[test]
fn a_slow_reader_never_makes_the_kernel_queue_much_more_than_plain_tcp() {
    let env = TestEnv::new("flow");
    let _daemon = env.start_daemon(&[]);
    let status = env.status_json();
    let flow = status["daemon"]["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "flow control"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        flow["ok"], true,
        "flow control must be available on this kernel: {flow}"
    );

    let plain = slow_reader_stream(&env, false);
    let before = env.status_json();
    let accel = slow_reader_stream(&env, true);
    let after = env.status_json();
    let redirected = counter_of(&after, "redirect_bytes") - counter_of(&before, "redirect_bytes");
    let to_tcp = counter_of(&after, "flow_reader_behind_to_tcp")
        - counter_of(&before, "flow_reader_behind_to_tcp");
    eprintln!(
        "peak TCP memory above baseline: plain {} KiB, accelerated {} KiB; \
         redirected {redirected} B, switched to TCP {to_tcp} times",
        plain / 1024,
        accel / 1024
    );
    assert!(redirected > 0, "the stream was not accelerated at all");
    assert!(to_tcp > 0, "the slow reader never triggered flow control");
    // Naive redirect queued the whole 64 MiB; plain TCP holds a few MiB.
    let limit = (4 * plain).max(16 << 20);
    assert!(
        accel <= limit,
        "accelerated stream queued {accel} B, plain TCP {plain} B (limit {limit} B)"
    );
}
