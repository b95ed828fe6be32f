//! `accel-bench loopback` end to end, shortest form: one placement, one
//! repeat, every workload (request/response, stream, connection churn) on
//! plain TCP, accelerated TCP and a Unix socket. The benchmark exits non-zero
//! unless every run moved its bytes exactly and every accelerated run is
//! proven by the datapath counters and left the socket maps empty, so its
//! exit status is the check; the report must hold each workload's table,
//! and (`--bpf-stats`) what the kernel counted of the datapath's programs.
//!
//! The benchmark makes its own sibling cgroups, pin dir and state dir and
//! removes them on exit (bench/src/sandbox.rs); it never touches the root
//! cgroup.

use std::{path::PathBuf, process::Command};

use accel_test_harness::{daemon_bin, require_root, workspace_bin};

#[test]
fn loopback_benchmark_proves_every_workload() {
    require_root();
    let bench = workspace_bin("accel-bench", "accel-bench", "ACCEL_BENCH_BIN");
    let out_dir = OutDir::new();
    let out = Command::new(&bench)
        .args(["loopback", "--worker-io", "epoll", "--repeats", "1"])
        .args([
            "--duration",
            "0.2",
            "--sizes",
            "1K",
            "--stream-extra-sizes",
            "100",
        ])
        .args(["--churn-sizes", "100", "--placements", "one-core"])
        .arg("--bpf-stats")
        .arg("--daemon-bin")
        .arg(daemon_bin())
        .arg("--out-dir")
        .arg(&out_dir.0)
        .output()
        .expect("running accel-bench loopback");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "accel-bench loopback failed ({}):\n{stderr}",
        out.status
    );
    let md = std::fs::read_to_string(out_dir.0.join("loopback.md"))
        .expect("the benchmark wrote loopback.md");
    for heading in [
        "### Request/response",
        "### Streaming",
        "### Connection churn",
    ] {
        assert!(md.contains(heading), "no {heading:?} in the report:\n{md}");
    }
    assert!(
        md.contains("| connection setup (churn connections/s) within 3 % of plain TCP |"),
        "no churn target row in the report:\n{md}"
    );
    // Each round trip is two sends, each one sk_msg run; each connection
    // runs sock_ops on both ends (establishment, state changes, the
    // kernel's own callbacks).
    let sk_msg_per_round_trip = program_column(&md, "| one-core | rr | 1 KiB | round trip |", 7);
    assert!(
        (1.5..=2.5).contains(&sk_msg_per_round_trip),
        "sk_msg runs per round trip {sk_msg_per_round_trip}:\n{md}"
    );
    let sock_ops_per_connection =
        program_column(&md, "| one-core | churn | 100 B | connection |", 5);
    assert!(
        sock_ops_per_connection >= 4.0,
        "sock_ops runs per connection {sock_ops_per_connection}:\n{md}"
    );
}

/// Column `col` (1-based, between the pipes) of the programs' table row
/// that starts with `row`.
fn program_column(md: &str, row: &str, col: usize) -> f64 {
    let line = md
        .lines()
        .find(|l| l.starts_with(row))
        .unwrap_or_else(|| panic!("no programs row {row:?} in the report:\n{md}"));
    line.split('|')
        .nth(col)
        .and_then(|c| c.trim().parse().ok())
        .unwrap_or_else(|| panic!("column {col} of {line:?} is not a number"))
}

/// The report's directory, removed even when the test fails.
struct OutDir(PathBuf);

impl OutDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("accel-bench-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("creating the report directory");
        OutDir(dir)
    }
}

impl Drop for OutDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
