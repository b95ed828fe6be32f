//! The real daemon binary against real traffic, each test in its own cgroup
//! and pin dir (see accel_test_harness::TestEnv). Requires root; fails loudly
//! without it.

use std::{
    io::{BufRead, BufReader, Write},
    process::{Command, Output, Stdio},
    thread,
    time::Duration,
};

use accel_test_harness::{
    Capture, TestEnv, assert_clean_load, counter_of, free_port, map_entries, wait_until,
};

#[path = "common/daemon.rs"]
mod daemon_support;

use daemon_support::*;

#[test]
fn loopback_echo_is_redirected_byte_exact_and_psh_free_then_not_after_unload() {
    let env = TestEnv::new("echo");
    let mut daemon = env.start_daemon(&[]);
    assert!(
        daemon.log().contains("self-test passed"),
        "{}",
        daemon.log()
    );
    let before = env.counter("redirect_bytes");

    let port = free_port();
    let cap = Capture::start(port);
    let out = loadgen(
        &env,
        port,
        &[
            "--conns",
            "120",
            "--sizes",
            "1,64,1500,65536,1048576",
            "--rounds",
            "1",
        ],
    );
    let counts = cap.stop();
    let bytes = assert_clean_load(&out, 120).bytes_each_way;
    assert_eq!(bytes, 120 * (1 + 64 + 1500 + 65536 + 1048576));

    let status = env.status_json();
    let redirected = counter_of(&status, "redirect_bytes") - before;
    assert!(
        redirected >= 2 * bytes,
        "redirected {redirected} bytes, expected at least {} (both directions)",
        2 * bytes
    );
    assert!(counter_of(&status, "active_paired") >= 120);
    assert!(counter_of(&status, "passive_paired") >= 120);
    assert_eq!(counter_of(&status, "redirect_failed"), 0);
    assert!(
        counts.packets >= 120 * 3,
        "handshakes must be visible: {counts:?}"
    );
    // Every connection has closed: no map entry may outlive its socket.
    for map in ["accel_sockhash", "accel_pairing"] {
        let entries = map_entries(&status, map);
        assert_eq!(
            entries, 0,
            "{map} still holds {entries} entries after all sockets closed"
        );
    }
    assert_eq!(
        counts.psh_data, 0,
        "accelerated traffic showed PSH segments: {counts:?}"
    );

    let (code, metrics) = daemon.http_get("/metrics");
    assert_eq!(code, 200);
    assert!(metrics.contains("sidecar_accel_enabled 1"), "{metrics}");
    assert!(
        metrics.contains(r#"sidecar_accel_datapath_events_total{event="redirect_bytes"}"#),
        "{metrics}"
    );
    for program in ["accel_sockops", "accel_sk_msg"] {
        assert!(
            metrics.contains(&format!(
                r#"sidecar_accel_program_runs_total{{program="{program}"}}"#
            )),
            "no runs series of {program}: {metrics}"
        );
    }
    assert_eq!(daemon.http_get("/healthz").0, 200);
    assert_eq!(daemon.http_get("/readyz").0, 200);

    // Daemon gone and datapath removed: the same traffic crosses TCP again.
    assert_eq!(daemon.terminate(), Some(0));
    env.unload_ok();
    assert!(env.attachments().is_empty());
    let port = free_port();
    let cap = Capture::start(port);
    let out = loadgen(&env, port, &["--conns", "10", "--sizes", "1,1500,65536"]);
    let counts = cap.stop();
    assert_clean_load(&out, 10);
    assert!(
        counts.psh_data >= 10,
        "plain TCP must show PSH segments: {counts:?}"
    );
}

#[test]
fn connections_established_before_the_daemon_keep_working_unaccelerated() {
    let env = TestEnv::new("preexisting");
    let port = free_port();
    let mut child = spawn_loadgen(
        &env,
        port,
        &[
            "--hold",
            "--conns",
            "10",
            "--sizes",
            "1,1500,65536",
            "--rounds",
            "20",
        ],
    );
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("read established");
    assert!(line.starts_with("established"), "{line}");

    let _daemon = env.start_daemon(&[]);
    let offered = env.counter("active_offered");
    let redirected = env.counter("redirect_msgs");
    let cap = Capture::start(port);
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"go\n")
        .expect("release traffic");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).expect("read report");
    let status = child.wait().expect("wait loadgen");
    let counts = cap.stop();
    let report: accel_test_harness::LoadReport =
        serde_json::from_str(rest.lines().last().unwrap_or("")).expect("report");
    assert!(
        status.success() && report.errors.is_empty(),
        "{:?}",
        report.errors
    );
    assert_eq!(report.bytes_each_way, 10 * 20 * (1 + 1500 + 65536));
    assert_eq!(
        env.counter("active_offered"),
        offered,
        "old sockets were recorded"
    );
    assert_eq!(
        env.counter("redirect_msgs"),
        redirected,
        "old sockets were redirected"
    );
    assert!(
        counts.psh_data >= 10 * 20,
        "old connections must stay on TCP: {counts:?}"
    );
}

#[test]
fn kill9_during_traffic_loses_nothing_and_restart_adopts_the_pins() {
    let env = TestEnv::new("kill9");
    let mut daemon = env.start_daemon(&[]);
    let port = free_port();
    // Long enough to outlast the kill and the check after it: reaping the
    // killed daemon alone can take seconds (faults.rs).
    let child = spawn_timed_load(&env, port, 20, "1,1500,65536", 10_000);
    thread::sleep(Duration::from_millis(1000));
    daemon.kill9();
    env.assert_one_attachment("with the daemon killed: the datapath outlives it");
    let mid = env.status_json();
    assert_eq!(mid["daemon_running"], false);
    let redirected_mid = counter_of(&mid, "redirect_msgs");
    thread::sleep(Duration::from_millis(500));
    assert!(
        env.counter("redirect_msgs") > redirected_mid,
        "redirects must continue while the daemon is away"
    );

    let restarted = env.start_daemon(&[]);
    assert!(restarted.log().contains("adopted"), "{}", restarted.log());
    let out = child.wait_with_output().expect("loadgen");
    assert_clean_load(&out, 20);
    env.assert_one_attachment("after restart");

    // New connections are still accelerated by the adopted datapath.
    let (_, psh) = env.short_load(LOADGEN.as_str(), 5);
    assert_eq!(psh, 0, "the adopted datapath accelerates new connections");
}

#[test]
fn unload_during_traffic_loses_nothing_and_leaves_nothing() {
    let env = TestEnv::new("unload");
    let mut daemon = env.start_daemon(&[]);
    let port = free_port();
    let child = spawn_timed_load(&env, port, 20, "1,1500,65536,1048576", 4000);
    thread::sleep(Duration::from_millis(1000));
    assert_eq!(daemon.terminate(), Some(0));
    env.unload_ok();
    let out = child.wait_with_output().expect("loadgen");
    assert_clean_load(&out, 20);
    assert!(env.attachments().is_empty(), "sock_ops still attached");
    assert!(!env.pin_dir.exists(), "pins left behind");
    let second = env.unload();
    assert!(second.status.success(), "unload twice must be safe");
}

#[test]
fn unload_waits_for_unread_queues_and_never_discards_them() {
    unload_refuses_then_drains("drain", None);
}

/// The same with the per-socket drain probe forced, so that it is proven on
/// kernels where the iterator loads (and auto would never pick it).
#[test]
fn the_per_socket_drain_probe_also_refuses_to_discard_unread_data() {
    unload_refuses_then_drains("drainps", Some("per-socket"));
}

/// `drain_check`: the `ACCEL_DRAIN_CHECK` override (None: the daemon picks).
fn unload_refuses_then_drains(name: &str, drain_check: Option<&str>) {
    let env = TestEnv::new(name);
    let mut daemon = env.start_daemon(&[]);
    let port = free_port();
    // Clients send 1 MiB each at once; the server reads nothing for 6 s, so
    // the redirected bytes wait in its sockets' ingress queues.
    let child = spawn_loadgen(
        &env,
        port,
        &[
            "--conns",
            "8",
            "--sizes",
            "1048576",
            "--server-delay-ms",
            "6000",
        ],
    );
    // Until the 8 MiB are sent (a fixed 1.5 s sleep was too short on a
    // loaded machine: the unload then found nothing queued). The server
    // reads nothing for 6 s, which leaves the unloads their time.
    wait_until(Duration::from_secs(5), "the clients' 8 MiB sent", || {
        env.counter("redirect_bytes") + env.counter("pass_bytes") >= 8 << 20
    });
    assert_eq!(daemon.terminate(), Some(0));
    let pin = env.pin_dir.display().to_string();
    let unload = |timeout: &str| -> Output {
        let mut cmd = Command::new(accel_test_harness::daemon_bin());
        cmd.args(["unload", "--pin-dir", &pin, "--drain-timeout", timeout])
            .stdin(Stdio::null());
        if let Some(how) = drain_check {
            cmd.env("ACCEL_DRAIN_CHECK", how);
        }
        cmd.output().expect("run accel-daemon unload")
    };
    let impatient = unload("1");
    let stderr = String::from_utf8_lossy(&impatient.stderr);
    assert!(
        !impatient.status.success(),
        "unload must not discard unread data: {stderr}"
    );
    assert!(
        stderr.contains("have not read") && stderr.contains("nothing was lost"),
        "{stderr}"
    );
    assert!(env.pin_dir.exists(), "pins must stay while data is queued");
    env.assert_one_attachment("while data is queued");

    let patient = unload("30");
    assert!(
        patient.status.success(),
        "{}",
        String::from_utf8_lossy(&patient.stderr)
    );
    assert!(
        String::from_utf8_lossy(&patient.stdout).contains("proven empty"),
        "{}",
        String::from_utf8_lossy(&patient.stdout)
    );
    let out = child.wait_with_output().expect("loadgen");
    assert_clean_load(&out, 8);
    assert!(env.attachments().is_empty());
    assert!(!env.pin_dir.exists());
}
