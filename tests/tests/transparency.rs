//! The default mode (`auto`) is invisible to applications: the kernel's
//! sockmap receive behaviours (EAGAIN on blocking reads, receive-side splice
//! and FIONREAD not seeing redirected bytes) never reach an application
//! socket, and the sidecar's legs are still accelerated.
//!
//! Every test runs the daemon in its default mode (no --pod-acceleration)
//! unless it says otherwise, with one end of each connection owned by the
//! sidecar's user (uid 1337) and the other an application (root). These are
//! the reproducers of RELIABILITY.md's I-1, I-2, I-3, I-4 and I-5, run
//! against the default mode: each must pass, and each also proves that the
//! guard really engaged (the counters), so a pass is never a datapath that
//! simply did nothing.
//!
//! `auto` records application sockets only where the kernel's FIONREAD
//! counts bytes received by TCP on sockhash sockets (I-4, probed at start);
//! elsewhere they stay on TCP and there is no guard to prove. So the guard's
//! tests run with `--allow-auto-fionread-gap`, which records them on every
//! kernel; `fionread_applications_are_told_every_byte` runs the true default.

use std::{
    io::{BufRead, BufReader, Write},
    process::{Command, Output, Stdio},
};

use accel_test_harness::{
    Daemon, TestEnv, Value,
    traffic::{Delta, assert_clean, driver_report, measured, run_driver},
};

static DRIVER: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| accel_test_harness::integrity_bin().display().to_string());

/// `ACCEL_TRANSPARENCY_MODE=all` runs the same tests in another node mode,
/// to see what the default protects against (in `all` they fail).
fn daemon(tag: &str, extra: &[&str]) -> (TestEnv, Daemon) {
    let env = TestEnv::new(tag);
    let forced = std::env::var("ACCEL_TRANSPARENCY_MODE").ok();
    let mut args = vec![GUARD_ON_EVERY_KERNEL];
    match &forced {
        Some(mode) if extra.is_empty() => args.extend(["--pod-acceleration", mode]),
        _ => args.extend(extra),
    }
    let daemon = env.start_daemon_default_mode(&args);
    (env, daemon)
}

/// Records `auto` applications' sockets whatever the kernel's FIONREAD.
const GUARD_ON_EVERY_KERNEL: &str = "--allow-auto-fionread-gap";

/// The running daemon's FIONREAD probe (a status check): where it passed,
/// the true default records `auto` applications' sockets; where it failed,
/// it keeps them off the sockhash.
fn fionread_counts_tcp(env: &TestEnv) -> bool {
    let status = env.status_json();
    let probe = status["daemon"]["checks"]
        .as_array()
        .expect("checks in status")
        .iter()
        .find(|c| c["name"].as_str().is_some_and(|n| n.contains("FIONREAD")))
        .cloned()
        .expect("the FIONREAD probe is in the status checks");
    eprintln!("FIONREAD probe: {probe}");
    probe["ok"] == true
}

/// The driver in the test's cgroup, with the counters' movements.
fn drive(env: &TestEnv, args: &[&str]) -> (Output, Value, Delta) {
    let ((out, report), d) = measured(env, || {
        let mut cmd = Command::new(DRIVER.as_str());
        let _procs = env.in_cgroup(&mut cmd);
        run_driver(cmd, args)
    });
    let guard = [
        "app_blocking_not_recorded",
        "app_blocking_seen_later",
        "app_left_sockhash",
        "app_receives_by_tcp",
        "app_to_app_not_recorded",
        "recorded_receive_only",
    ]
    .iter()
    .map(|c| format!("{c}={}", d.of(c)))
    .collect::<Vec<_>>()
    .join(" ");
    eprintln!("{args:?}\n  report: {report}\n  {}\n  {guard}", d.show());
    (out, report, d)
}

fn app_proxy(env: &TestEnv, app: &str, side: &str, extra: &[&str]) -> (Output, Value, Delta) {
    let args = [
        &[
            "app-proxy",
            "--app",
            app,
            "--app-side",
            side,
            "--conns",
            "20",
        ][..],
        extra,
        &["--timeout-secs", "60"],
    ]
    .concat();
    drive(env, &args)
}

fn assert_no_eagain(what: &str, out: &Output, report: &Value) {
    assert_clean(what, out, report);
    assert_eq!(report["eagain_on_blocking"], 0, "{what}: {report}");
}

/// I-2 and the "connect with a timeout" pattern: blocking applications,
/// as clients and as servers, reading first or sending first, each ending
/// with a blocking read after its own shutdown(SHUT_WR). None may see
/// EAGAIN; none may stay in the sockhash.
#[test]
fn blocking_applications_never_see_eagain_and_leave_the_sockhash() {
    let (env, _daemon) = daemon("tr-blocking", &[]);
    // Client, blocking from the start: never recorded at connect().
    let (out, report, d) = app_proxy(&env, "blocking", "client", &[]);
    assert_no_eagain("blocking client", &out, &report);
    assert!(d.of("app_blocking_not_recorded") >= 20, "{}", d.show());
    assert_eq!(d.of("redirect_bytes"), 0, "{}", d.show());

    // Non-blocking at connect(), blocking afterwards: caught at its first
    // send, or (the sidecar speaks first) when the greeting arrives.
    for first in [&[][..], &["--sidecar-first"][..]] {
        let (out, report, d) = app_proxy(&env, "connect-timeout", "client", first);
        assert_no_eagain("connect with a timeout", &out, &report);
        assert!(d.of("app_blocking_seen_later") >= 20, "{}", d.show());
        assert!(d.of("app_left_sockhash") >= 20, "{}", d.show());
    }

    // Accepted by a blocking server: no file at PASSIVE_ESTABLISHED; it
    // leaves at its first own callback once accept() gave it one.
    for first in [&[][..], &["--sidecar-first"][..]] {
        let (out, report, d) = app_proxy(&env, "blocking", "server", first);
        assert_no_eagain("blocking server", &out, &report);
        assert!(d.of("app_blocking_seen_later") >= 20, "{}", d.show());
        assert!(d.of("app_left_sockhash") >= 20, "{}", d.show());
    }
}

/// Non-blocking applications keep the gain they can have without being
/// observable: their sends to the sidecar are redirected, the sidecar's
/// answers reach them by TCP (so splice and FIONREAD see every byte).
#[test]
fn nonblocking_applications_send_redirected_and_receive_by_tcp() {
    let (env, _daemon) = daemon("tr-nonblock", &[]);
    for side in ["client", "server"] {
        let (out, report, d) = app_proxy(&env, "nonblocking", side, &[]);
        assert_no_eagain(&format!("non-blocking {side}"), &out, &report);
        assert!(d.of("redirect_bytes") > 0, "{side}: {}", d.show());
        assert!(d.of("app_receives_by_tcp") >= 20, "{side}: {}", d.show());
        assert_eq!(d.of("app_blocking_seen_later"), 0, "{side}: {}", d.show());
        // Half of each exchange is the application's: redirected. The
        // sidecar's half went by TCP from a receive-only socket, whose
        // sends never pass through sk_msg (the plain TCP send path).
        assert!(d.of("recorded_receive_only") >= 20, "{side}: {}", d.show());
        assert_eq!(d.of("pass_bytes"), 0, "{side}: {}", d.show());
    }
}

/// I-4 in the default mode: an application that sizes its reads with
/// FIONREAD (nginx, Java's `available()`, .NET's `Socket.Available`) is told
/// every byte the sidecar sent it, as a client and as a server.
///
/// The daemon's true default: where the kernel's FIONREAD counts TCP bytes
/// on sockhash sockets the applications' sockets are recorded (and receive
/// by TCP); where it does not, they are not recorded at all.
#[test]
fn fionread_applications_are_told_every_byte() {
    let env = TestEnv::new("tr-fionread");
    let default_daemon = env.start_daemon_default_mode(&[]);
    let apps_recorded = fionread_counts_tcp(&env);
    for side in ["client", "server"] {
        let (out, report, d) = app_proxy(&env, "fionread", side, &[]);
        assert_no_eagain(&format!("FIONREAD {side}"), &out, &report);
        if apps_recorded {
            assert!(d.of("app_receives_by_tcp") >= 20, "{side}: {}", d.show());
        } else {
            assert!(d.of("refused_proxy_only") >= 20, "{side}: {}", d.show());
            assert_eq!(d.of("redirect_bytes"), 0, "{side}: {}", d.show());
        }
    }
    drop(default_daemon);

    // The probe is right: with the applications recorded anyway, they are
    // told 0 exactly where it said FIONREAD leaves TCP bytes out.
    let (env, _daemon) = daemon("tr-fionread-gap", &[]);
    let (out, report, d) = app_proxy(&env, "fionread", "client", &[]);
    assert!(d.of("app_receives_by_tcp") >= 20, "{}", d.show());
    let told_zero = report["errors"].as_array().is_some_and(|e| {
        e.iter()
            .any(|e| e.as_str().is_some_and(|e| e.contains("FIONREAD said 0")))
    });
    assert_eq!(
        told_zero,
        !apps_recorded,
        "the probe said FIONREAD counts TCP bytes: {}; the recorded applications: {report} {}",
        apps_recorded,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An application listening since before the datapath was installed: its
/// listen() was never seen, so the first sidecar connection to it is
/// recorded as before (sending through sk_msg); the application's accepted
/// socket teaches the datapath whose listener it is, and later sidecar
/// connections are receive-only. Every byte still arrives, 0 EAGAIN.
#[test]
fn a_listener_older_than_the_datapath_is_learnt_from_its_first_connection() {
    let env = TestEnv::new("tr-oldlisten");
    let mut cmd = Command::new(DRIVER.as_str());
    let _procs = env.in_cgroup(&mut cmd);
    let mut child = cmd
        .args([
            "app-proxy",
            "--app",
            "nonblocking",
            "--app-side",
            "server",
            "--conns",
            "20",
            "--hold",
            "--timeout-secs",
            "60",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn accel-integrity");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("read listening line");
    assert!(line.starts_with("listening"), "{line}");

    let _daemon = env.start_daemon_default_mode(&[GUARD_ON_EVERY_KERNEL]);
    let (out, d) = measured(&env, || {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(b"go\n")
            .expect("release the clients");
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut rest).expect("read report");
        let out = child.wait_with_output().expect("wait accel-integrity");
        (rest, out)
    });
    let (rest, out) = out;
    let report = driver_report(&rest, &out, &["app-proxy", "--hold"]);
    assert!(
        out.status.success(),
        "{report} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(report["errors"], Value::Array(vec![]), "{report}");
    assert_eq!(report["eagain_on_blocking"], 0, "{report}");
    assert!(d.of("passive_paired") >= 20, "{}", d.show());
    // The connections raced the first one's lesson: some were recorded as
    // before, the rest receive-only.
    assert!(d.of("recorded_receive_only") >= 1, "{}", d.show());
    let listeners = env.status_json()["datapath"]["maps"]
        .as_array()
        .and_then(|maps| maps.iter().find(|m| m["name"] == "accel_app_listeners"))
        .and_then(|m| m["entries"].as_u64());
    assert_eq!(listeners, Some(1), "the listener was learnt once");
}

/// A pod that declares its application safe (`app-safe`) gets both
/// directions redirected, and the blocking guard still holds.
#[test]
fn app_safe_redirects_both_ways_and_still_guards_blocking_readers() {
    let (env, _daemon) = daemon("tr-appsafe", &["--pod-acceleration", "app-safe"]);
    for side in ["client", "server"] {
        let (out, report, d) = app_proxy(&env, "nonblocking", side, &[]);
        assert_no_eagain(&format!("app-safe non-blocking {side}"), &out, &report);
        assert_eq!(
            d.of("pass_bytes"),
            0,
            "{side}: every byte redirected: {}",
            d.show()
        );
        assert!(d.of("redirect_bytes") > 0, "{}", d.show());
    }
    for (app, side) in [("blocking", "server"), ("connect-timeout", "client")] {
        let (out, report, d) = app_proxy(&env, app, side, &[]);
        assert_no_eagain(&format!("app-safe {app} {side}"), &out, &report);
        assert!(d.of("app_blocking_seen_later") >= 20, "{}", d.show());
    }
}

/// I-1 and I-4: an application reading with splice(2) or sizing its reads
/// with FIONREAD gets every byte in order, under and over the flow budget,
/// from a sidecar that sends with every send interface.
///
/// The FIONREAD reader runs against the true default: with
/// `--allow-auto-fionread-gap` on a kernel whose FIONREAD leaves out TCP
/// bytes, a FIONREAD reader is outside that flag's promise (a blocking one
/// that reads before the guard takes its socket out is told 0).
#[test]
fn splice_and_fionread_readers_get_every_byte_in_order() {
    let stream = |env: &TestEnv, recv: &str, bytes: &str| {
        let (out, report, d) = drive(
            env,
            &[
                "stream",
                "--sidecar-end",
                "client",
                "--send",
                "write,msg-more,cork,writev,sendfile,splice",
                "--recv",
                recv,
                "--conns",
                "1",
                "--bytes",
                bytes,
                "--timeout-secs",
                "120",
            ],
        );
        assert_clean(&format!("{recv} reader, {bytes} B"), &out, &report);
        assert_eq!(d.of("redirect_bytes"), 0, "{}", d.show());
        d
    };
    let (env, daemon_with_gap) = daemon("tr-splice", &[]);
    for bytes in ["1048576", "16777216"] {
        let d = stream(&env, "splice", bytes);
        // The sidecar's sockets were recorded and chose TCP towards the
        // application: nothing was redirected into it.
        assert!(d.of("app_receives_by_tcp") >= 6, "{}", d.show());
    }
    drop(daemon_with_gap);

    let forced = std::env::var_os("ACCEL_TRANSPARENCY_MODE").is_some();
    let (env, _daemon) = if forced {
        daemon("tr-fionread-stream", &[])
    } else {
        let env = TestEnv::new("tr-fionread-stream");
        let daemon = env.start_daemon_default_mode(&[]);
        (env, daemon)
    };
    let apps_recorded = forced || fionread_counts_tcp(&env);
    let d = stream(&env, "fionread", "16777216");
    if apps_recorded {
        assert!(d.of("app_receives_by_tcp") >= 6, "{}", d.show());
    } else {
        assert!(d.of("refused_proxy_only") >= 6, "{}", d.show());
    }
}

/// I-5 and I-3: blocking readers whose peer resets mid-stream see the
/// reset, not EAGAIN; blocking echo servers with messages up to 4 MiB read
/// every byte.
#[test]
fn blocking_readers_see_resets_and_big_echoes_intact() {
    let (env, _daemon) = daemon("tr-rst", &[]);
    for end in ["client", "server"] {
        let (out, report, d) = drive(
            &env,
            &[
                "rst",
                "--sidecar-end",
                end,
                "--conns",
                "100",
                "--bytes",
                "1048576",
                "--every",
                "4",
                "--recv",
                "read",
                "--timeout-secs",
                "120",
            ],
        );
        assert_clean(
            &format!("RST, blocking readers, sidecar {end}"),
            &out,
            &report,
        );
        // Every connection that carried its megabyte to a blocking reader
        // was caught by the guard. One the sender reset before the
        // application accepted it never had a file to look at (and needed
        // no guarding: its reader sees only the reset).
        let intact = report["intact"].as_u64().unwrap_or(0);
        assert!(intact >= 50, "{report}");
        assert!(
            d.of("app_blocking_not_recorded") + d.of("app_blocking_seen_later") >= intact,
            "{}",
            d.show()
        );
    }
    let (out, report, d) = drive(
        &env,
        &[
            "echo",
            "--sidecar-end",
            "client",
            "--conns",
            "32",
            "--msgs",
            "20",
            "--big-conns",
            "32",
            "--big-max",
            "4194304",
            // The clients are the sidecar: it reads without blocking, as
            // Envoy does, beside its writer thread. A blocking proxy reader
            // there is outside what the modes promise (known issues: the
            // proxy is assumed non-blocking) and meets I-5.
            "--recv",
            "dontwait",
            "--timeout-secs",
            "300",
        ],
    );
    assert_clean("blocking echo servers, 4 MiB messages", &out, &report);
    assert!(d.of("app_blocking_seen_later") >= 32, "{}", d.show());
}

/// `proxy-only` keeps every application socket out, with no pods file.
#[test]
fn proxy_only_without_a_pods_file_keeps_applications_out() {
    let (env, _daemon) = daemon("tr-proxyonly", &["--pod-acceleration", "proxy-only"]);
    for side in ["client", "server"] {
        let (out, report, d) = app_proxy(&env, "nonblocking", side, &[]);
        assert_no_eagain(&format!("proxy-only {side}"), &out, &report);
        assert!(d.of("refused_proxy_only") >= 20, "{}", d.show());
        assert_eq!(d.of("redirect_bytes"), 0, "{}", d.show());
    }
}
