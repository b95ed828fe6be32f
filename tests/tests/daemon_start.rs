//! How the real daemon starts and refuses to: a failing self-test, pins
//! restored after someone removed them, a full sockhash, the gate on old
//! kernels and missing BTF, a datapath of another version, a non-root run,
//! bad input, and what the receive calls see of redirected bytes. Each
//! test in its own cgroup and pin dir (see accel_test_harness::TestEnv).
//! Requires root; fails loudly without it.

use std::{
    fs,
    process::{Command, Stdio},
    thread,
    time::Duration,
};

use accel_test_harness::{
    Capture, TestEnv, assert_clean_load, check_named, counter_of, free_port, set_flag,
};

#[path = "common/daemon.rs"]
mod daemon_support;

use daemon_support::*;

#[test]
fn a_failing_self_test_detaches_and_runs_unaccelerated_with_the_reason() {
    let env = TestEnv::new("selftest");
    // No child cgroup can be created, so the self-test cannot run its
    // traffic: the daemon must not trust the datapath it just attached.
    std::fs::write(env.cgroup.join("cgroup.max.descendants"), "0").expect("limit descendants");
    let daemon = env.start_daemon(&[]);
    let status = env.status_json();
    assert_eq!(status["daemon"]["accelerated"], false, "{status}");
    let reason = status["daemon"]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("self-test failed"), "{reason}");
    assert!(
        env.attachments().is_empty(),
        "a failed self-test must detach"
    );
    assert!(
        !env.pin_dir.exists(),
        "a failed self-test must leave no pins"
    );
    assert!(
        std::fs::read_dir(&env.pin_root)
            .map(|d| d.count())
            .unwrap_or(0)
            == 0,
        "no staging directory left behind"
    );
    assert_eq!(daemon.http_get("/readyz").0, 200, "unaccelerated but ready");
}

#[test]
fn pins_removed_by_someone_else_are_restored_and_the_datapath_survives() {
    let env = TestEnv::new("repin");
    let mut daemon = env.start_daemon(&["--endpoint-sync-secs", "1"]);
    // Someone cleans /sys/fs/bpf by hand while the daemon runs.
    std::fs::remove_dir_all(&env.pin_dir).expect("remove the pins");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    // The pins reappear a moment before the daemon logs it: wait for both.
    while !(env.pin_dir.join("link_sockops").exists() && daemon.log().contains("pinned them again"))
        && std::time::Instant::now() < deadline
    {
        thread::sleep(Duration::from_millis(100));
    }
    assert!(
        env.pin_dir.join("link_sockops").exists(),
        "pins not restored:\n{}",
        daemon.log()
    );
    assert!(
        daemon.log().contains("pinned them again"),
        "{}",
        daemon.log()
    );
    let status = env.status_json();
    assert!(
        status["datapath"].is_object(),
        "restored pins must open: {status}"
    );

    // Still accelerating, and it survives the daemon: the pins hold it.
    daemon.kill9();
    env.assert_one_attachment("with the daemon killed: the restored pins hold it");
    let (_, psh) = env.short_load(LOADGEN.as_str(), 5);
    assert_eq!(psh, 0, "the restored pins hold an accelerating datapath");
}

#[test]
fn a_full_sockhash_sends_new_connections_over_tcp_counted_and_intact() {
    let env = TestEnv::new("full");
    // Room for 8 sockets: 4 connections at most can be paired.
    let _daemon = env.start_daemon(&["--sockhash-size", "8"]);
    let port = free_port();
    let cap = Capture::start(port);
    let child = spawn_timed_load(&env, port, 40, "1,1500,65536", 1500);
    let out = child.wait_with_output().expect("loadgen");
    assert_clean_load(&out, 40);
    let status = env.status_json();
    assert!(
        counter_of(&status, "record_failed") > 0,
        "a full map must be counted"
    );
    assert!(
        counter_of(&status, "redirect_bytes") > 0,
        "the ones that fit are accelerated"
    );
    assert!(cap.stop().psh_data > 0, "the ones that did not fit use TCP");
}

/// A gated-off daemon: it says so, is ready, and attached and pinned
/// nothing. Returns its status and the reason it gives.
fn assert_gated_off(
    env: &TestEnv,
    daemon: &accel_test_harness::Daemon,
) -> (serde_json::Value, String) {
    assert!(
        daemon.log().contains("running unaccelerated"),
        "{}",
        daemon.log()
    );
    assert_eq!(daemon.http_get("/readyz").0, 200);
    let status = env.status_json();
    assert_eq!(status["daemon"]["accelerated"], false, "{status}");
    assert!(status["datapath"].is_null(), "{status}");
    assert!(env.attachments().is_empty(), "nothing attached");
    assert!(!env.pin_dir.exists(), "nothing pinned");
    let reason = status["daemon"]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    (status, reason)
}

#[test]
fn old_kernel_release_runs_unaccelerated_ready_and_says_why() {
    let env = TestEnv::new("gate");
    let daemon = env.start_daemon(&["--kernel-release", "5.4.0"]);
    let (_, reason) = assert_gated_off(&env, &daemon);
    assert!(
        reason.contains("5.4.0") && reason.contains("5.10"),
        "{reason}"
    );
    let (_, metrics) = daemon.http_get("/metrics");
    assert!(metrics.contains("sidecar_accel_enabled 0"), "{metrics}");
    assert!(metrics.contains("older than 5.10"), "{metrics}");

    let args = env.run_args(&["--kernel-release", "5.4.0", "--require-acceleration"]);
    let out = Command::new(accel_test_harness::daemon_bin())
        .args(&args)
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--require-acceleration"));
}

/// Without kernel BTF the flow-control build cannot load, and neither can
/// the drain check: a datapath without them queues without bound and cannot
/// be removed provably. Such a node runs unaccelerated and says so, unless
/// the operator accepts both with --allow-no-flow-control.
#[test]
fn a_kernel_without_btf_runs_unaccelerated_unless_the_operator_accepts_the_risk() {
    let env = TestEnv::new("nobtf");
    let mut daemon = env.start_daemon(&["--pretend-no-btf"]);
    let (status, reason) = assert_gated_off(&env, &daemon);
    assert!(
        reason.contains("no kernel BTF") && reason.contains("--allow-no-flow-control"),
        "the reason names the cause and the way out: {reason}"
    );
    assert_eq!(check_named(&status, "flow control")["ok"], false);
    let staging_left: Vec<_> = fs::read_dir(env.pin_dir.parent().expect("pin dir parent"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        !staging_left
            .iter()
            .any(|n| n.to_string_lossy().contains("staging")),
        "staging pins left: {staging_left:?}"
    );
    let (_, metrics) = daemon.http_get("/metrics");
    assert!(metrics.contains("sidecar_accel_enabled 0"), "{metrics}");
    assert!(metrics.contains("no kernel BTF"), "{metrics}");
    let (_, psh) = env.short_load(LOADGEN.as_str(), 3);
    assert!(psh > 0, "traffic stays on TCP");
    assert_eq!(daemon.terminate(), Some(0));

    let mut daemon = env.start_daemon(&["--pretend-no-btf", "--allow-no-flow-control"]);
    let status = env.status_json();
    assert_eq!(status["daemon"]["accelerated"], true, "{status}");
    let flow = check_named(&status, "flow control");
    assert_eq!(flow["ok"], false, "status says flow control is off: {flow}");
    env.assert_one_attachment("with --allow-no-flow-control");
    let (_, psh) = env.short_load(LOADGEN.as_str(), 3);
    assert_eq!(psh, 0, "accelerated without flow control");
    assert_eq!(daemon.terminate(), Some(0));
    env.unload_ok();
    assert!(env.attachments().is_empty());
}

/// A budget of 0 turns flow control off, and a reader that falls behind
/// then holds redirected bytes until the node's TCP memory runs out, where
/// senders get ENOMEM (seen in the mesh benchmark). Like a kernel without
/// BTF, that needs --allow-no-flow-control, and status says so.
#[test]
fn flow_control_turned_off_needs_the_operator_to_accept_the_risk() {
    let env = TestEnv::new("nobudget");
    let args = env.run_args(&["--flow-budget-bytes", "0"]);
    let e = run_fails(&env, &refs(&args));
    assert!(
        e.contains("--flow-budget-bytes 0")
            && e.contains("ENOMEM")
            && e.contains("--allow-no-flow-control"),
        "the refusal names the risk and the way out: {e}"
    );
    assert_eq!(e.matches("error:").count(), 1, "{e}");
    assert!(!env.pin_dir.exists(), "nothing pinned");

    let mut daemon = env.start_daemon(&["--flow-budget-bytes", "0", "--allow-no-flow-control"]);
    let status = env.status_json();
    assert_eq!(status["daemon"]["accelerated"], true, "{status}");
    let flow = check_named(&status, "flow control");
    assert_eq!(flow["ok"], false, "status says flow control is off: {flow}");
    assert!(
        flow["detail"]
            .as_str()
            .is_some_and(|d| d.contains("not bounded") && d.contains("ENOMEM")),
        "{flow}"
    );
    let (_, psh) = env.short_load(LOADGEN.as_str(), 3);
    assert_eq!(psh, 0, "accelerated with flow control off");
    assert_eq!(daemon.terminate(), Some(0));
    env.unload_ok();
    assert!(env.attachments().is_empty());
}

#[test]
fn a_datapath_of_another_version_is_retired_cleanly() {
    let env = TestEnv::new("upgrade");
    // An "old version" datapath pinned next to ours, left behind by a daemon
    // that was killed (as an upgrade from a previous release would find it).
    let old_pin = env.pin_root.join("v0").display().to_string();
    let mut args = env.run_args(&[]);
    set_flag(&mut args, "--pin-dir", &old_pin);
    let mut old = accel_test_harness::Daemon::start(&args);
    old.kill9();
    assert_eq!(env.attachments().len(), 1);

    let new = env.start_daemon(&[]);
    assert!(
        new.log().contains("retiring datapath of another version"),
        "{}",
        new.log()
    );
    assert!(
        !std::path::Path::new(&old_pin).exists(),
        "old pins left behind"
    );
    env.assert_one_attachment("after retiring the old version");
    let (_, psh) = env.short_load(LOADGEN.as_str(), 5);
    assert_eq!(psh, 0, "the new datapath accelerates");
}

#[test]
fn a_non_root_run_fails_with_one_clear_line() {
    use std::os::unix::process::CommandExt;
    let env = TestEnv::new("nonroot");
    let args = env.run_args(&[]);
    let out = Command::new(accel_test_harness::daemon_bin())
        .args(&args)
        .uid(65534)
        .gid(65534)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .expect("run as nobody");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("insufficient privileges") && stderr.contains("CAP_BPF"),
        "{stderr}"
    );
    assert_eq!(stderr.matches("error:").count(), 1, "{stderr}");
    assert!(env.attachments().is_empty());
}

/// Runs the daemon to failure and returns its stderr.
fn run_fails(env: &TestEnv, args: &[&str]) -> String {
    let out = Command::new(accel_test_harness::daemon_bin())
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "expected failure for {args:?}");
    assert!(env.attachments().is_empty(), "half-attached after {args:?}");
    stderr
}

#[test]
fn bad_input_fails_with_one_clear_line_and_attaches_nothing() {
    let env = TestEnv::new("badinput");
    let cg = env.cgroup.display().to_string();
    let pin = env.pin_dir.display().to_string();
    let state = env.state_dir.display().to_string();
    let base = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = ["run", "--state-dir", &state].map(String::from).to_vec();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    // The test's own cgroup and pin dir, so only `extra` can be wrong.
    let sandboxed = |extra: &[&str]| base(&[&["--cgroup", &cg, "--pin-dir", &pin], extra].concat());

    let e = run_fails(&env, &["run", "--no-such-flag"]);
    assert!(e.contains("--no-such-flag"), "{e}");

    let a = base(&["--cgroup", "/tmp", "--pin-dir", &pin]);
    let e = run_fails(&env, &refs(&a));
    assert!(e.contains("not a cgroup v2 directory"), "{e}");
    assert_eq!(e.matches("error:").count(), 1, "{e}");

    let a = base(&["--cgroup", &cg, "--pin-dir", "/tmp/accel-not-bpffs/v1"]);
    let e = run_fails(&env, &refs(&a));
    assert!(e.contains("not on a BPF filesystem"), "{e}");

    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let busy_addr = busy.local_addr().expect("addr").to_string();
    let a = sandboxed(&["--metrics-addr", &busy_addr]);
    let e = run_fails(&env, &refs(&a));
    assert!(e.contains("--metrics-addr"), "{e}");
    assert!(!env.pin_dir.exists());

    let a = sandboxed(&["--local-endpoint", "127.0.0.1"]);
    let e = run_fails(&env, &refs(&a));
    assert!(e.contains("loopback"), "{e}");

    // A foreign map where ours should be.
    std::fs::create_dir_all(&env.pin_dir).expect("mkdir pin dir");
    let st = Command::new("bpftool")
        .args(["map", "create"])
        .arg(env.pin_dir.join("accel_sockhash"))
        .args([
            "type", "hash", "key", "4", "value", "4", "entries", "1", "name", "foreign",
        ])
        .status()
        .expect("bpftool");
    assert!(st.success());
    let a = sandboxed(&["--metrics-addr", "127.0.0.1:0"]);
    let e = run_fails(&env, &refs(&a));
    assert!(e.contains("not a datapath") && e.contains("unload"), "{e}");
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn receive_modes(env: &TestEnv) -> accel_test_harness::Value {
    let out = loadgen(env, free_port(), &["--receive-modes"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or("")
        .to_string();
    serde_json::from_str(&line).expect("receive-modes report")
}

/// DESIGN item 11: what applications see through other receive interfaces
/// on an accelerated socket (this kernel: all correct).
#[test]
fn fionread_msg_peek_and_poll_see_redirected_bytes() {
    let env = TestEnv::new("modes");
    let _daemon = env.start_daemon(&[]);
    let before = env.counter("redirect_msgs");
    let r = receive_modes(&env);
    assert!(env.counter("redirect_msgs") > before, "not redirected");
    assert_eq!(r["fionread"], 1000, "{r}");
    assert_eq!(r["msg_peek"], 100, "{r}");
    assert_eq!(r["poll_readable"], true, "{r}");
    assert_eq!(r["read"], 1000, "{r}");
}
