//! Running the traffic drivers (accel-integrity) and reading what they did:
//! their JSON report, and the datapath counters' movements meanwhile.

use std::process::{Command, Output, Stdio};

use crate::{TestEnv, Value, counter_of};

/// Runs a prepared driver command (placed by the caller: a pod, a cgroup)
/// to completion and returns its output and last JSON line.
pub fn run_driver(mut cmd: Command, args: &[&str]) -> (Output, Value) {
    let out = cmd
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run accel-integrity");
    let report = driver_report(&String::from_utf8_lossy(&out.stdout), &out, args);
    (out, report)
}

/// The driver's report: the last JSON line of its `stdout`.
pub fn driver_report(stdout: &str, out: &Output, args: &[&str]) -> Value {
    stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| {
            panic!(
                "accel-integrity {args:?} printed no report (exit {:?}); stderr: {}",
                out.status.code(),
                String::from_utf8_lossy(&out.stderr)
            )
        })
}

pub fn assert_clean(what: &str, out: &Output, report: &Value) {
    assert!(
        out.status.success(),
        "{what}: exit {:?}\nreport: {report}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Counter deltas between two `status --json` snapshots.
pub struct Delta {
    pub before: Value,
    pub after: Value,
}

impl Delta {
    pub fn of(&self, name: &str) -> u64 {
        counter_of(&self.after, name) - counter_of(&self.before, name)
    }

    pub fn show(&self) -> String {
        [
            "active_paired",
            "passive_paired",
            "redirect_msgs",
            "redirect_bytes",
            "redirect_failed",
            "pass_msgs",
            "pass_bytes",
            "flow_reader_behind_to_tcp",
            "flow_resumed_redirect",
            "stream_writer_left_sockhash",
            "stream_writer_left_bytes",
        ]
        .iter()
        .map(|c| format!("{c}={}", self.of(c)))
        .collect::<Vec<_>>()
        .join(" ")
    }
}

/// What `f` returned, and the counters' movements while it ran.
pub fn measured<T>(env: &TestEnv, f: impl FnOnce() -> T) -> (T, Delta) {
    let before = env.status_json();
    let result = f();
    let d = Delta {
        before,
        after: env.status_json(),
    };
    (result, d)
}
