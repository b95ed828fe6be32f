//! Hostile flags and security posture (reliability issue, sections 5 and
//! 6): bad values for every flag, where the metrics endpoint listens,
//! secrets and the API token kept out of the logs, map sizes the kernel
//! refuses, an unwritable state dir, the fewest capabilities that work.
//!
//! Every failure must be one `error:` line, a non-zero exit, no panic or
//! backtrace, and nothing attached. Requires root; fails loudly without it.

use std::{
    fs,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use accel_test_harness::{Daemon, TestEnv, daemon_bin, free_port, set_flag};

#[path = "common/hostile.rs"]
mod hostile_support;

use hostile_support::*;

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
        // Parses, but no large message fits: the self-test would fail.
        ("--flow-budget-bytes", "262144"),
        // Flow control off, without --allow-no-flow-control: senders could
        // get ENOMEM where plain TCP blocks.
        ("--flow-budget-bytes", "0"),
        // Past the longest streak the datapath counts: never on.
        ("--short-lived-after", "65536"),
        ("--short-lived-after", "-1"),
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
