//! Data integrity through accelerated connections (reliability issue,
//! sections 1 and 1b): every byte of every connection is checked against a
//! per-connection, position-dependent stream (accel-integrity's pattern),
//! and every test proves that the path under test really was the sockmap
//! one (redirect counters, zero PSH segments where no fallback is allowed).
//!
//! The backpressure test reads the node-wide TCP memory counter, so it takes
//! the write side of `NODE_WIDE` while every other test here holds the read
//! side: it never runs next to another test of this binary.
//!
//! Default sizes run in CI; `ACCEL_SOAK=1` runs the long variants.

use std::{
    process::{Command, Output, Stdio},
    sync::{RwLock, RwLockReadGuard},
    thread,
    time::{Duration, Instant},
};

use accel_test_harness::{
    Capture, CaptureCounts, Daemon, TestEnv, Value, free_port, map_entries, peak_tcp_mem,
    spawn_listening,
    traffic::{Delta, assert_clean, measured, run_driver},
};
use accel_topology::{Node, Pod, PodsFile};

static DRIVER: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| accel_test_harness::integrity_bin().display().to_string());

static NODE_WIDE: RwLock<()> = RwLock::new(());

/// The daemon's default `--flow-budget-bytes`.
const FLOW_BUDGET: u64 = 4 << 20;

/// The read side of `NODE_WIDE`, a test environment and its daemon with
/// default flags. Bind all three (`_shared`, not `_`): they drop in reverse,
/// the daemon first and the lock last.
fn shared_env_with_daemon(tag: &str) -> (RwLockReadGuard<'static, ()>, TestEnv, Daemon) {
    let shared = NODE_WIDE.read().unwrap_or_else(|e| e.into_inner());
    let env = TestEnv::new(tag);
    let daemon = env.start_daemon(&[]);
    (shared, env, daemon)
}

fn soak() -> bool {
    std::env::var_os("ACCEL_SOAK").is_some()
}

/// Runs the driver inside the test's cgroup (accelerated), returning its
/// output and JSON report.
fn drive(env: &TestEnv, args: &[&str]) -> (Output, Value) {
    let mut cmd = Command::new(DRIVER.as_str());
    let _procs = env.in_cgroup(&mut cmd);
    run_driver(cmd, args)
}

/// `drive`, with the counters' movements during the run.
fn drive_measured(env: &TestEnv, args: &[&str]) -> (Output, Value, Delta) {
    let ((out, report), d) = measured(env, || drive(env, args));
    (out, report, d)
}

/// `drive_measured` of `command` on a loopback port of its own, captured
/// (the counts of that port's segments come last).
fn drive_captured(
    env: &TestEnv,
    command: &str,
    args: &[&str],
) -> (Output, Value, Delta, CaptureCounts) {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let cap = Capture::start(port);
    let (out, report, d) = drive_measured(env, &[&[command, "--listen", &listen], args].concat());
    (out, report, d, cap.stop())
}

/// Every recorded socket left the maps once its connection closed.
fn assert_maps_drained(env: &TestEnv) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let s = env.status_json();
        let left: Vec<(&str, u64)> = ["accel_sockhash", "accel_pairing"]
            .iter()
            .map(|m| (*m, map_entries(&s, m)))
            .filter(|(_, n)| *n > 0)
            .collect();
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "entries left behind: {left:?}");
        thread::sleep(Duration::from_millis(100));
    }
}

// ---------------------------------------------------------------------------
// 1. Traffic shapes and interfaces
// ---------------------------------------------------------------------------

const SEND_ALL: &str = "write,msg-more,cork,writev,sendfile,splice";
/// Every receive interface but splice: splice readers cannot see redirected
/// bytes, so the default mode never redirects to them (transparency.rs).
const RECV_WORKING: &str = "read,recv,readv,peek,fionread,poll,epoll-et,nonblock";

#[test]
fn a_thousand_concurrent_connections_with_random_sizes_are_byte_exact() {
    let (_shared, env, _daemon) = shared_env_with_daemon("int-echo");
    let (conns, msgs) = if soak() {
        ("1000", "40")
    } else {
        ("1000", "6")
    };
    let (out, report, d, counts) = drive_captured(
        &env,
        "echo",
        &[
            "--conns",
            conns,
            "--msgs",
            msgs,
            "--max-msg",
            "65536",
            "--big-conns",
            "16",
            "--big-max",
            "4194304",
            // Byte integrity in `all`, not I-5: the servers' blocking reads
            // wait in poll() when woken without data (transparency.rs keeps
            // blocking servers that fail on it).
            "--server-polls",
        ],
    );
    eprintln!(
        "echo: {report}\ncounters: {}\ncapture: {counts:?}",
        d.show()
    );
    assert_clean("1000 connections", &out, &report);
    let bytes = report["bytes_each_way"].as_u64().expect("bytes");
    let n: u64 = conns.parse().expect("conns");
    assert!(
        d.of("active_paired") >= n && d.of("passive_paired") >= n,
        "every connection paired: {}",
        d.show()
    );
    assert_eq!(d.of("redirect_failed"), 0, "{}", d.show());
    // Both directions, every byte: by redirect, or by TCP where flow control
    // sent a lagging reader's bytes over TCP (counted as pass_bytes).
    assert_eq!(
        d.of("redirect_bytes") + d.of("pass_bytes"),
        2 * bytes,
        "every byte accounted for: {}",
        d.show()
    );
    // The 16 connections with messages up to 4 MiB outrun their echo reader
    // by more than the flow-control budget now and then, and flow control
    // then (correctly) sends by TCP; the other 984 never can.
    assert!(
        d.of("redirect_bytes") > d.of("pass_bytes"),
        "most bytes redirected: {}",
        d.show()
    );
    if d.of("pass_bytes") == 0 {
        assert_eq!(
            counts.psh_data, 0,
            "nothing sent by TCP, yet PSH segments: {counts:?}"
        );
    }
    assert_maps_drained(&env);
}

#[test]
fn every_send_interface_against_every_receive_interface_is_byte_exact() {
    let (_shared, env, _daemon) = shared_env_with_daemon("int-matrix");
    let (conns, bytes, max_msg) = if soak() {
        (4u64, 16u64 << 20, 4u64 << 20)
    } else {
        (2, 2 << 20, 1 << 20)
    };
    let pairs = 6 * 8;
    let (out, report, d, counts) = drive_captured(
        &env,
        "stream",
        &[
            "--send",
            SEND_ALL,
            "--recv",
            RECV_WORKING,
            "--conns",
            &conns.to_string(),
            "--bytes",
            &bytes.to_string(),
            "--max-msg",
            &max_msg.to_string(),
            "--timeout-secs",
            "240",
        ],
    );
    eprintln!(
        "matrix: {report}\ncounters: {}\ncapture: {counts:?}",
        d.show()
    );
    assert_clean("send x receive matrix", &out, &report);
    let n = pairs * conns;
    assert!(d.of("active_paired") >= n, "{}", d.show());
    assert_eq!(d.of("redirect_failed"), 0, "{}", d.show());
    // Each connection also sends a 16-byte header naming its receive mode.
    let total = n * (bytes + 16);
    assert_eq!(
        d.of("redirect_bytes") + d.of("pass_bytes"),
        total,
        "every byte accounted for: {}",
        d.show()
    );
    if bytes + 16 < FLOW_BUDGET {
        // A reader cannot lag by more than the whole stream: flow control
        // can never engage, so every byte must have been redirected.
        assert_eq!(d.of("pass_bytes"), 0, "{}", d.show());
        assert_eq!(counts.psh_data, 0, "accelerated, yet PSH: {counts:?}");
    } else {
        // Soak: 16 MiB streams of up to 4 MiB messages do outrun readers;
        // flow control's TCP share is reported, integrity is the subject.
        assert!(d.of("redirect_bytes") > 0, "{}", d.show());
    }
    assert_maps_drained(&env);
}

fn half_close(env: &TestEnv, first: &str, recv: &str) -> (Output, Value, Delta) {
    let conns = if soak() { "500" } else { "50" };
    let (out, report, d) = drive_measured(
        env,
        &[
            "half-close",
            "--first",
            first,
            "--recv",
            recv,
            "--conns",
            conns,
            "--bytes",
            "262144",
            "--timeout-secs",
            if soak() { "600" } else { "60" },
        ],
    );
    eprintln!(
        "half-close first={first} recv={recv}: {report}\ncounters: {}",
        d.show()
    );
    (out, report, d)
}

/// Half-close in both directions (the connecting side shuts down first, or
/// the accepting side does), read by non-blocking readers driven by poll or
/// edge-triggered epoll, which tolerate an empty wake-up: every byte of both
/// halves arrives, in order, then EOF. Blocking readers: see the next test.
#[test]
fn half_close_in_both_directions_delivers_every_byte_then_eof() {
    let (_shared, env, _daemon) = shared_env_with_daemon("int-half");
    for first in ["client", "server"] {
        for recv in ["poll", "epoll-et", "nonblock"] {
            let (out, report, d) = half_close(&env, first, recv);
            assert_clean(&format!("half-close {first} first, {recv}"), &out, &report);
            let conns = report["conns"].as_u64().expect("conns");
            assert!(d.of("active_paired") >= conns, "{}", d.show());
            assert!(
                d.of("redirect_bytes") > 0,
                "half-close traffic was not redirected: {}",
                d.show()
            );
        }
    }
    assert_maps_drained(&env);
}

fn rst(env: &TestEnv, conns: &str, recv: &str) -> (Output, Value, Delta) {
    let (out, report, d) = drive_measured(
        env,
        &[
            "rst",
            "--conns",
            conns,
            "--bytes",
            "4194304",
            "--every",
            "4",
            "--recv",
            recv,
            "--timeout-secs",
            "120",
        ],
    );
    eprintln!("rst (readers: {recv}): {report}\ncounters: {}", d.show());
    (out, report, d)
}

/// A quarter of the connections are reset mid-stream (SO_LINGER 0 close),
/// half of those by the sender, half by the reader. Readers are
/// non-blocking (poll), since a blocking reader can see EAGAIN after a
/// reset (next test). Every byte a reader got is checked, a reset reader
/// sees ECONNRESET or EOF, and the other connections complete intact.
#[test]
fn rst_mid_stream_never_delivers_wrong_bytes_and_spares_other_connections() {
    let (_shared, env, _daemon) = shared_env_with_daemon("int-rst");
    let conns = if soak() { "400" } else { "100" };
    let (out, report, d) = rst(&env, conns, "poll");
    assert_clean("RST mid-stream", &out, &report);
    let n: u64 = conns.parse().expect("conns");
    assert_eq!(report["intact"].as_u64(), Some(n * 3 / 4), "{report}");
    assert_eq!(
        report["reset_by_sender"].as_u64().unwrap_or(0)
            + report["reset_by_reader"].as_u64().unwrap_or(0),
        n / 4,
        "{report}"
    );
    assert!(d.of("active_paired") >= n, "{}", d.show());
    assert!(d.of("redirect_bytes") > 0, "{}", d.show());
    // A reader that resets takes its socket out of the sockhash; a send
    // racing that close finds no peer and goes to TCP, which the RST then
    // refuses, as it would without us. Only those senders may see it.
    let reset_by_reader = report["reset_by_reader"].as_u64().unwrap_or(0);
    assert!(
        d.of("redirect_failed") <= reset_by_reader,
        "redirect_failed beyond the {reset_by_reader} reader-reset connections: {}",
        d.show()
    );
    assert_maps_drained(&env);
}

// ---------------------------------------------------------------------------
// End to end: nginx -> two sidecars -> curl
// ---------------------------------------------------------------------------

fn sha256sum(path: &std::path::Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("FAILING LOUDLY: sha256sum (coreutils) is needed");
    assert!(out.status.success(), "sha256sum {}", path.display());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// nginx in pod B serves a large file (64 MiB; 1 GiB with ACCEL_SOAK=1) to
/// curl in pod A: curl -> A's sidecar -> B's sidecar -> nginx, every leg a
/// paired connection. No capture here (a TCP fallback would make a capture
/// of a GiB): the counters show which bytes were redirected.
#[test]
fn nginx_serves_a_large_file_to_curl_through_two_sidecars_sha256_equal() {
    use std::io::Write;
    let _shared = NODE_WIDE.read().unwrap_or_else(|e| e.into_inner());
    let env = TestEnv::new("int-nginx");
    let node = Node::new(&env, "ng");
    let [a, b] = node.meshed_pods(["a", "b"]);
    b.start_nginx_with(b"placeholder", true);
    let size: usize = if soak() { 1 << 30 } else { 64 << 20 };
    let served = b.dir.join("nginx/www/big");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&served).expect("file"));
        const CHUNK: usize = 1 << 20;
        for i in 0..size / CHUNK {
            // Distinct chunks: a reordered or repeated chunk changes the hash.
            f.write_all(&accel_test_harness::pattern::bytes(i as u64, 0, CHUNK))
                .expect("write");
        }
        f.flush().expect("flush");
    }
    let pods = PodsFile::write(&env, &[(&a, ""), (&b, "")]).expect("pods file");
    let _daemon = env.start_daemon(&["--pods-file", &pods.arg()]);
    let got = a.dir.join("big.out");
    let started = Instant::now();
    let ((), d) = measured(&env, || {
        let out = a
            .command("curl")
            .args(["-sS", "-g", "--fail", "--max-time", "900", "-o"])
            .arg(&got)
            .arg(format!("http://{}/big", b.ipv4))
            .stdin(Stdio::null())
            .output()
            .expect("FAILING LOUDLY: curl is needed");
        assert!(
            out.status.success(),
            "curl failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
    let secs = started.elapsed().as_secs_f64();
    let (want, have) = (sha256sum(&served), sha256sum(&got));
    let _ = std::fs::remove_file(&got);
    eprintln!(
        "nginx -> curl: {} MiB in {secs:.1} s, sha256 {have}\ncounters: {}",
        size >> 20,
        d.show()
    );
    assert_eq!(have, want, "the file arrived different");
    assert!(
        d.of("passive_paired") >= 3,
        "three legs paired: {}",
        d.show()
    );
    // Every leg carries the file through recorded sockets once. (Measured:
    // the counters account for ~99.6% of 3 x the file here, exactly 100% on
    // loopback: after a failed non-blocking TCP send the kernel sends the
    // next message on its cached verdict, unseen by sk_msg, RELIABILITY.md
    // I-6. The sha256 above is the integrity check.)
    let carried = d.of("redirect_bytes") + d.of("pass_bytes");
    assert!(
        carried * 100 >= 3 * size as u64 * 99,
        "all three legs carried it through recorded sockets: {}",
        d.show()
    );
    // Flow control moves a lagging leg to TCP (see flow_control.rs), so only
    // part of a bulk download is redirected; it must be a real part.
    assert!(
        d.of("redirect_bytes") >= (size as u64 / 4).min(32 << 20),
        "hardly redirected: {}",
        d.show()
    );
    assert_eq!(d.of("redirect_failed"), 0, "{}", d.show());
}

// ---------------------------------------------------------------------------
// 1b. Backpressure
// ---------------------------------------------------------------------------

/// The slow readers of every backpressure case: blocking reads of at most
/// 16 KiB, a 0.5 ms pause after each.
const SLOW_READERS: [&str; 6] = ["--recv", "read", "--max-read", "16384", "--delay-us", "500"];

/// 100 loopback streams inside `pod` into slow readers: in the test's
/// cgroup (accelerated) or outside it (plain TCP, same namespace).
fn loopback_slow_readers(pod: &Pod, accelerated: bool, conns: u64, bytes: u64) -> (Value, u64) {
    let cmd = if accelerated {
        pod.command(DRIVER.as_str())
    } else {
        pod.admin(DRIVER.as_str())
    };
    let (conns, bytes) = (conns.to_string(), bytes.to_string());
    let mut report = Value::Null;
    let peak = peak_tcp_mem(|| {
        let (out, r) = run_driver(
            cmd,
            &[
                &[
                    "stream",
                    "--listen",
                    "127.0.0.1:9200",
                    "--send",
                    "write",
                    "--conns",
                    &conns,
                    "--bytes",
                    &bytes,
                    "--max-msg",
                    "65536",
                    "--timeout-secs",
                    "900",
                ],
                &SLOW_READERS[..],
            ]
            .concat(),
        );
        assert_clean(
            &format!("loopback slow readers, accelerated {accelerated}"),
            &out,
            &r,
        );
        report = r;
    });
    (report, peak)
}

/// Fast writers in pod A -> A's sidecar -> B's sidecar -> slow readers in B.
fn mesh_slow_readers(a: &Pod, b: &Pod, conns: u64, bytes: u64) -> u64 {
    let (conns, bytes) = (conns.to_string(), bytes.to_string());
    let (sink, mut lines) = spawn_listening(
        b.command(DRIVER.as_str())
            .args(["sink", "--listen", "0.0.0.0:9100"])
            .args([
                "--conns",
                &conns,
                "--bytes",
                &bytes,
                "--timeout-secs",
                "900",
            ])
            .args(SLOW_READERS),
    );
    let target = b.addr_v4(9100).to_string();
    let peak = peak_tcp_mem(|| {
        let (out, r) = run_driver(
            a.command(DRIVER.as_str()),
            &[
                "source",
                "--connect",
                &target,
                "--conns",
                &conns,
                "--bytes",
                &bytes,
                "--max-msg",
                "65536",
                "--timeout-secs",
                "900",
            ],
        );
        assert_clean("fast writers through the sidecars", &out, &r);
    });
    let report = lines.next().and_then(Result::ok).unwrap_or_default();
    let out = sink.wait_with_output().expect("sink");
    assert!(
        out.status.success(),
        "slow readers behind the sidecars failed: {report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    peak
}

fn assert_near_plain(what: &str, accel: u64, plain: u64) {
    eprintln!(
        "{what}: peak node TCP memory plain {} KiB, accelerated {} KiB ({:.2}x)",
        plain >> 10,
        accel >> 10,
        accel as f64 / plain.max(1) as f64
    );
    assert!(
        accel <= 4 * plain,
        "{what}: accelerated peak {accel} B > 4 x plain {plain} B"
    );
}

/// 100 fast writers into 100 slow readers (reads of at most 16 KiB, 0.5 ms
/// pause after each), plain TCP and accelerated in the same test, on
/// loopback inside a meshed pod and from pod A through both sidecars to pod
/// B: the accelerated peak of node TCP memory stays within 4x plain TCP's,
/// no connection fails, every byte is checked, and the blocking readers
/// never see EAGAIN (the driver fails the connection if they do).
#[test]
fn a_hundred_slow_readers_stay_near_plain_tcp_memory_without_failures() {
    let _exclusive = NODE_WIDE.write().unwrap_or_else(|e| e.into_inner());
    let env = TestEnv::new("int-backpressure");
    let node = Node::new(&env, "bp");
    let [a, b] = node.meshed_pods(["a", "b"]);
    let (runs, bytes) = if soak() {
        (3, 32u64 << 20)
    } else {
        (1, 8 << 20)
    };
    let conns = 100u64;
    // Through the sidecars with nothing attached yet: the plain baseline.
    let started = Instant::now();
    let mesh_plain = mesh_slow_readers(&a, &b, conns, bytes);
    eprintln!(
        "through the sidecars, plain: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let pods = PodsFile::write(&env, &[(&a, ""), (&b, "")]).expect("pods file");
    let _daemon = env.start_daemon(&["--pods-file", &pods.arg()]);
    let mut engaged = 0;
    for run in 0..runs {
        let (_, plain) = loopback_slow_readers(&a, false, conns, bytes);
        let started = Instant::now();
        let ((_, accel), d) = measured(&env, || loopback_slow_readers(&a, true, conns, bytes));
        eprintln!(
            "run {run}: loopback accelerated {:.1} s, counters {}",
            started.elapsed().as_secs_f64(),
            d.show()
        );
        assert!(d.of("active_paired") >= conns, "{}", d.show());
        assert!(d.of("redirect_bytes") > 0, "not accelerated: {}", d.show());
        engaged += d.of("flow_reader_behind_to_tcp");
        assert_near_plain(&format!("run {run}, loopback"), accel, plain);

        let started = Instant::now();
        let (accel, d) = measured(&env, || mesh_slow_readers(&a, &b, conns, bytes));
        eprintln!(
            "run {run}: through the sidecars accelerated {:.1} s, counters {}",
            started.elapsed().as_secs_f64(),
            d.show()
        );
        assert!(d.of("passive_paired") >= 3 * conns, "{}", d.show());
        assert!(d.of("redirect_bytes") > 0, "not accelerated: {}", d.show());
        engaged += d.of("flow_reader_behind_to_tcp");
        assert_near_plain(
            &format!("run {run}, through both sidecars"),
            accel,
            mesh_plain,
        );
    }
    assert!(engaged > 0, "the slow readers never engaged flow control");
}
