//! Hostile input (reliability issue, section 5): what the daemon does with a
//! read-only bpffs and with malformed, changing and huge pods files. Bad
//! flags and the security posture are in hostile_flags.rs.
//!
//! Every failure must be one `error:` line, a non-zero exit, no panic or
//! backtrace, and nothing attached. The non-root run is covered in
//! tests/tests/daemon.rs (a_non_root_run_fails_with_one_clear_line).
//! Requires root; fails loudly without it.

use std::{
    fs,
    path::Path,
    thread,
    time::{Duration, Instant},
};

use accel_test_harness::{PrivateBpffs, TestEnv, set_flag};

#[path = "common/hostile.rs"]
mod hostile_support;

use hostile_support::*;

#[test]
fn a_read_only_bpffs_fails_with_one_clear_line_and_attaches_nothing() {
    let env = TestEnv::new("h-robpffs");
    let ro = PrivateBpffs::new(&env, "ro");
    let pin_dir = ro.dir.join("v1");
    let mut args = env.run_args(&[]);
    set_flag(&mut args, "--pin-dir", &pin_dir.display().to_string());
    let out = run_daemon(&args, Duration::from_secs(60))
        .unwrap_or_else(|log| panic!("the daemon ran on a read-only bpffs:\n{log}"));
    let e = assert_one_clean_error("read-only bpffs", &out);
    assert!(
        e.contains("Read-only file system") && e.contains(&ro.dir.display().to_string()),
        "the error must say where and why: {e}"
    );
    assert!(
        env.attachments().is_empty(),
        "attached on a read-only bpffs"
    );
    // Kernels with CONFIG_BPF_PRELOAD show maps.debug and progs.debug in
    // every fresh bpffs; anything else would be ours.
    let ours: Vec<String> = fs::read_dir(&ro.dir)
        .expect("read bpffs")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".debug"))
        .collect();
    assert!(ours.is_empty(), "pinned on a read-only bpffs: {ours:?}");
}

/// A pods file of `n` pods, each with one IPv4 and one IPv6 address and
/// excluded ports and ranges (no namespace: nothing to resolve).
fn huge_pods_file(path: &Path, n: usize) {
    let mut text = String::with_capacity(n * 200);
    for i in 0..n {
        let (a, b) = (i / 250, i % 250 + 1);
        text += &format!(
            "[[pod]]\nname = \"ns-{a}/pod-{i}\"\nips = [\"10.{a}.{b}.7\", \"fd00:{a:x}::{b:x}\"]\n\
             exclude_inbound_ports = [15090]\nexclude_outbound_ip_ranges = [\"10.96.0.0/12\"]\n"
        );
    }
    fs::write(path, text).expect("write pods file");
}

/// 10,000 pods (20,000 addresses) against an endpoints map of 4,096: the
/// daemon must stay up and say what did not fit, or refuse with one line,
/// never half-apply and crash-loop. Regression test for RELIABILITY.md F-2
/// (it exited with a bare `bpf_map_update_elem failed` after attaching).
#[test]
fn a_pods_file_of_10000_pods_is_handled_without_crash_or_half_state() {
    let env = TestEnv::new("h-hugepods");
    let pods = env.state_dir.with_extension("pods.toml");
    huge_pods_file(&pods, 10_000);
    let size = fs::metadata(&pods).map(|m| m.len()).unwrap_or(0);
    let start = Instant::now();
    let result = run_daemon(
        &env.run_args(&["--pods-file", &pods.display().to_string()]),
        Duration::from_secs(30),
    );
    let took = start.elapsed();
    let _ = fs::remove_file(&pods);
    eprintln!("pods file {size} bytes; outcome after {took:?}");
    match result {
        // Still running: it accepted the list (killed by run_daemon).
        Err(log) => {
            assert!(
                log.contains("ready (listening on"),
                "neither ready nor failed:\n{log}"
            );
            for crash in ["panicked", "backtrace"] {
                assert!(!log.contains(crash), "{log}");
            }
            assert!(
                log.contains("refused"),
                "the daemon must say that entries did not fit:\n{}",
                log.lines().rev().take(10).collect::<Vec<_>>().join("\n")
            );
        }
        Ok(out) => {
            let e = String::from_utf8_lossy(&out.stderr).into_owned();
            let half = !env.attachments().is_empty() || env.pin_dir.exists();
            panic!(
                "the daemon exited ({:?}) on 10,000 pods{}; last lines:\n{}",
                out.status.code(),
                if half {
                    ", leaving the datapath attached and pinned"
                } else {
                    ""
                },
                e.lines().rev().take(3).collect::<Vec<_>>().join("\n")
            );
        }
    }
}

/// Same list, sized to fit: 1,500 pods (3,000 addresses) start within the
/// time a probe gives a DaemonSet pod and every address is in the map.
#[test]
fn a_pods_file_of_1500_pods_is_applied_in_full() {
    let env = TestEnv::new("h-bigpods");
    let pods = env.state_dir.with_extension("pods.toml");
    huge_pods_file(&pods, 1_500);
    let start = Instant::now();
    let daemon = env.start_daemon(&["--pods-file", &pods.display().to_string()]);
    let took = start.elapsed();
    let status = env.status_json();
    let _ = fs::remove_file(&pods);
    let entries = status["datapath"]["maps"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["name"] == "accel_endpoints"))
        .and_then(|m| m["entries"].as_u64());
    assert_eq!(entries, Some(3_000), "{status}");
    let (_, metrics) = daemon.http_get("/metrics");
    assert!(
        metrics.contains("sidecar_accel_local_endpoints 3000"),
        "{metrics}"
    );
    eprintln!("1,500 pods applied, ready after {took:?}");
    assert!(took < Duration::from_secs(30), "took {took:?}");
}

#[test]
fn malformed_pods_files_fail_with_one_line_naming_the_problem() {
    let env = TestEnv::new("h-badpods");
    let pods = env.state_dir.with_extension("pods.toml");
    let mut garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    garbage.extend_from_slice(b"\n[[pod]\n\xff\xfe");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("binary garbage", garbage, "pods.toml"),
        ("not TOML", b"this is { not toml".to_vec(), "pods file"),
        (
            "ips as a string",
            b"[[pod]]\nips = \"10.0.0.1\"\n".to_vec(),
            "ips",
        ),
        (
            "pid as a string",
            b"[[pod]]\nips = [\"10.0.0.1\"]\npid = \"abc\"\n".to_vec(),
            "pid",
        ),
        (
            "negative pid",
            b"[[pod]]\nips = [\"10.0.0.1\"]\npid = -1\n".to_vec(),
            "pid",
        ),
        (
            "port out of range",
            b"[[pod]]\nips = [\"10.0.0.1\"]\nexclude_inbound_ports = [70000]\n".to_vec(),
            "exclude_inbound_ports",
        ),
        (
            "prefix out of range",
            b"[[pod]]\nips = [\"10.0.0.1\"]\nexclude_outbound_ip_ranges = [\"10.0.0.0/33\"]\n"
                .to_vec(),
            "10.0.0.0/33",
        ),
        (
            "not an address",
            b"[[pod]]\nips = [\"10.0.0.300\"]\n".to_vec(),
            "ips",
        ),
        (
            "loopback pod address",
            b"[[pod]]\nips = [\"127.0.0.1\"]\n".to_vec(),
            "not a pod address",
        ),
        ("no addresses", b"[[pod]]\nips = []\n".to_vec(), "ips"),
        (
            "unknown field",
            b"[[pod]]\nips = [\"10.0.0.1\"]\nsecret = 1\n".to_vec(),
            "secret",
        ),
        (
            "pod as a table, not an array",
            b"[pod]\nips = [\"10.0.0.1\"]\n".to_vec(),
            "pod",
        ),
        (
            "netns and pid",
            b"[[pod]]\nips = [\"10.0.0.1\"]\npid = 1\nnetns = \"/x\"\n".to_vec(),
            "not both",
        ),
        (
            "deep nesting",
            format!("x = {}{}\n", "[".repeat(5000), "]".repeat(5000)).into_bytes(),
            "pods file",
        ),
    ];
    for (what, text, needle) in cases {
        fs::write(&pods, &text).expect("write pods file");
        let out = run_daemon(
            &env.run_args(&["--pods-file", &pods.display().to_string()]),
            Duration::from_secs(60),
        )
        .unwrap_or_else(|log| panic!("{what}: the daemon accepted it:\n{log}"));
        let e = assert_one_clean_error(what, &out);
        assert!(
            e.contains(needle),
            "{what}: the error must name {needle:?}: {e}"
        );
        assert_nothing_left(&env, what);
    }
    let _ = fs::remove_file(&pods);
}

/// A pods file that turns bad while the daemon runs changes nothing: the
/// last good set stays applied and the daemon says why.
#[test]
fn a_pods_file_that_turns_bad_at_runtime_keeps_the_last_good_set() {
    let env = TestEnv::new("h-podsturn");
    let pods = env.state_dir.with_extension("pods.toml");
    fs::write(&pods, "[[pod]]\nname = \"a\"\nips = [\"10.1.2.3\"]\n").expect("write");
    let daemon = env.start_daemon(&[
        "--pods-file",
        &pods.display().to_string(),
        "--endpoint-sync-secs",
        "1",
    ]);
    fs::write(&pods, b"\x00\x01garbage[[[").expect("corrupt");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !daemon.log().contains("keeping the last good set") && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(100));
    }
    let _ = fs::remove_file(&pods);
    assert!(
        daemon.log().contains("keeping the last good set"),
        "{}",
        daemon.log()
    );
    let status = env.status_json();
    assert_eq!(
        status["daemon"]["endpoints"],
        serde_json::json!(["10.1.2.3"]),
        "{status}"
    );
    assert_eq!(daemon.http_get("/readyz").0, 200);
}
