//! Helpers shared by the hostile suites.

#![allow(dead_code)]

use std::{
    process::{Child, Command, Output, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use accel_test_harness::{TestEnv, daemon_bin};

/// The daemon's stderr must read like an operator error, not a crash.
pub fn assert_one_clean_error(what: &str, out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{what}: expected failure\n{stderr}");
    assert_eq!(
        out.status.code(),
        Some(if stderr.contains("For more information, try '--help'") {
            2
        } else {
            1
        }),
        "{what}: exit status {:?} (killed by a signal?)\n{stderr}",
        out.status
    );
    assert_eq!(
        stderr.matches("error:").count(),
        1,
        "{what}: exactly one error line expected\n{stderr}"
    );
    for crash in ["panicked", "backtrace", "RUST_BACKTRACE", "SIGSEGV"] {
        assert!(!stderr.contains(crash), "{what}: {crash}\n{stderr}");
    }
    stderr
}

/// Runs `accel-daemon args` to completion, at most `timeout`. A daemon that
/// accepted the input and became ready is killed at once and its log
/// returned as `Err`.
pub fn run_daemon(args: &[String], timeout: Duration) -> Result<Output, String> {
    run_daemon_with_caps(None, args, timeout)
}

/// `run_daemon` as uid 0 limited to the capabilities `caps` (setpriv's
/// syntax, e.g. "+net_admin,+sys_admin"): the bounding set a container with
/// `drop: [ALL]` and `add: [...]` gets.
pub fn run_daemon_with_caps(
    caps: Option<&str>,
    args: &[String],
    timeout: Duration,
) -> Result<Output, String> {
    let mut cmd = match caps {
        Some(caps) => daemon_with_caps(caps),
        None => Command::new(daemon_bin()),
    };
    let mut child = cmd
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("FAILING LOUDLY: spawn accel-daemon (setpriv is in util-linux)");
    let (rx, reader) = collect_stderr(&mut child);
    let deadline = Instant::now() + timeout;
    let mut ready = false;
    let status = loop {
        if let Ok(Some(st)) = child.try_wait() {
            break st;
        }
        if rx.try_recv().is_ok() || Instant::now() >= deadline {
            ready = true;
            let _ = child.kill();
            break child.wait().expect("wait accel-daemon");
        }
        thread::sleep(Duration::from_millis(20));
    };
    let log = reader.join().unwrap_or_default();
    if ready {
        return Err(log);
    }
    Ok(Output {
        status,
        stdout: Vec::new(),
        stderr: log.into_bytes(),
    })
}

/// The daemon run as uid 0 limited to the capabilities `caps` (setpriv's
/// syntax, e.g. "+net_admin,+sys_admin").
pub fn daemon_with_caps(caps: &str) -> Command {
    let mut c = Command::new("setpriv");
    c.args([
        "--bounding-set",
        &format!("-all,{caps}"),
        "--inh-caps",
        "-all",
        "--",
    ])
    .arg(daemon_bin());
    c
}

/// Collects the daemon's stderr on a thread, which returns all of it once
/// the daemon exits; the channel hears when the daemon is ready.
pub fn collect_stderr(child: &mut Child) -> (mpsc::Receiver<()>, thread::JoinHandle<String>) {
    let (tx, rx) = mpsc::channel();
    let reader = accel_test_harness::collect_stderr(child, move |line| {
        if line.contains("listening on") {
            let _ = tx.send(());
        }
    });
    (rx, reader)
}

/// Runs the daemon command `cmd` at trace level, lets it work for `busy`
/// once it is ready (60 s at most), then kills it. Returns whether it
/// became ready and all it wrote: stderr, then stdout if `cmd` piped it.
pub fn run_at_trace_level(cmd: &mut Command, busy: Duration) -> (bool, String) {
    let mut child = cmd
        .env("RUST_LOG", "trace")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn accel-daemon");
    let (rx, reader) = collect_stderr(&mut child);
    let ready = rx.recv_timeout(Duration::from_secs(60)).is_ok();
    thread::sleep(busy);
    let _ = child.kill();
    let _ = child.wait();
    let stdout = child
        .stdout
        .take()
        .map(|mut s| {
            let mut v = String::new();
            let _ = std::io::Read::read_to_string(&mut s, &mut v);
            v
        })
        .unwrap_or_default();
    (ready, reader.join().unwrap_or_default() + &stdout)
}

pub fn assert_nothing_left(env: &TestEnv, what: &str) {
    assert!(env.attachments().is_empty(), "{what}: something attached");
    assert!(!env.pin_dir.exists(), "{what}: pins left behind");
}
