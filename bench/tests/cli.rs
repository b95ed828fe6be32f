//! Smoke test of the kit's two unprivileged commands, as a user runs them:
//! `accel-bench echo-server`, `accel-bench load` (both protocols that need
//! no nginx) writing fortio JSON, then `accel-bench report` over those files
//! and the hand-written fortio fixture, with its table and plots. No root.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

const BIN: &str = env!("CARGO_BIN_EXE_accel-bench");

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn echo_server() -> (Server, String) {
    let mut child = Command::new(BIN)
        .args(["echo-server", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn echo-server");
    let out = child.stdout.take().expect("stdout");
    let server = Server(child);
    let mut line = String::new();
    BufReader::new(out)
        .read_line(&mut line)
        .expect("LISTEN line");
    let addr = line
        .trim()
        .strip_prefix("LISTEN ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    (server, addr)
}

fn load(addr: &str, proto: &str, mode: &str, round: usize, json: &Path) {
    let out = Command::new(BIN)
        .args(["load", "--target", addr, "--proto", proto])
        .args([
            "--size",
            "1K",
            "-c",
            "2",
            "--duration",
            "0.2",
            "--warmup",
            "0.05",
        ])
        .args([
            "--labels",
            &format!("mode={mode} proto={proto} size=1024 round={round}"),
        ])
        .arg("--json")
        .arg(json)
        .output()
        .expect("run load");
    assert!(
        out.status.success(),
        "load failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn load_then_report() {
    let dir = std::env::temp_dir().join(format!("accel-bench-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("json")).unwrap();
    let (_server, addr) = echo_server();
    // "baseline" and "accel" here are the same path: the point is the
    // plumbing, pairing and output, not a speed-up.
    for round in 0..2 {
        for mode in ["baseline", "accel"] {
            load(
                &addr,
                "tcp",
                mode,
                round,
                &dir.join(format!("json/tcp-{mode}-{round}.json")),
            );
        }
    }
    let fixture: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "tests/fixtures/fortio-http.json",
    ]
    .iter()
    .collect();
    let out = Command::new(BIN)
        .arg("report")
        .arg(dir.join("json"))
        .arg(&fixture)
        .arg("--out-dir")
        .arg(&dir)
        .output()
        .expect("run report");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "report failed: {}{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The local pair: 2 runs a side, paired; the fixture: a lone baseline.
    let local = stdout
        .lines()
        .find(|l| l.starts_with("| tcp 1 KiB -c 2 max qps"))
        .unwrap_or_else(|| panic!("no row for the local runs:\n{stdout}"));
    assert!(local.contains("| 2/2 |"), "{local}");
    assert!(local.contains("x)"), "no ratio: {local}");
    let cluster = stdout
        .lines()
        .find(|l| l.contains("same-node"))
        .unwrap_or_else(|| panic!("no row for the fixture:\n{stdout}"));
    assert!(
        cluster.contains("| 1/0 |") && cluster.contains("unpaired"),
        "{cluster}"
    );
    for f in ["report.md", "latency.svg", "throughput.svg"] {
        let meta = std::fs::metadata(dir.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert!(meta.len() > 100, "{f} is nearly empty");
    }
    // Files that are not fortio results are refused, loudly.
    let bad = dir.join("bad.json");
    std::fs::write(&bad, "{\"hello\": 1}").unwrap();
    let out = Command::new(BIN)
        .arg("report")
        .arg(&bad)
        .output()
        .expect("run report");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a fortio JSON result"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn connect_rate_runs() {
    let (_server, addr) = echo_server();
    let dir = std::env::temp_dir().join(format!("accel-bench-cli-c-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("c.json");
    let out = Command::new(BIN)
        .args([
            "load", "--target", &addr, "--proto", "connect", "--size", "1",
        ])
        .args([
            "--duration",
            "0.2",
            "--warmup",
            "0",
            "--labels",
            "mode=baseline",
        ])
        .arg("--json")
        .arg(&f)
        .output()
        .expect("run load");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
    assert_eq!(v["RunType"], "TCP-connect");
    assert!(
        v["DurationHistogram"]["Count"].as_u64().unwrap() > 10,
        "{v}"
    );
    assert!(v["ActualQPS"].as_f64().unwrap() > 0.0);
    std::fs::remove_dir_all(&dir).unwrap();
}
