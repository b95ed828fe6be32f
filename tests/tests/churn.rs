//! Churn and capacity (reliability issue, section 4): a daemon with a
//! 1M-entry sockhash, short connections (connect, echo 64 bytes, close)
//! opened and closed as fast as this machine can for 10 s (60 s with
//! ACCEL_SOAK=1), every one byte-checked and accelerated; afterwards every
//! map is empty again, checked by the daemon's status and independently by
//! bpftool, and the daemon's resident memory did not grow.
//!
//! The issue asks for 50,000 connections/s; the test reports the rate this
//! machine reaches rather than asserting one (it depends on the cores).

use std::{
    path::Path,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use accel_test_harness::{Netns, TestEnv, Value, counter_of, peak_while};

static DRIVER: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| accel_test_harness::integrity_bin().display().to_string());
const SOCKHASH_SIZE: u64 = 1 << 20;
/// The default ratio of sockhash to pairing map (65536 : 16384): the
/// pairing map only holds handshakes in flight.
const PAIRING_SIZE: u64 = SOCKHASH_SIZE / 4;

fn soak() -> bool {
    std::env::var_os("ACCEL_SOAK").is_some()
}

fn map_field(status: &Value, name: &str, field: &str) -> u64 {
    status["datapath"]["maps"]
        .as_array()
        .and_then(|maps| maps.iter().find(|m| m["name"] == name))
        .and_then(|m| m[field].as_u64())
        .unwrap_or_else(|| panic!("map {name} {field} missing from status: {status}"))
}

/// The daemon of this test: the process whose command line names our pin dir.
fn daemon_pid(env: &TestEnv) -> u32 {
    let pin = env.pin_dir.display().to_string();
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| {
                    let args: Vec<String> = c
                        .split(|b| *b == 0)
                        .map(|a| String::from_utf8_lossy(a).into_owned())
                        .collect();
                    args.iter().any(|a| a == "run") && args.contains(&pin)
                })
                .unwrap_or(false)
        })
        .expect("the daemon's process")
}

fn vm_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .expect("VmRSS of the daemon")
}

/// Entries in a pinned map according to bpftool (not the daemon).
fn bpftool_entries(pin: &Path) -> usize {
    let out = Command::new("bpftool")
        .args(["map", "dump", "pinned"])
        .arg(pin)
        .arg("-j")
        .output()
        .expect("FAILING LOUDLY: bpftool is needed");
    assert!(
        out.status.success(),
        "bpftool map dump {}: {}",
        pin.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Array(vec![]));
    v.as_array().map(Vec::len).unwrap_or(0)
}

/// Runs the churn driver in `ns`, in the test's cgroup (accelerated) or
/// outside it (plain TCP, for the rate this machine reaches without us);
/// returns its report.
fn churn(env: &TestEnv, ns: &Netns, accelerated: bool, duration: Duration) -> Value {
    let mut cmd = ns.command(DRIVER.as_str());
    cmd.args(["churn", "--threads", "4", "--bytes", "64"])
        .args(["--duration-ms", &duration.as_millis().to_string()])
        .args(["--timeout-secs", &(duration.as_secs() + 120).to_string()])
        .stdin(Stdio::null());
    for port in 7001..=7004 {
        cmd.arg("--listen").arg(format!("127.0.0.1:{port}"));
    }
    let _procs = accelerated.then(|| env.in_cgroup(&mut cmd));
    let out = cmd.output().expect("run accel-integrity churn");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or(Value::Null);
    assert!(
        out.status.success(),
        "churn failed (exit {:?}): {report}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    report
}

#[test]
fn churn_at_full_speed_leaks_no_map_entry_and_no_daemon_memory() {
    let env = TestEnv::new("churn");
    let ns = Netns::new("churn");
    // Per-namespace: the whole port range for the clients' TIME_WAIT sockets.
    ns.exec_ok(&["sysctl", "-qw", "net.ipv4.ip_local_port_range=1024 65535"]);
    // Every connection recorded: this test is about capacity and cleanup,
    // so the short-lived rule (short_lived.rs) is off.
    let mut daemon = env.start_daemon(&[
        "--short-lived-after",
        "0",
        "--sockhash-size",
        &SOCKHASH_SIZE.to_string(),
        "--pairing-size",
        &PAIRING_SIZE.to_string(),
    ]);
    let status = env.status_json();
    assert_eq!(
        map_field(&status, "accel_sockhash", "capacity"),
        SOCKHASH_SIZE
    );
    assert_eq!(
        map_field(&status, "accel_pairing", "capacity"),
        PAIRING_SIZE
    );
    let pid = daemon_pid(&env);

    let plain = churn(&env, &ns, false, Duration::from_secs(3));
    // Warm-up: the daemon's allocations that any traffic causes once.
    churn(&env, &ns, true, Duration::from_secs(2));
    thread::sleep(Duration::from_millis(500));
    let rss_before = vm_rss_kib(pid);
    let before = env.status_json();

    let duration = Duration::from_secs(if soak() { 60 } else { 10 });
    let (peak, report) = peak_while(
        rss_before,
        Duration::from_millis(200),
        move || vm_rss_kib(pid),
        || churn(&env, &ns, true, duration),
    );

    // TIME_WAIT sockets are no longer full sockets; the last closes settle
    // within a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    let after = loop {
        let s = env.status_json();
        let left =
            map_field(&s, "accel_sockhash", "entries") + map_field(&s, "accel_pairing", "entries");
        if left == 0 || Instant::now() > deadline {
            break s;
        }
        thread::sleep(Duration::from_millis(200));
    };
    let rss_after = vm_rss_kib(pid);
    let delta = |c: &str| counter_of(&after, c) - counter_of(&before, c);
    let conns = report["connections"].as_u64().expect("connections");
    eprintln!(
        "plain TCP, same driver and namespace: {:.0}/s",
        plain["rate_per_s"].as_f64().unwrap_or(0.0)
    );
    eprintln!(
        "churn: {conns} connections in {:.1} s = {:.0}/s (per second: {}); \
         daemon VmRSS {rss_before} KiB before, {rss_after} KiB after, peak {} KiB\n\
         active_paired {} passive_paired {} redirect_msgs {} pairing_full {} record_failed {}",
        report["elapsed_s"].as_f64().unwrap_or(0.0),
        report["rate_per_s"].as_f64().unwrap_or(0.0),
        report["per_second"],
        peak,
        delta("active_paired"),
        delta("passive_paired"),
        delta("redirect_msgs"),
        delta("pairing_full"),
        delta("record_failed"),
    );
    assert_eq!(report["errors"], 0, "{report}");
    assert!(conns > 0);
    // Every connection was accelerated, both of its sends redirected.
    assert!(
        delta("active_paired") >= conns,
        "{}",
        delta("active_paired")
    );
    assert!(
        delta("passive_paired") >= conns,
        "{}",
        delta("passive_paired")
    );
    assert!(
        delta("redirect_msgs") >= 2 * conns,
        "{}",
        delta("redirect_msgs")
    );
    for c in [
        "pairing_full",
        "record_failed",
        "redirect_failed",
        "active_unanswered",
    ] {
        assert_eq!(delta(c), 0, "{c}");
    }
    for map in ["accel_sockhash", "accel_pairing"] {
        assert_eq!(
            map_field(&after, map, "entries"),
            0,
            "{map} leaked: {after}"
        );
        assert_eq!(
            bpftool_entries(&env.pin_dir.join(map)),
            0,
            "bpftool sees entries left in {map}"
        );
    }
    // The daemon does no per-connection work in user space: its memory must
    // not follow the number of connections. 1 MiB covers allocator noise
    // of the metrics and endpoint-sync loops over the run.
    assert!(
        rss_after <= rss_before + 1024,
        "daemon VmRSS grew from {rss_before} KiB to {rss_after} KiB"
    );
    // Detach synchronously: tearing down a namespace that saw 100,000s of
    // connections keeps the kernel's workqueue busy, and the deferred
    // release of an unpinned link would land after TestEnv's check.
    assert_eq!(daemon.terminate(), Some(0));
    let unload = env.unload();
    assert!(
        unload.status.success(),
        "{}",
        String::from_utf8_lossy(&unload.stderr)
    );
    assert!(env.attachments().is_empty(), "{:?}", env.attachments());
}
