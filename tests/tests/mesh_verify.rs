//! `accel-daemon verify` on every leg of the sidecar topology, inside the
//! pods' network namespaces: accelerated with the daemon, not accelerated
//! (with the daemon's reason) without it, and `--expect` exit codes. One
//! leg names its pod (`--pod default/b`) instead of a namespace file, as
//! `accel-installer verify` does through `kubectl exec`.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::Duration,
};

use accel_test_harness::{TestEnv, Value, daemon_bin, pattern, sha256_hex};
use accel_topology::{ECHO_PORT, Mesh, Node, OUTBOUND_PORT, Pod};

/// Where `verify` captures.
enum At<'a> {
    /// A namespace file (`--netns`).
    Netns(&'a Path),
    /// A pod the running daemon knows (`--pod NAMESPACE/NAME`).
    Pod(&'a str),
}

/// `verify` capturing on `iface` in the namespace `at`.
fn start_verify(env: &TestEnv, at: At, iface: &str, port: u16, expect: &str) -> Child {
    let mut cmd = Command::new(daemon_bin());
    cmd.arg("verify");
    match at {
        At::Netns(p) => cmd.arg("--netns").arg(p),
        At::Pod(p) => cmd.args(["--pod", p]),
    };
    cmd.args([
        "-i",
        iface,
        "--port",
        &port.to_string(),
        "--duration",
        "4s",
        "--json",
    ])
    .args(["--expect", expect, "--pin-dir"])
    .arg(&env.pin_dir)
    .arg("--state-dir")
    .arg(&env.state_dir)
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("spawn verify")
}

fn finish(child: Child) -> (i32, Value) {
    let out = child.wait_with_output().expect("verify");
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "verify printed no JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), json)
}

/// Verifies the three legs of one meshed echo from A to B; B's by its pod
/// name when `b_by_pod` (the daemon must be running).
fn three_legs(
    env: &TestEnv,
    node: &Node,
    a: &Pod,
    b: &Pod,
    expect: &str,
    b_by_pod: bool,
) -> Vec<(i32, Value)> {
    let node_ns = PathBuf::from(format!("/run/netns/{}", node.netns));
    let b_name = format!("default/{}", b.name);
    let b_at = if b_by_pod {
        At::Pod(&b_name)
    } else {
        At::Netns(&b.netns_path)
    };
    let legs = [
        start_verify(env, At::Netns(&a.netns_path), "lo", OUTBOUND_PORT, expect),
        start_verify(env, At::Netns(&node_ns), &a.host_veth, ECHO_PORT, expect),
        start_verify(env, b_at, "lo", ECHO_PORT, expect),
    ];
    thread::sleep(Duration::from_millis(800));
    let client = a.echo_client(b.addr_v4(ECHO_PORT), 256 * 1024);
    assert!(client.report.equal);
    assert_eq!(
        client.report.received_sha256,
        sha256_hex(&pattern::bytes(1, 0, 256 * 1024))
    );
    client.finish();
    legs.into_iter().map(finish).collect()
}

#[test]
fn verify_judges_every_leg_of_the_sidecar_topology() {
    let env = TestEnv::new("mesh-verify");
    let node = Node::new(&env, "vf");
    let a = node.meshed_pod("a", Mesh::default());
    let b = node.meshed_pod("b", Mesh::default());
    b.start_echo();
    let pods = accel_topology::PodsFile::write(&env, &[(&a, ""), (&b, "")]).expect("pods file");
    let mut daemon = env.start_daemon(&["--pods-file", &pods.arg()]);

    for (leg, (code, json)) in three_legs(&env, &node, &a, &b, "accelerated", true)
        .iter()
        .enumerate()
    {
        let rows = json["connections"].as_array().expect("rows");
        assert_eq!(rows.len(), 1, "leg {}: one connection: {json}", leg + 1);
        assert_eq!(
            rows[0]["verdict"]["verdict"],
            "accelerated",
            "leg {}: {json}",
            leg + 1
        );
        assert_eq!(
            *code,
            0,
            "leg {}: --expect accelerated must pass: {json}",
            leg + 1
        );
    }

    assert_eq!(daemon.terminate(), Some(0));
    assert!(env.unload().status.success());
    for (leg, (code, json)) in three_legs(&env, &node, &a, &b, "accelerated", false)
        .iter()
        .enumerate()
    {
        let text = json.to_string();
        assert!(
            text.contains("not_accelerated") || text.contains("not accelerated"),
            "leg {}: {text}",
            leg + 1
        );
        assert!(
            text.contains("no datapath pinned"),
            "leg {}: reason from the daemon: {text}",
            leg + 1
        );
        assert_eq!(*code, 3, "leg {}: --expect accelerated must fail", leg + 1);
    }
}

fn reason_of(json: &Value) -> String {
    json["connections"]
        .as_array()
        .and_then(|rows| rows.first())
        .map(|r| r["verdict"].to_string())
        .unwrap_or_else(|| panic!("no connection captured: {json}"))
}

#[test]
fn verify_explains_why_a_connection_was_not_accelerated() {
    use accel_topology::{HTTP_FILE, HTTP_PORT};
    let env = TestEnv::new("mesh-why");
    let node = Node::new(&env, "wy");
    let a = node.meshed_pod("a", Mesh::default().exclude_outbound_port(HTTP_PORT));
    let b = node.meshed_pod("b", Mesh::default());
    let u = node.unmeshed_pod("u");
    let u2 = node.unmeshed_pod("u2");
    b.start_nginx(&pattern::bytes(3, 0, 64 * 1024));
    u.start_echo();
    u2.start_echo();
    let pods = accel_topology::PodsFile::write(
        &env,
        &[
            (&a, &format!("exclude_outbound_ports = [{HTTP_PORT}]")),
            (&b, ""),
        ],
    )
    .expect("pods file");
    let _daemon = env.start_daemon(&["--pods-file", &pods.arg()]);
    let node_ns = PathBuf::from(format!("/run/netns/{}", node.netns));

    // Unmeshed pod to unmeshed pod, across the bridge.
    let v = start_verify(
        &env,
        At::Netns(&node_ns),
        &u.host_veth,
        ECHO_PORT,
        "not-accelerated",
    );
    thread::sleep(Duration::from_millis(800));
    u.echo_client(u2.addr_v4(ECHO_PORT), 64 * 1024).finish();
    let (code, json) = finish(v);
    assert_eq!(code, 0, "{json}");
    assert!(reason_of(&json).contains("unmeshed"), "{json}");

    // A's excluded outbound port.
    let v = start_verify(
        &env,
        At::Netns(&node_ns),
        &a.host_veth,
        HTTP_PORT,
        "not-accelerated",
    );
    thread::sleep(Duration::from_millis(800));
    let _ = a.curl(&format!("http://{}{HTTP_FILE}", b.ipv4));
    let (code, json) = finish(v);
    assert_eq!(code, 0, "{json}");
    assert!(
        reason_of(&json).contains("excludes outbound port 80"),
        "{json}"
    );

    // Loopback inside the unmeshed pod.
    let v = start_verify(
        &env,
        At::Netns(&u.netns_path),
        "lo",
        ECHO_PORT,
        "not-accelerated",
    );
    thread::sleep(Duration::from_millis(800));
    u.echo_client(([127, 0, 0, 1], ECHO_PORT).into(), 64 * 1024)
        .finish();
    let (code, json) = finish(v);
    assert_eq!(code, 0, "{json}");
    assert!(
        reason_of(&json).contains("loopback outside a listed pod"),
        "{json}"
    );
}
