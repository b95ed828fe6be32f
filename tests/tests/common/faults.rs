//! Helpers shared by the faults suites.

#![allow(dead_code)]

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use accel_test_harness::{LoadReport, TestEnv, Value, assert_clean_load, daemon_bin, set_flag};

pub static LOADGEN: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| accel_test_harness::loadgen_bin().display().to_string());

/// Concurrent connections kept busy through every fault.
pub const CONNS: usize = 20;

/// Message sizes each connection cycles through: a byte, a segment, 64 KiB.
pub const SIZES: &str = "1,1500,65536";

/// Continuous echo traffic inside the test's cgroup. The load binds port 0
/// itself: nothing else needs its port, and a port chosen here could be
/// taken (by any connect() on the node) before the load binds it.
pub fn spawn_load(env: &TestEnv, conns: usize, duration_ms: u64) -> Child {
    let (mut cmd, _procs) = env.loadgen(
        LOADGEN.as_str(),
        0,
        &[
            "--conns",
            &conns.to_string(),
            "--sizes",
            SIZES,
            "--duration-ms",
            &duration_ms.to_string(),
        ],
    );
    cmd.stdin(Stdio::null())
        .spawn()
        .expect("spawn accel-loadgen")
}

/// Whether a running load is still there, or how it ended: for the message
/// of a check that found no traffic.
pub fn load_state(load: &mut Child) -> String {
    match load.try_wait() {
        Ok(None) => "the load is still running".into(),
        Ok(Some(status)) => {
            let mut stderr = String::new();
            if let Some(mut e) = load.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
            }
            format!("the load exited ({status}): {}", stderr.trim())
        }
        Err(e) => format!("the load cannot be waited for: {e}"),
    }
}

pub fn finish_load(child: Child) -> LoadReport {
    let out = child.wait_with_output().expect("wait accel-loadgen");
    let r = assert_clean_load(&out, CONNS);
    eprintln!(
        "traffic: {} connections, {} messages, {} bytes each way, byte-exact",
        r.connections, r.messages, r.bytes_each_way
    );
    r
}

pub fn status_at(pin_dir: &Path, state_dir: &Path) -> Value {
    let out = Command::new(daemon_bin())
        .arg("status")
        .arg("--json")
        .arg("--pin-dir")
        .arg(pin_dir)
        .arg("--state-dir")
        .arg(state_dir)
        .stdin(Stdio::null())
        .output()
        .expect("accel-daemon status");
    assert!(
        out.status.success(),
        "status failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("status --json is JSON")
}

pub fn program_id(status: &Value) -> u64 {
    status["datapath"]["sock_ops_program_id"]
        .as_u64()
        .unwrap_or_else(|| panic!("no datapath in status: {status}"))
}

/// Program ids attached to the cgroup (bpftool's view, not the daemon's).
pub fn attached_ids(cgroup: &Path) -> Vec<u64> {
    let out = Command::new("bpftool")
        .args(["cgroup", "show"])
        .arg(cgroup)
        .arg("-j")
        .output()
        .expect("bpftool");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Array(vec![]));
    v.as_array()
        .map(|a| a.iter().filter_map(|p| p["id"].as_u64()).collect())
        .unwrap_or_default()
}

/// `run` arguments of `env` with another pin dir.
pub fn args_with_pin_dir(env: &TestEnv, pin_dir: &Path, extra: &[&str]) -> Vec<String> {
    let mut args = env.run_args(extra);
    set_flag(&mut args, "--pin-dir", &pin_dir.display().to_string());
    args
}

pub fn wait_for(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if ok() {
            return true;
        }
        thread::sleep(Duration::from_millis(100));
    }
    eprintln!("gave up waiting for {what} after {timeout:?}");
    ok()
}

/// Long variants run with ACCEL_SOAK=1.
pub fn soak() -> bool {
    std::env::var_os("ACCEL_SOAK").is_some()
}
