//! The pod's clients: the echo client that holds a connection open
//! ([`EchoClient`], its [`EchoReport`]) and curl.

use std::{
    io::{BufRead, BufReader, Read},
    net::SocketAddr,
    process::{Child, ChildStdin, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use accel_test_harness::{pattern, sha256_hex};

use super::Pod;
use crate::pod_bin;

impl Pod {
    /// Starts the echo client to `target` (pattern of `bytes` bytes, echoed
    /// and compared), holding the connection open until [`EchoClient::finish`].
    pub fn echo_client(&self, target: SocketAddr, bytes: usize) -> EchoClient {
        let mut cmd = self.command(pod_bin());
        cmd.args([
            "client",
            "--connect",
            &target.to_string(),
            "--bytes",
            &bytes.to_string(),
            "--hold",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        EchoClient::start(cmd)
    }

    /// curl in the pod (in the cgroup); returns the body, asserting success.
    pub fn curl(&self, url: &str) -> Vec<u8> {
        let out = self
            .command("curl")
            .args(["-sS", "-g", "--fail", "--max-time", "20", "-o", "-", url])
            .stdin(Stdio::null())
            .output()
            .expect("FAILING LOUDLY: curl is needed (apt-get install curl)");
        assert!(
            out.status.success(),
            "curl {url} from pod {} failed ({:?}): {}",
            self.name,
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }
}

/// What `accel-pod client` reports once every byte came back.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
pub struct EchoReport {
    pub local: SocketAddr,
    pub peer: SocketAddr,
    pub bytes: u64,
    pub sent_sha256: String,
    pub received_sha256: String,
    pub equal: bool,
    pub pid: u32,
}

impl EchoReport {
    /// The client's pattern (its default seed, 1) of `bytes` bytes went out
    /// and came back intact.
    pub fn assert_pattern_echoed(&self, bytes: usize) {
        let want = sha256_hex(&pattern::bytes(1, 0, bytes));
        assert!(self.equal, "the echo differs from what was sent: {self:?}");
        assert_eq!(self.bytes, bytes as u64, "{self:?}");
        assert_eq!(self.sent_sha256, want, "not the pattern sent: {self:?}");
        assert_eq!(
            self.received_sha256, want,
            "not the pattern echoed: {self:?}"
        );
    }
}

/// A running echo client holding its connection open.
pub struct EchoClient {
    pub(crate) child: Option<Child>,
    pub(crate) stdin: Option<ChildStdin>,
    pub report: EchoReport,
}

impl EchoClient {
    fn start(mut cmd: Command) -> Self {
        let mut child = cmd.spawn().expect("spawn accel-pod client");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout");
        let mut stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default();
        let report = match serde_json::from_str::<EchoReport>(line.trim()) {
            Ok(r) => r,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                let mut err = String::new();
                let _ = stderr.read_to_string(&mut err);
                panic!("echo client failed: stdout {line:?}, stderr {err}");
            }
        };
        EchoClient {
            child: Some(child),
            stdin,
            report,
        }
    }

    pub fn pid(&self) -> u32 {
        self.report.pid
    }

    /// Lets the client close its connection and exit; asserts it succeeded.
    pub fn finish(mut self) {
        drop(self.stdin.take());
        let mut c = self.child.take().expect("child");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(st)) = c.try_wait() {
                assert!(st.success(), "echo client exited with {st}");
                return;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                panic!("echo client did not exit after its stdin closed");
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for EchoClient {
    fn drop(&mut self) {
        drop(self.stdin.take());
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
