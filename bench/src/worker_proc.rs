//! Child processes of one benchmark run (workers, wrk): spawned with their
//! output captured and killed with the benchmark, and waited for in pairs.

use std::{
    io::{BufRead, BufReader, Read},
    os::unix::process::CommandExt,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex, mpsc},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::{
    sandbox::{check_interrupted, interrupted},
    worker::WorkerOut,
};

pub(crate) struct WorkerProc {
    pub(crate) child: Child,
    pub(crate) lines: mpsc::Receiver<String>,
    stderr: Arc<Mutex<String>>,
}

impl WorkerProc {
    pub(crate) fn spawn(exe: &PathBuf, procs_fd: i32, args: &[String]) -> Result<Self> {
        let mut cmd = Command::new(exe);
        cmd.arg("worker").args(args);
        // SAFETY: only async-signal-safe calls (write(2) on an fd opened
        // before fork) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::write(procs_fd, b"0".as_ptr().cast(), 1) != 1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        Self::from_command(cmd)
    }

    /// Spawns `cmd` (stdout and stderr captured, killed with the benchmark).
    pub(crate) fn from_command(mut cmd: Command) -> Result<Self> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: prctl is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = cmd.spawn().context("spawning worker")?;
        let stdout = child.stdout.take().context("worker stdout")?;
        let mut stderr_pipe = child.stderr.take().context("worker stderr")?;
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for l in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let e2 = stderr.clone();
        thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr_pipe.read_to_string(&mut s);
            if let Ok(mut e) = e2.lock() {
                *e = s;
            }
        });
        Ok(WorkerProc {
            child,
            lines,
            stderr,
        })
    }

    /// The address a server worker printed (`LISTEN <addr>`); kills it if
    /// it never does.
    pub(crate) fn listen_addr(&mut self) -> Result<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            check_interrupted()?;
            match self.lines.recv_timeout(Duration::from_millis(50)) {
                Ok(l) => {
                    if let Some(a) = l.strip_prefix("LISTEN ") {
                        return Ok(a.to_string());
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {}
                Err(_) => {
                    self.kill();
                    bail!("server did not listen; stderr: {}", self.stderr());
                }
            }
        }
    }

    pub(crate) fn stderr(&self) -> String {
        self.stderr
            .lock()
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    }

    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The JSON result line (after the process exited).
    pub(crate) fn result(&self) -> Result<WorkerOut> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l.starts_with('{') => {
                    return serde_json::from_str(&l).context("worker result JSON");
                }
                Ok(_) => {}
                Err(_) => bail!("worker printed no result; stderr: {}", self.stderr()),
            }
        }
    }
}

impl Drop for WorkerProc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill();
        }
    }
}

/// Waits for both workers of a run to exit (killing both if one fails, on
/// a signal or after `deadline`) and returns their results.
pub(crate) fn finish_pair(
    client: &mut WorkerProc,
    server: &mut WorkerProc,
    deadline: Instant,
) -> Result<(WorkerOut, WorkerOut)> {
    let (mut c_done, mut s_done) = (None, None);
    while c_done.is_none() || s_done.is_none() {
        if interrupted() {
            client.kill();
            server.kill();
            bail!("interrupted");
        }
        if c_done.is_none() {
            c_done = client.child.try_wait()?;
        }
        if s_done.is_none() {
            s_done = server.child.try_wait()?;
        }
        let failed = c_done.is_some_and(|s| !s.success()) || s_done.is_some_and(|s| !s.success());
        if failed || Instant::now() > deadline {
            client.kill();
            server.kill();
            bail!(
                "{} (client {:?}, server {:?}); client stderr: {}; server stderr: {}",
                if failed { "worker failed" } else { "timed out" },
                c_done,
                s_done,
                client.stderr(),
                server.stderr()
            );
        }
        thread::sleep(Duration::from_millis(10));
    }
    Ok((client.result()?, server.result()?))
}
