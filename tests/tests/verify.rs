//! `accel-daemon verify` against real traffic, with the daemon on and off:
//! verdicts, explanations and `--expect` exit codes.

use std::{
    process::{Command, Stdio},
    thread,
    time::Duration,
};

use accel_test_harness::{TestEnv, Value, daemon_bin, free_port, integrity_bin, parse_load_report};

static LOADGEN: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| accel_test_harness::loadgen_bin().display().to_string());

/// Starts `verify` for `port`, runs traffic in the test cgroup while it
/// captures, returns (exit code, JSON report).
fn verify_during_traffic(env: &TestEnv, expect: &str) -> (i32, Value) {
    verify_during(env, expect, |port| {
        let mut cmd = Command::new(LOADGEN.as_str());
        cmd.arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .args(["--conns", "4", "--sizes", "100,1500,65536", "--rounds", "3"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let _procs = env.in_cgroup(&mut cmd);
        let load = cmd.output().expect("loadgen");
        let report = parse_load_report(&load);
        assert!(report.errors.is_empty(), "{:?}", report.errors);
    })
}

/// `verify` on a free port while `traffic(port)` runs.
fn verify_during(env: &TestEnv, expect: &str, traffic: impl FnOnce(u16)) -> (i32, Value) {
    let port = free_port();
    let pin = env.pin_dir.display().to_string();
    let state = env.state_dir.display().to_string();
    let verify = Command::new(daemon_bin())
        .args([
            "verify",
            "--port",
            &port.to_string(),
            "--duration",
            "3s",
            "--json",
        ])
        .args(["--expect", expect, "--pin-dir", &pin, "--state-dir", &state])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn verify");
    thread::sleep(Duration::from_millis(700));
    traffic(port);
    let out = verify.wait_with_output().expect("verify");
    let json: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "verify output is not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), json)
}

/// The default mode redirects an application's bytes to its sidecar and
/// sends the sidecar's answers by TCP: verify says so per connection.
#[test]
fn verify_shows_the_default_modes_application_legs_as_tcp_one_way() {
    let env = TestEnv::new("verify-auto");
    // Application sockets are recorded in `auto` only where the kernel's
    // FIONREAD counts TCP bytes, or with this flag (I-4, transparency.rs).
    let _daemon = env.start_daemon_default_mode(&["--allow-auto-fionread-gap"]);
    let (code, json) = verify_during(&env, "not-accelerated", |port| {
        let mut cmd = Command::new(integrity_bin());
        cmd.args(["app-proxy", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--app", "nonblocking", "--app-side", "client"])
            .args(["--conns", "4", "--rounds", "5", "--max-msg", "65536"])
            .stdin(Stdio::null());
        let _procs = env.in_cgroup(&mut cmd);
        let out = cmd.output().expect("accel-integrity app-proxy");
        assert!(
            out.status.success(),
            "app-proxy: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
    let rows = json["connections"].as_array().expect("connections array");
    assert_eq!(rows.len(), 4, "{json}");
    for r in rows {
        assert_eq!(r["verdict"]["verdict"], "one_way", "{json}");
        // The application connected: it is the client, the sidecar the server.
        assert_eq!(r["verdict"]["by_tcp"], "server -> client", "{json}");
    }
    assert_eq!(json["summary"]["one_way"], 4, "{json}");
    assert_eq!(
        code, 0,
        "TCP one way meets --expect not-accelerated: {json}"
    );
}

fn verdicts(json: &Value) -> Vec<String> {
    json["connections"]
        .as_array()
        .expect("connections array")
        .iter()
        .map(|c| c["verdict"].to_string())
        .collect()
}

#[test]
fn verify_proves_acceleration_and_explains_its_absence() {
    let env = TestEnv::new("verify");
    let mut daemon = env.start_daemon(&[]);

    let (code, json) = verify_during_traffic(&env, "accelerated");
    let v = verdicts(&json);
    assert_eq!(v.len(), 4, "one row per connection: {json}");
    assert!(
        v.iter()
            .all(|s| s.contains("accelerated") && !s.contains("not")),
        "{v:?}"
    );
    assert_eq!(code, 0, "{json}");
    for c in json["connections"].as_array().expect("rows") {
        assert_eq!(
            c["stats"]["psh_data_segments"].as_u64().unwrap_or(u64::MAX),
            0,
            "{c}"
        );
    }

    assert_eq!(daemon.terminate(), Some(0));
    assert!(env.unload().status.success());
    let (code, json) = verify_during_traffic(&env, "accelerated");
    assert_eq!(
        code, 3,
        "expectation must fail without the datapath: {json}"
    );
    let text = json.to_string();
    assert!(
        text.contains("no datapath pinned"),
        "reason must come from the daemon: {text}"
    );
    let (code, _) = verify_during_traffic(&env, "not-accelerated");
    assert_eq!(code, 0);
}

#[test]
fn verify_bad_input_gives_one_clear_error_and_a_non_zero_exit() {
    use std::os::unix::process::CommandExt;
    accel_test_harness::require_root();
    let run = |args: &[&str], nobody: bool| {
        let mut cmd = Command::new(daemon_bin());
        cmd.arg("verify").args(args).stdin(Stdio::null());
        if nobody {
            cmd.uid(65534).gid(65534);
        }
        let out = cmd.output().expect("verify");
        assert!(!out.status.success(), "{args:?} must fail");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    for (args, nobody, expect) in [
        (&["-i", "nosuch0", "--duration", "1s"][..], false, "ip link"),
        (
            &["--netns", "/run/netns/does-not-exist"][..],
            false,
            "ip netns list",
        ),
        (&["--pid", "999999999"][..], false, "999999999"),
        (&["--port", "99999"][..], false, "--port"),
        (&["--host", "not-an-ip"][..], false, "--host"),
        (&["--duration", "xyz"][..], false, "--duration"),
        (&["--duration", "1s"][..], true, "CAP_NET_RAW"),
    ] {
        let err = run(args, nobody);
        assert!(err.contains(expect), "{args:?}: {err}");
        assert_eq!(err.matches("error:").count(), 1, "{args:?}: {err}");
    }
}
