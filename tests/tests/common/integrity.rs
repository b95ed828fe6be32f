//! Helpers shared by the integrity suites.

#![allow(dead_code)]

use std::{
    process::{Command, Output},
    sync::{RwLock, RwLockReadGuard},
    thread,
    time::{Duration, Instant},
};

use accel_test_harness::{
    Capture, CaptureCounts, Daemon, TestEnv, Value, free_port, map_entries,
    traffic::{Delta, measured, run_driver},
};

pub static DRIVER: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| accel_test_harness::integrity_bin().display().to_string());

pub static NODE_WIDE: RwLock<()> = RwLock::new(());

/// The daemon's default `--flow-budget-bytes`.
pub const FLOW_BUDGET: u64 = 4 << 20;

/// The read side of `NODE_WIDE`, a test environment and its daemon with
/// default flags. Bind all three (`_shared`, not `_`): they drop in reverse,
/// the daemon first and the lock last.
pub fn shared_env_with_daemon(tag: &str) -> (RwLockReadGuard<'static, ()>, TestEnv, Daemon) {
    let shared = NODE_WIDE.read().unwrap_or_else(|e| e.into_inner());
    let env = TestEnv::new(tag);
    let daemon = env.start_daemon(&[]);
    (shared, env, daemon)
}

pub fn soak() -> bool {
    std::env::var_os("ACCEL_SOAK").is_some()
}

/// Runs the driver inside the test's cgroup (accelerated), returning its
/// output and JSON report.
pub fn drive(env: &TestEnv, args: &[&str]) -> (Output, Value) {
    let mut cmd = Command::new(DRIVER.as_str());
    let _procs = env.in_cgroup(&mut cmd);
    run_driver(cmd, args)
}

/// `drive`, with the counters' movements during the run.
pub fn drive_measured(env: &TestEnv, args: &[&str]) -> (Output, Value, Delta) {
    let ((out, report), d) = measured(env, || drive(env, args));
    (out, report, d)
}

/// `drive_measured` of `command` on a loopback port of its own, captured
/// (the counts of that port's segments come last).
pub fn drive_captured(
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
pub fn assert_maps_drained(env: &TestEnv) {
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

pub const SEND_ALL: &str = "write,msg-more,cork,writev,sendfile,splice";

/// Every receive interface but splice: splice readers cannot see redirected
/// bytes, so the default mode never redirects to them (transparency.rs).
pub const RECV_WORKING: &str = "read,recv,readv,peek,fionread,poll,epoll-et,nonblock";

/// [`RECV_WORKING`] but FIONREAD, for streams in `all` that outrun the flow
/// budget: once part of a stream arrives by TCP, FIONREAD reads 0 on kernels
/// without the upstream fix (docs/known-issues.md, I-4). transparency.rs
/// covers FIONREAD readers over the budget in the default mode.
pub fn recv_working_over_budget() -> String {
    RECV_WORKING
        .split(',')
        .filter(|mode| *mode != "fionread")
        .collect::<Vec<_>>()
        .join(",")
}
