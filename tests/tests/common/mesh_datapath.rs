//! Helpers shared by the mesh_datapath suites.

#![allow(dead_code)]

/// Runs `accel-pod reuse` in `pod` and returns its per-connection reports;
/// `inspect` runs while every connection is still open.
pub fn reuse(
    pod: &accel_topology::Pod,
    source: std::net::SocketAddr,
    targets: &[std::net::SocketAddr],
    seed: u64,
    inspect: impl FnOnce(),
) -> Vec<accel_test_harness::Value> {
    use std::io::{BufRead, BufReader};
    let mut cmd = pod.command(accel_test_harness::pod_bin());
    cmd.arg("reuse")
        .arg("--source")
        .arg(source.to_string())
        .args(["--bytes", "262144", "--seed", &seed.to_string()]);
    for t in targets {
        cmd.arg("--connect").arg(t.to_string());
    }
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn accel-pod reuse");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let reports: Vec<accel_test_harness::Value> = (0..targets.len())
        .map(|_| {
            let line = lines.next().and_then(Result::ok).unwrap_or_default();
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad report {line:?}: {e}"))
        })
        .collect();
    inspect();
    drop(child.stdin.take());
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    reports
}

pub fn assert_own_pattern(reports: &[accel_test_harness::Value]) {
    use accel_test_harness::{pattern, sha256_hex};
    for r in reports {
        let seed = r["seed"].as_u64().expect("seed");
        let bytes = r["bytes"].as_u64().expect("bytes") as usize;
        assert_eq!(r["equal"], true, "cross-delivery or corruption: {r}");
        assert_eq!(
            r["received_sha256"],
            sha256_hex(&pattern::bytes(seed, 0, bytes)),
            "{r}"
        );
    }
}
