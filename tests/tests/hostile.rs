//! Hostile input and security posture (reliability issue, sections 5 and 6):
//! what the daemon does with a read-only bpffs, malformed and huge pods
//! files, bad values for every flag, where its metrics endpoint listens,
//! and whether secrets from its environment reach its logs.
//!
//! Every failure must be one `error:` line, a non-zero exit, no panic or
//! backtrace, and nothing attached. The non-root run is covered in
//! tests/tests/daemon.rs (a_non_root_run_fails_with_one_clear_line).
//! Requires root; fails loudly without it.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use accel_test_harness::{Daemon, TestEnv, daemon_bin, free_port, set_flag};

/// The daemon's stderr must read like an operator error, not a crash.
fn assert_one_clean_error(what: &str, out: &Output) -> String {
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
fn run_daemon(args: &[String], timeout: Duration) -> Result<Output, String> {
    run_daemon_with_caps(None, args, timeout)
}

/// `run_daemon` as uid 0 limited to the capabilities `caps` (setpriv's
/// syntax, e.g. "+net_admin,+sys_admin"): the bounding set a container with
/// `drop: [ALL]` and `add: [...]` gets.
fn run_daemon_with_caps(
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
fn daemon_with_caps(caps: &str) -> Command {
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
fn collect_stderr(child: &mut Child) -> (mpsc::Receiver<()>, thread::JoinHandle<String>) {
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
fn run_at_trace_level(cmd: &mut Command, busy: Duration) -> (bool, String) {
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

fn assert_nothing_left(env: &TestEnv, what: &str) {
    assert!(env.attachments().is_empty(), "{what}: something attached");
    assert!(!env.pin_dir.exists(), "{what}: pins left behind");
}

/// A private bpffs instance mounted on a directory of the test.
struct PrivateBpffs {
    dir: PathBuf,
}

impl PrivateBpffs {
    fn new(env: &TestEnv, opts: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("{}-bpffs", env.name));
        fs::create_dir_all(&dir).expect("mkdir mount point");
        let st = Command::new("mount")
            .args(["-t", "bpf", "-o", opts, "bpf"])
            .arg(&dir)
            .status()
            .expect("mount");
        assert!(st.success(), "mount -t bpf -o {opts} {}", dir.display());
        PrivateBpffs { dir }
    }
}

impl Drop for PrivateBpffs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
        let _ = fs::remove_dir(&self.dir);
    }
}

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

/// Every flag that takes a value, given a value it cannot use: one error
/// line, non-zero exit, no panic, nothing attached. Values that parse but
/// make no sense (sizes of 0 or 2^32-1) count too.
#[test]
fn bad_values_for_every_flag_fail_with_one_clear_line() {
    let env = TestEnv::new("h-badflags");
    let missing = "/nonexistent/accel-test-file";
    let huge = "99999999999999999999999";
    let run_cases: Vec<(&str, &str)> = vec![
        ("--metrics-addr", "not-an-address"),
        ("--metrics-addr", "127.0.0.1:99999"),
        ("--metrics-addr", ""),
        ("--kernel-release", "garbage"),
        ("--kernel-release", ""),
        ("--local-endpoint", "10.0.0.300"),
        ("--local-endpoint", "::1"),
        ("--local-endpoints-file", missing),
        ("--pods-file", missing),
        ("--pods-file", "/"),
        ("--endpoint-sync-secs", "-1"),
        ("--endpoint-sync-secs", huge),
        ("--endpoint-sync-secs", "abc"),
        ("--flow-budget-bytes", "-5"),
        ("--flow-budget-bytes", "5000000000"),
        ("--sockhash-size", "abc"),
        ("--pairing-size", "-1"),
        ("--cgroup", missing),
        ("--cgroup", ""),
        ("--pin-dir", ""),
        ("--pin-dir", "relative/v1"),
    ];
    let mut accepted = Vec::new();
    for (flag, value) in &run_cases {
        let mut args = env.run_args(&[]);
        // Replace the sandbox's own value of this flag, or append it.
        match args.iter().position(|a| a == flag) {
            Some(i) => args[i + 1] = value.to_string(),
            None => args.extend([flag.to_string(), value.to_string()]),
        }
        let what = format!("run {flag} {value:?}");
        match run_daemon(&args, Duration::from_secs(60)) {
            Ok(out) => {
                let e = assert_one_clean_error(&what, &out);
                assert!(
                    e.contains(flag.trim_start_matches('-')) || e.contains(value),
                    "{what}: the error must name the flag or the value: {e}"
                );
            }
            Err(log) => accepted.push(format!(
                "{what}: accepted ({})",
                log.lines()
                    .find(|l| l.contains("WARN") || l.contains("unaccelerated"))
                    .unwrap_or("ran")
            )),
        }
        assert!(env.attachments().is_empty(), "{what}: left attached");
        accel_test_harness::remove_tree(&env.pin_dir);
    }
    let pin = env.pin_dir.display().to_string();
    let other_cases: Vec<Vec<&str>> = vec![
        vec![
            "status",
            "--pin-dir",
            &pin,
            "--state-dir",
            missing,
            "--bogus",
        ],
        vec!["unload", "--pin-dir", &pin, "--drain-timeout", "abc"],
        vec!["unload", "--pin-dir", &pin, "--drain-timeout", huge],
        vec!["unload", "--pin-dir", &pin, "--cgroup", missing],
        vec!["verify", "--duration", "xyz"],
        vec!["verify", "--duration", "-1s"],
        vec!["verify", "--port", "70000"],
        vec!["verify", "--packets", "-1"],
        vec!["verify", "--expect", "maybe"],
        vec!["verify", "--netns", missing, "--duration", "1s"],
        vec!["verify", "--pid", "999999999", "--duration", "1s"],
        vec!["verify", "-i", "no-such-iface0", "--duration", "1s"],
        vec!["verify", "--host", "not-an-ip"],
        vec!["verify", "--pod", "no-namespace", "--state-dir", missing],
        vec!["verify", "--pod", "default/web", "--state-dir", missing],
        vec!["verify", "--pod", "default/web", "--pid", "1"],
    ];
    for args in &other_cases {
        let owned: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let what = args.join(" ");
        let out = run_daemon(&owned, Duration::from_secs(30))
            .unwrap_or_else(|log| panic!("{what}: still running after 30 s:\n{log}"));
        assert_one_clean_error(&what, &out);
    }
    assert!(
        accepted.is_empty(),
        "values accepted instead of refused at start:\n{}",
        accepted.join("\n")
    );
}

/// `--metrics-addr 127.0.0.2:P` serves on 127.0.0.2:P and nowhere else
/// (not 127.0.0.1:P, not the wildcard).
#[test]
fn the_metrics_endpoint_binds_exactly_where_configured() {
    let env = TestEnv::new("h-bind");
    let port = free_port();
    let addr = format!("127.0.0.2:{port}");
    let mut args = env.run_args(&[]);
    set_flag(&mut args, "--metrics-addr", &addr);
    let daemon = Daemon::start(&args);
    assert_eq!(daemon.metrics_addr, addr);
    assert_eq!(daemon.http_get("/healthz").0, 200);
    for elsewhere in [format!("127.0.0.1:{port}"), format!("[::1]:{port}")] {
        let r = std::net::TcpStream::connect_timeout(
            &elsewhere.parse().expect("addr"),
            Duration::from_secs(2),
        );
        assert!(r.is_err(), "metrics reachable on {elsewhere}");
    }
    let ss = Command::new("ss")
        .args(["-Hltn", &format!("sport = :{port}")])
        .output()
        .expect("ss");
    let listening = String::from_utf8_lossy(&ss.stdout).into_owned();
    assert_eq!(listening.lines().count(), 1, "{listening}");
    assert!(listening.contains(&addr), "{listening}");
}

/// The daemon at trace level with a secret planted in its environment (as
/// a service-account token or cloud credential would be) and in a file it
/// is not asked to read: no log line carries it, nor any other environment
/// value.
#[test]
fn no_secret_from_the_environment_reaches_the_logs() {
    let env = TestEnv::new("h-secrets");
    let token = format!(
        "s3cr3t-{}-{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos() ^ 0x5eed_cafe
    );
    let pods = env.state_dir.with_extension("pods.toml");
    fs::write(&pods, "[[pod]]\nname = \"a\"\nips = [\"10.1.2.3\"]\n").expect("write");
    let mut args = env.run_args(&["--pods-file", &pods.display().to_string()]);
    args.extend(["--endpoint-sync-secs".into(), "1".into()]);
    // A few sync ticks at trace level, and a scrape.
    let (ready, log) = run_at_trace_level(
        Command::new(daemon_bin())
            .args(&args)
            .env("ACCEL_TEST_SECRET", &token)
            .env("AWS_SECRET_ACCESS_KEY", &token)
            .env("KUBERNETES_TOKEN", &token)
            .stdout(Stdio::piped()),
        Duration::from_millis(2500),
    );
    let _ = fs::remove_file(&pods);
    assert!(ready, "daemon never became ready:\n{log}");
    assert!(
        log.lines().count() > 10,
        "too little logged to judge:\n{log}"
    );
    assert!(!log.contains(&token), "the secret reached the log:\n{log}");
    // Nothing from the environment at all: not PATH, not HOME.
    for (k, v) in std::env::vars() {
        if v.len() >= 12 && !v.starts_with('/') && log.contains(&v) {
            panic!("environment value of {k} in the log");
        }
    }
}

/// Map sizes the kernel refuses (0, 2^32-1) must be refused at start, not
/// silently turn acceleration off on the node. Regression test for
/// RELIABILITY.md F-5.
#[test]
fn map_sizes_the_kernel_refuses_are_refused_at_start() {
    let env = TestEnv::new("h-sizes");
    for (flag, value) in [
        ("--sockhash-size", "0"),
        ("--sockhash-size", "4294967295"),
        ("--pairing-size", "0"),
        ("--pairing-size", "4294967295"),
    ] {
        let what = format!("run {flag} {value}");
        let out = run_daemon(&env.run_args(&[flag, value]), Duration::from_secs(60))
            .unwrap_or_else(|log| {
                let why = log
                    .lines()
                    .find(|l| l.contains("running unaccelerated"))
                    .unwrap_or("started");
                panic!("{what}: accepted: {why}")
            });
        let e = assert_one_clean_error(&what, &out);
        assert!(e.contains(flag), "{what}: {e}");
        assert_nothing_left(&env, &what);
    }
}

/// A state dir the daemon cannot write must be refused before the datapath
/// is attached and pinned. Regression test for RELIABILITY.md F-4.
#[test]
fn an_unwritable_state_dir_fails_before_anything_is_attached() {
    let env = TestEnv::new("h-statedir");
    let mut args = env.run_args(&[]);
    set_flag(&mut args, "--state-dir", "/proc/version");
    let out =
        run_daemon(&args, Duration::from_secs(60)).unwrap_or_else(|log| panic!("accepted:\n{log}"));
    let e = assert_one_clean_error("--state-dir /proc/version", &out);
    assert!(e.contains("/proc/version"), "{e}");
    assert_nothing_left(&env, "--state-dir /proc/version");
}

/// The Kubernetes source authenticates with a bearer token read from a file
/// (as a service-account token is): at trace level, with the watch running
/// and the node status being written, the token appears in no log line.
#[test]
fn the_api_token_never_reaches_the_logs_at_trace_level() {
    use accel_fake_apiserver::{FakeApiServer, fixtures};

    let env = TestEnv::new("h-token");
    let token = format!(
        "tok3n-{}-{:x}",
        std::process::id(),
        0x5eed_u64.wrapping_mul(Instant::now().elapsed().as_nanos() as u64 | 1)
    );
    let api = FakeApiServer::start().expect("start the fake API server");
    let node_name = format!("node-{}", std::process::id());
    let kernel = accel_test_harness::running_kernel();
    api.upsert(fixtures::node(&node_name, &kernel, "Debian GNU/Linux 12"));
    api.upsert(fixtures::istio_pod(
        "shop",
        "a",
        &node_name,
        &["10.250.7.7"],
    ));
    let token_file = env.state_dir.with_extension("token");
    fs::write(&token_file, &token).expect("write token");
    let kubeconfig = env.state_dir.with_extension("kubeconfig");
    let cfg = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "fake", "cluster": {"server": api.url()}}],
        "users": [{"name": "sa", "user": {"tokenFile": token_file}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "sa"}}],
        "current-context": "fake",
    });
    fs::write(&kubeconfig, cfg.to_string()).expect("write kubeconfig");
    let args = env.run_args(&[
        "--endpoint-source",
        "kubernetes",
        "--node-name",
        &node_name,
        "--kubeconfig",
        &kubeconfig.display().to_string(),
        "--node-poll-secs",
        "1",
        "--endpoint-sync-secs",
        "1",
    ]);
    // The pod list, the watch, a few node-status writes.
    let (ready, log) = run_at_trace_level(
        Command::new(daemon_bin()).args(&args).stdout(Stdio::null()),
        Duration::from_millis(3000),
    );
    let _ = fs::remove_file(&token_file);
    let _ = fs::remove_file(&kubeconfig);
    assert!(ready, "daemon never became ready:\n{log}");
    assert!(
        log.contains("10.250.7.7") || log.contains("shop/a"),
        "the watch did not deliver the pod, so the token was never used:\n{}",
        log.lines().rev().take(30).collect::<Vec<_>>().join("\n")
    );
    let lines = log.lines().count();
    assert!(
        !log.contains(&token),
        "the API token reached the log ({lines} lines):\n{}",
        log.lines()
            .filter(|l| l.contains(&token))
            .take(5)
            .collect::<Vec<_>>()
            .join("\n")
    );
    eprintln!("{lines} trace-level log lines, token absent");
}

/// SECURITY.md's capability finding, kept true: on this kernel the daemon
/// installs (with its self-test), adopts and unloads with only
/// CAP_NET_ADMIN and CAP_SYS_ADMIN, and refuses to start, attaching
/// nothing, when either is missing from the DaemonSet's set.
#[test]
fn the_fewest_capabilities_that_work_are_net_admin_and_sys_admin() {
    let env = TestEnv::new("h-caps");
    let minimal = "+net_admin,+sys_admin";
    let log = run_daemon_with_caps(Some(minimal), &env.run_args(&[]), Duration::from_secs(60))
        .err()
        .unwrap_or_else(|| panic!("the daemon exited with only {minimal}"));
    assert!(
        log.contains("accelerated=true"),
        "not accelerated with {minimal}:\n{log}"
    );
    env.assert_one_attachment(&format!("with only {minimal}"));
    let log = run_daemon_with_caps(Some(minimal), &env.run_args(&[]), Duration::from_secs(60))
        .err()
        .unwrap_or_else(|| panic!("the restart exited with only {minimal}"));
    assert!(log.contains("adopted"), "{log}");
    let pin = env.pin_dir.display().to_string();
    let unload = daemon_with_caps(minimal)
        .args(["unload", "--pin-dir", &pin, "--drain-timeout", "10"])
        .output()
        .expect("setpriv unload");
    assert!(
        unload.status.success(),
        "unload with only {minimal}: {}",
        String::from_utf8_lossy(&unload.stderr)
    );
    assert_nothing_left(&env, "after unload");

    let all = [
        "bpf",
        "perfmon",
        "net_admin",
        "sys_admin",
        "sys_resource",
        "net_raw",
    ];
    for needed in ["net_admin", "sys_admin"] {
        let caps: Vec<String> = all
            .iter()
            .filter(|c| **c != needed)
            .map(|c| format!("+{c}"))
            .collect();
        let what = format!("DaemonSet capabilities without {needed}");
        let out = run_daemon_with_caps(
            Some(&caps.join(",")),
            &env.run_args(&[]),
            Duration::from_secs(60),
        )
        .unwrap_or_else(|log| panic!("{what}: the daemon started:\n{log}"));
        let e = assert_one_clean_error(&what, &out);
        assert!(
            e.contains(&format!("CAP_{}", needed.to_uppercase())),
            "{what}: {e}"
        );
        assert_nothing_left(&env, &what);
    }
}
