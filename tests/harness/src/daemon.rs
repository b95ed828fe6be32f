//! The real daemon binary, run the way a node runs it, and its HTTP endpoint.

use std::{
    fs,
    io::{BufRead, BufReader, Read, Write},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::daemon_bin;

/// How long a daemon may take from spawn to a 200 on `/readyz`.
const READY_WITHIN: Duration = Duration::from_secs(60);

/// The real daemon, its log collected line by line.
pub struct Daemon {
    child: Option<Child>,
    pub metrics_addr: String,
    log: Arc<Mutex<String>>,
}

impl Daemon {
    pub fn start(args: &[String]) -> Self {
        let mut child = Command::new(daemon_bin())
            .args(args)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn accel-daemon");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().expect("stderr piped");
        let log2 = log.clone();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let line = strip_ansi(&line);
                if let Ok(mut l) = log2.lock() {
                    l.push_str(&line);
                    l.push('\n');
                }
            }
        });
        let mut d = Daemon {
            child: Some(child),
            metrics_addr: String::new(),
            log,
        };
        let state_dir = flag_value(args, "--state-dir")
            .map(PathBuf::from)
            .unwrap_or_else(|| panic!("Daemon::start needs --state-dir in {args:?}"));
        match d.wait_ready(&state_dir, READY_WITHIN) {
            Ok(addr) => d.metrics_addr = addr,
            Err(why) => panic!("daemon never became ready ({why}); log:\n{}", d.log()),
        }
        d
    }

    /// Waits until this daemon is ready ([`wait_ready`]); returns its
    /// metrics address.
    fn wait_ready(&mut self, state_dir: &Path, limit: Duration) -> Result<String, String> {
        let pid = self.child.as_ref().map(Child::id).ok_or("no child")?;
        let child = &mut self.child;
        wait_ready(state_dir, pid, limit, || {
            match child.as_mut().map(Child::try_wait) {
                Some(Ok(Some(status))) => Err(format!("exit {status}")),
                _ => Ok(()),
            }
        })
    }

    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait: the graceful exit that leaves the datapath in place.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut c = self.child.take()?;
        // SAFETY: plain kill(2) on our child.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(st)) = c.try_wait() {
                return st.code();
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                panic!("daemon ignored SIGTERM for 10 s");
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn http_get(&self, path: &str) -> (u16, String) {
        http_get(&self.metrics_addr, path)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c2 in chars.by_ref() {
                if c2.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Minimal HTTP/1.1 GET (no client library needed for three endpoints).
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    try_http_get(addr, path).unwrap_or_else(|e| panic!("GET http://{addr}{path}: {e}"))
}

/// [`http_get`], with the error instead of a panic.
pub fn try_http_get(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let code = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((code, body))
}

/// The value after `flag` in a command line.
fn flag_value<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    let at = args.iter().position(|a| a == flag)?;
    args.get(at + 1).map(String::as_str)
}

/// The metrics address in the daemon's state file (`status.json`), once
/// the daemon with `pid` wrote it (an earlier daemon's file does not count).
/// Waits until the daemon `pid` wrote its state file in `state_dir` (its
/// pid, its bound metrics address) and its `/readyz` answers 200; returns
/// the address. `check` runs on every poll: its error (the process exited,
/// the caller was interrupted) ends the wait.
pub fn wait_ready(
    state_dir: &Path,
    pid: u32,
    limit: Duration,
    mut check: impl FnMut() -> Result<(), String>,
) -> Result<String, String> {
    let deadline = Instant::now() + limit;
    let mut addr = None;
    loop {
        check()?;
        if addr.is_none() {
            addr = state_file_addr(state_dir, pid);
        }
        if let Some(a) = &addr
            && try_http_get(a, "/readyz").is_ok_and(|(code, _)| code == 200)
        {
            return Ok(a.clone());
        }
        if Instant::now() > deadline {
            return Err(match addr {
                Some(a) => format!("{a}/readyz not 200 within {limit:?}"),
                None => format!("no state file of pid {pid} within {limit:?}"),
            });
        }
        thread::sleep(Duration::from_millis(20));
    }
}

fn state_file_addr(state_dir: &Path, pid: u32) -> Option<String> {
    let text = fs::read_to_string(state_dir.join("status.json")).ok()?;
    let state: Value = serde_json::from_str(&text).ok()?;
    let addr = state["metrics_addr"].as_str()?;
    (state["pid"].as_u64() == Some(u64::from(pid)) && !addr.is_empty()).then(|| addr.to_string())
}
