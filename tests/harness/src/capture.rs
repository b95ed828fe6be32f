//! Packet captures with tcpdump, counted the way the suites assert on them.

use std::{
    fs,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::Duration,
};

/// tcpdump on one interface, like an operator would run it: on the host's
/// `lo` for one port ([`Capture::start`]), or on an interface of a network
/// namespace ([`Capture::in_netns`]). Stopping it counts the TCP segments
/// and the PSH-flagged ones; Drop kills it and removes its file.
pub struct Capture {
    child: Option<Child>,
    file: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaptureCounts {
    pub packets: usize,
    pub psh_data: usize,
}

impl Capture {
    /// `tcpdump -i lo tcp port PORT` in this network namespace.
    pub fn start(port: u16) -> Self {
        Self::spawn(None, "lo", &format!("tcp port {port}"))
    }

    /// `ip netns exec NETNS tcpdump -i IFACE FILTER`.
    pub fn in_netns(netns: &str, iface: &str, filter: &str) -> Self {
        Self::spawn(Some(netns), iface, filter)
    }

    fn spawn(netns: Option<&str>, iface: &str, filter: &str) -> Self {
        let file = std::env::temp_dir().join(format!(
            "accel-cap-{}-{}.pcap",
            std::process::id(),
            crate::next_seq()
        ));
        let child = start_tcpdump(netns, iface, filter, &file);
        Capture {
            child: Some(child),
            file,
        }
    }

    pub fn stop(mut self) -> CaptureCounts {
        stop_tcpdump(self.child.take(), &self.file)
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = fs::remove_file(&self.file);
    }
}

/// Starts tcpdump writing `file` (in the namespace `netns`, if given) and
/// returns once it says it is listening, so no early packet is missed.
fn start_tcpdump(netns: Option<&str>, iface: &str, filter: &str, file: &Path) -> Child {
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, "tcpdump"]);
            c
        }
        None => Command::new("tcpdump"),
    };
    let mut child = cmd
        .args([
            "-i",
            iface,
            "-nn",
            "--immediate-mode",
            "-B",
            "65536",
            "-U",
            "-w",
        ])
        .arg(file)
        .arg(filter)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("FAILING LOUDLY: tcpdump is needed (apt-get install tcpdump)");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let mut r = BufReader::new(stderr);
        let mut line = String::new();
        let mut all = String::new();
        while r.read_line(&mut line).unwrap_or(0) > 0 {
            all.push_str(&line);
            if line.contains("listening on") {
                let _ = tx.send(Ok(()));
            }
            line.clear();
        }
        let _ = tx.send(Err(all));
    });
    match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(Ok(())) => child,
        other => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("tcpdump -i {iface} (netns {netns:?}) did not start: {other:?}");
        }
    }
}

/// Stops a tcpdump writing `file` (after a moment for its last packets) and
/// counts the TCP segments and the PSH-flagged ones, IPv4 and IPv6 (BPF's
/// `tcp[...]` only reaches IPv4; `ip6[13+40]` is the flags byte of a TCP
/// header right after the IPv6 header).
fn stop_tcpdump(child: Option<Child>, file: &Path) -> CaptureCounts {
    if let Some(c) = child {
        thread::sleep(Duration::from_millis(300));
        // SAFETY: plain kill(2) on our child.
        unsafe { libc::kill(c.id() as i32, libc::SIGINT) };
        let _ = c.wait_with_output();
    }
    let count = |filter: &str| -> usize {
        let out = Command::new("tcpdump")
            .args(["-nn", "-r"])
            .arg(file)
            .arg(filter)
            .stderr(Stdio::null())
            .output()
            .expect("tcpdump -r");
        String::from_utf8_lossy(&out.stdout).lines().count()
    };
    CaptureCounts {
        packets: count("tcp"),
        psh_data: count("tcp[tcpflags] & tcp-push != 0 or ip6[13+40] & 8 != 0"),
    }
}
