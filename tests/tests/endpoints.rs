//! Non-loopback local endpoints (standalone hosts): connections between two
//! listed addresses are paired and redirected; unlisted addresses are not
//! touched; the endpoints file is re-read without a restart. All traffic
//! stays inside a private network namespace (addresses on a veth pair there;
//! this kernel has no dummy driver).

use std::{process::Stdio, thread, time::Duration};

use accel_test_harness::{Netns, TestEnv, counter_of, free_port, parse_load_report};

static LOADGEN: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| accel_test_harness::loadgen_bin().display().to_string());
const A: &str = "192.0.2.10";
const B: &str = "192.0.2.11";

fn pod_network() -> Netns {
    let ns = Netns::new("ep");
    ns.exec_ok(&[
        "ip", "link", "add", "va", "type", "veth", "peer", "name", "vb",
    ]);
    ns.exec_ok(&["ip", "addr", "add", &format!("{A}/24"), "dev", "va"]);
    ns.exec_ok(&["ip", "addr", "add", &format!("{B}/24"), "dev", "vb"]);
    ns.exec_ok(&["ip", "link", "set", "va", "up"]);
    ns.exec_ok(&["ip", "link", "set", "vb", "up"]);
    ns
}

/// Echo traffic to `B` inside the namespace and the test cgroup; returns
/// how many redirected bytes it added.
fn traffic(env: &TestEnv, ns: &Netns) -> u64 {
    let before = env.counter("redirect_bytes");
    let mut cmd = ns.command(LOADGEN.as_str());
    cmd.arg("--listen")
        .arg(format!("{B}:{}", free_port()))
        .args(["--conns", "6", "--sizes", "1,1500,65536", "--rounds", "3"])
        .stdin(Stdio::null());
    let _procs = env.in_cgroup(&mut cmd);
    let out = cmd.output().expect("loadgen");
    let r = parse_load_report(&out);
    assert!(
        r.errors.is_empty() && out.status.success(),
        "{:?}",
        r.errors
    );
    assert_eq!(r.bytes_each_way, 6 * 3 * (1 + 1500 + 65536));
    env.counter("redirect_bytes") - before
}

#[test]
fn listed_local_endpoints_are_accelerated_and_others_are_not() {
    let env = TestEnv::new("endpoints");
    let ns = pod_network();
    let file = env.state_dir.with_extension("endpoints");
    std::fs::write(&file, format!("# test pods\n{A}\n")).expect("write endpoints file");
    let file_arg = file.display().to_string();
    let _daemon = env.start_daemon(&[
        "--local-endpoints-file",
        &file_arg,
        "--endpoint-sync-secs",
        "1",
    ]);

    // Only A is listed: connections on B (both ends B) are not recorded.
    let offered = env.counter("active_offered");
    assert_eq!(
        traffic(&env, &ns),
        0,
        "unlisted addresses must not be redirected"
    );
    assert_eq!(env.counter("active_offered"), offered);

    // List B too, without a restart.
    std::fs::write(&file, format!("{A}\n{B}\n")).expect("rewrite endpoints file");
    thread::sleep(Duration::from_millis(2500));
    let status = env.status_json();
    assert_eq!(
        status["daemon"]["endpoints"].as_array().map(Vec::len),
        Some(2),
        "{status}"
    );
    let redirected = traffic(&env, &ns);
    assert!(
        redirected >= 2 * 6 * 3 * (1 + 1500 + 65536),
        "both directions must be redirected, got {redirected}"
    );
    let status = env.status_json();
    assert!(counter_of(&status, "passive_paired") >= 6);
    let _ = std::fs::remove_file(&file);
}
