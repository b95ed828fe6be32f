//! Short-lived connections stay on plain TCP (short_lived.h): once the
//! recorded connections to a destination close short and fast, new ones
//! are left unrecorded but for probes (one in 16 at most, about 100 a
//! second at most); slow
//! short connections never start a streak; and once the short ones stop,
//! long-lived connections to the same destination are all recorded again.
//! Every connection's bytes are checked by the driver in every case.

use std::{thread, time::Duration};

use accel_test_harness::{
    Netns, TestEnv, Value, map_entries,
    traffic::{Delta, assert_clean, measured, run_driver},
    wait_until,
};

static DRIVER: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| accel_test_harness::integrity_bin().display().to_string());
const DESTINATION: &str = "127.0.0.1:7101";
/// The daemon's default `--short-lived-after`.
const STREAK: u64 = 8;
const PROBE_EVERY: u64 = 16;
/// The gap between short closes that keeps a streak (SHORT_LIVED_GAP_NS).
const GAP_MS: u64 = 10;

/// Runs `accel-integrity ARGS` in `ns`, inside the test's cgroup; returns
/// its JSON report, failing loudly when it failed.
fn driver(env: &TestEnv, ns: &Netns, args: &[&str]) -> Value {
    let mut cmd = ns.command(DRIVER.as_str());
    cmd.args(["--timeout-secs", "120"]);
    let _procs = env.in_cgroup(&mut cmd);
    let (out, report) = run_driver(cmd, args);
    assert_clean(&format!("accel-integrity {args:?}"), &out, &report);
    report
}

/// Short connections (one 64 B echo each) from one client thread.
fn churn(env: &TestEnv, ns: &Netns, duration_ms: u64, pause_ms: u64) -> u64 {
    let report = driver(
        env,
        ns,
        &[
            "churn",
            "--listen",
            DESTINATION,
            "--threads",
            "1",
            "--bytes",
            "64",
            "--duration-ms",
            &duration_ms.to_string(),
            "--pause-ms",
            &pause_ms.to_string(),
        ],
    );
    assert_eq!(report["errors"], 0, "{report}");
    report["connections"].as_u64().expect("connections")
}

/// What `what` returned, and the counters' movements once every recorded
/// connection closed: the last closes run their callbacks (and teach the
/// destination's history) a moment after the driver exits.
fn measure(env: &TestEnv, what: impl FnOnce() -> u64) -> (u64, Delta) {
    measured(env, || {
        let conns = what();
        let took = wait_until(
            Duration::from_secs(30),
            "every recorded connection closed",
            || {
                let s = env.status_json();
                map_entries(&s, "accel_sockhash") == 0 && map_entries(&s, "accel_rx_sockhash") == 0
            },
        );
        eprintln!("settled: every recorded connection closed after {took:?}");
        conns
    })
}

#[test]
fn fast_short_connections_stay_on_tcp_and_long_ones_are_recorded_after() {
    let env = TestEnv::new("short-lived");
    let ns = Netns::new("short-lived");
    ns.exec_ok(&["sysctl", "-qw", "net.ipv4.ip_local_port_range=1024 65535"]);
    let _daemon = env.start_daemon(&[]);

    // Back to back: the first STREAK are recorded and close short, then
    // the destination skips all but the probes.
    let duration_ms = 2000;
    let (conns, d) = measure(&env, || churn(&env, &ns, duration_ms, 0));
    let (recorded, skipped) = (d.of("active_offered"), d.of("short_lived_left_on_tcp"));
    eprintln!(
        "back to back: {conns} connections, {recorded} recorded, {skipped} left on TCP, \
         {} redirected sends",
        d.of("redirect_msgs")
    );
    assert!(
        conns > 10 * PROBE_EVERY,
        "too few connections to judge: {conns}"
    );
    // Every connection is accounted for: recorded, or left on TCP.
    assert_eq!(recorded + skipped, conns, "recorded + left on TCP");
    // The streak, then probes: one in 16 at most, and one each GAP_MS at
    // most once they come faster; at least one each PROBE_EVERY * GAP_MS,
    // or the rule lapses and records more. A probe that was slow to close
    // (a busy machine) ends the streak and the next STREAK are recorded.
    let probes_at_most = (conns / PROBE_EVERY).min(duration_ms / GAP_MS);
    assert!(
        recorded >= STREAK + duration_ms / (PROBE_EVERY * GAP_MS) / 2
            && recorded <= STREAK + 2 * probes_at_most,
        "recorded {recorded} of {conns}: the streak, then at most {probes_at_most} probes"
    );
    // The recorded ones were really accelerated, both ways.
    assert_eq!(d.of("passive_paired"), recorded);
    assert_eq!(d.of("redirect_msgs"), 2 * recorded);

    // The rule lapses 160 ms after the last short close: a pool opened
    // later is recorded whole, and redirects every message.
    thread::sleep(Duration::from_millis(500));
    let pool = 20u64;
    let (_, d) = measure(&env, || {
        let report = driver(
            &env,
            &ns,
            &[
                "echo",
                "--listen",
                DESTINATION,
                "--conns",
                &pool.to_string(),
                "--big-conns",
                "0",
            ],
        );
        assert_eq!(report["errors"].as_u64().unwrap_or(0), 0, "{report}");
        pool
    });
    assert_eq!(
        d.of("short_lived_left_on_tcp"),
        0,
        "long-lived pool skipped"
    );
    assert_eq!(d.of("active_offered"), pool);
    assert_eq!(d.of("passive_paired"), pool);
    assert_eq!(d.of("pass_msgs"), 0, "every message of the pool redirected");

    // Short connections far apart (a health check) never start a streak.
    thread::sleep(Duration::from_millis(500));
    let (conns, d) = measure(&env, || churn(&env, &ns, 1000, 25));
    eprintln!(
        "25 ms apart: {conns} connections, {} recorded",
        d.of("active_offered")
    );
    assert!(conns > STREAK * 2, "too few connections to judge: {conns}");
    assert_eq!(d.of("short_lived_left_on_tcp"), 0);
    assert_eq!(d.of("active_offered"), conns);
}

#[test]
fn zero_records_every_short_connection() {
    let env = TestEnv::new("short-lived-off");
    let ns = Netns::new("short-lived-off");
    ns.exec_ok(&["sysctl", "-qw", "net.ipv4.ip_local_port_range=1024 65535"]);
    let _daemon = env.start_daemon(&["--short-lived-after", "0"]);
    let (conns, d) = measure(&env, || churn(&env, &ns, 1000, 0));
    assert!(
        conns > 10 * PROBE_EVERY,
        "too few connections to judge: {conns}"
    );
    assert_eq!(d.of("short_lived_left_on_tcp"), 0);
    assert_eq!(d.of("active_offered"), conns);
    assert_eq!(d.of("redirect_msgs"), 2 * conns);
}
