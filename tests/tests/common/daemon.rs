//! Helpers shared by the daemon suites.

#![allow(dead_code)]

use std::process::{Child, Output, Stdio};

use accel_test_harness::TestEnv;

pub static LOADGEN: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| accel_test_harness::loadgen_bin().display().to_string());

pub fn loadgen(env: &TestEnv, port: u16, args: &[&str]) -> Output {
    let (mut cmd, _procs) = env.loadgen(LOADGEN.as_str(), port, args);
    cmd.stdin(Stdio::null()).output().expect("run loadgen")
}

pub fn spawn_loadgen(env: &TestEnv, port: u16, args: &[&str]) -> Child {
    let (mut cmd, _procs) = env.loadgen(LOADGEN.as_str(), port, args);
    cmd.stdin(Stdio::piped()).spawn().expect("spawn loadgen")
}

/// `conns` connections cycling through the message `sizes` for
/// `duration_ms`.
pub fn spawn_timed_load(
    env: &TestEnv,
    port: u16,
    conns: usize,
    sizes: &str,
    duration_ms: u64,
) -> Child {
    spawn_loadgen(
        env,
        port,
        &[
            "--conns",
            &conns.to_string(),
            "--sizes",
            sizes,
            "--duration-ms",
            &duration_ms.to_string(),
        ],
    )
}
