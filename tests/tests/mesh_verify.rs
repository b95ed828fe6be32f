//! `accel-daemon verify` on every leg of the sidecar topology, inside the
//! pods' network namespaces: accelerated with the daemon, not accelerated
//! (with the daemon's reason) without it, and `--expect` exit codes.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    thread,
    time::Duration,
};

use accel_tests::{
    TestEnv, Value, daemon_bin,
    topology::{ECHO_PORT, Mesh, Node, OUTBOUND_PORT, Pod, pattern, sha256_hex},
};

/// `verify` capturing on `iface` in the namespace file `netns`.
fn start_verify(env: &TestEnv, netns: &PathBuf, iface: &str, port: u16, expect: &str) -> Child {
    Command::new(daemon_bin())
        .args(["verify", "--netns"])
        .arg(netns)
        .args([
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

/// Verifies the three legs of one meshed echo from A to B.
fn three_legs(env: &TestEnv, node: &Node, a: &Pod, b: &Pod, expect: &str) -> Vec<(i32, Value)> {
    let node_ns = PathBuf::from(format!("/run/netns/{}", node.netns));
    let legs = [
        start_verify(env, &a.netns_path, "lo", OUTBOUND_PORT, expect),
        start_verify(env, &node_ns, &a.host_veth, ECHO_PORT, expect),
        start_verify(env, &b.netns_path, "lo", ECHO_PORT, expect),
    ];
    thread::sleep(Duration::from_millis(800));
    let client = a.echo_client(b.addr_v4(ECHO_PORT), 256 * 1024);
    assert!(client.report.equal);
    assert_eq!(
        client.report.received_sha256,
        sha256_hex(&pattern(1, 256 * 1024))
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
    let pods = env.state_dir.with_extension("pods.toml");
    std::fs::write(
        &pods,
        format!(
            "[[pod]]\nips = [\"{}\"]\nnetns = \"{}\"\n[[pod]]\nips = [\"{}\"]\nnetns = \"{}\"\n",
            a.ipv4,
            a.netns_path.display(),
            b.ipv4,
            b.netns_path.display()
        ),
    )
    .expect("pods file");
    let pods_arg = pods.display().to_string();
    let mut daemon = env.start_daemon(&["--pods-file", &pods_arg]);

    for (leg, (code, json)) in three_legs(&env, &node, &a, &b, "accelerated")
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
    for (leg, (code, json)) in three_legs(&env, &node, &a, &b, "accelerated")
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
    let _ = std::fs::remove_file(&pods);
}
