//! What `accel-bench mesh` and `accel-bench run-local` share of the
//! end-to-end tests' topology (`accel_topology`): finding its binaries,
//! turning its panics into errors, pinning pod processes, nginx in a pod,
//! the daemon switched between baseline and accelerated with the proof
//! state of each run, and the meshed pair both run on ([`SidecarPair`]).

mod pair;

pub(crate) use pair::{PodServer, SidecarPair};

use std::{
    collections::BTreeMap,
    fs,
    panic::AssertUnwindSafe,
    path::PathBuf,
    process::{Command, Stdio},
    thread,
    time::Duration,
};

use accel_test_harness::{Daemon, TestEnv, Value, pattern};
use accel_topology::Pod;
use anyhow::{Context, Result, bail, ensure};

use crate::{host::locate_daemon, records::mesh::Mode};

/// The topology library reports failures by panicking; unwinding runs
/// every Drop guard (daemon, node, cgroup), then we turn it into an error.
pub(crate) fn catching_topology_panics(what: &str, f: impl FnOnce() -> Result<()>) -> Result<()> {
    match std::panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".into());
            bail!("{what} benchmark aborted (everything was cleaned up): {msg}")
        }
    }
}

/// Checks root and the tools, finds the daemon and accel-pod binaries and
/// tells the topology library where they are; returns our own executable.
pub(crate) fn topology_bins(
    daemon_bin: &Option<PathBuf>,
    pod_bin: &Option<PathBuf>,
    tools: &[&str],
) -> Result<PathBuf> {
    // SAFETY: geteuid has no preconditions.
    ensure!(
        unsafe { libc::geteuid() } == 0,
        "accel-bench needs root here: it creates namespaces, cgroups and loads BPF programs"
    );
    let daemon_bin = locate_daemon(daemon_bin)?;
    let exe = std::env::current_exe().context("locating own executable")?;
    let pod_bin = pod_bin.clone().unwrap_or_else(|| {
        exe.parent()
            .map(|p| p.join("accel-pod"))
            .unwrap_or_default()
    });
    ensure!(
        pod_bin.is_file(),
        "accel-pod not found at {} (cargo build --release -p accel-test-tools --bins, or --pod-bin)",
        pod_bin.display()
    );
    for t in tools {
        which(t)?;
    }
    // SAFETY: called before any thread is spawned; the topology library
    // finds its binaries through these variables.
    unsafe {
        std::env::set_var("ACCEL_DAEMON_BIN", &daemon_bin);
        std::env::set_var("ACCEL_POD_BIN", &pod_bin);
    }
    Ok(exe)
}

fn which(prog: &str) -> Result<PathBuf> {
    std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(prog))
                .find(|c| c.is_file())
        })
        .with_context(|| format!("{prog} not found in PATH (apt-get install {prog})"))
}

/// `taskset -a -p -c list` on every pid (all threads), checked in
/// /proc/PID/status.
pub(crate) fn pin(pids: &[u32], list: &str) -> Result<()> {
    for pid in pids {
        let out = Command::new("taskset")
            .args(["-a", "-p", "-c", list, &pid.to_string()])
            .stdin(Stdio::null())
            .output()
            .context("running taskset")?;
        ensure!(
            out.status.success(),
            "taskset -a -p -c {list} {pid} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let allowed = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .map(str::trim)
            .unwrap_or("");
        ensure!(
            allowed == list || (list.contains('-') && allowed.contains('-')),
            "pid {pid}: Cpus_allowed_list {allowed:?}, wanted {list}"
        );
    }
    Ok(())
}

/// The body nginx serves as `/f<size>`.
pub(crate) fn file_content(size: usize) -> Vec<u8> {
    pattern::bytes(size as u64, 0, size)
}

/// nginx in B serving `/f<size>` for every size (sendfile on): the
/// topology's nginx, whose keep-alive lasts a whole wrk run.
pub(crate) fn start_nginx(b: &Pod, sizes: &[usize]) -> u32 {
    let contents: Vec<(String, Vec<u8>)> = sizes
        .iter()
        .map(|&s| (format!("/f{s}"), file_content(s)))
        .collect();
    let files: Vec<(&str, &[u8])> = contents
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_slice()))
        .collect();
    b.start_nginx_files(&files, true)
}

/// Before/after state of one run, for its proof.
pub(crate) struct ProofState {
    pub(crate) counters: Option<BTreeMap<String, u64>>,
    pub(crate) attachments: Vec<String>,
    pub(crate) pins: bool,
}

pub(crate) struct DaemonCtl<'a> {
    env: &'a TestEnv,
    pods_arg: String,
    extra_args: Vec<String>,
    daemon: Option<Daemon>,
    mode: Option<Mode>,
    toggles: usize,
    log: String,
}

impl<'a> DaemonCtl<'a> {
    pub(crate) fn new(env: &'a TestEnv, pods_arg: String) -> Self {
        DaemonCtl {
            env,
            pods_arg,
            extra_args: Vec::new(),
            daemon: None,
            mode: None,
            toggles: 0,
            log: String::new(),
        }
    }

    /// More `accel-daemon run` arguments for the accelerated mode.
    pub(crate) fn with_args(mut self, args: &[&str]) -> Self {
        self.extra_args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// Accelerated: `accel-daemon run --pods-file` (ready and
    /// accelerated=true). Baseline: daemon killed, `accel-daemon unload`
    /// (drain proven), nothing attached, no pins.
    pub(crate) fn set(&mut self, mode: Mode) -> Result<()> {
        if self.mode == Some(mode) {
            return Ok(());
        }
        match mode {
            Mode::Accel => {
                ensure!(self.daemon.is_none(), "daemon already running");
                let mut args = vec!["--pods-file", self.pods_arg.as_str()];
                args.extend(self.extra_args.iter().map(String::as_str));
                let d = self.env.start_daemon(&args);
                // Ready is /readyz; the log may not hold the ready line yet.
                let st = self.env.status_json();
                let log = d.log();
                self.daemon = Some(d);
                ensure!(
                    st["daemon"]["accelerated"] == Value::Bool(true),
                    "accel-daemon came up WITHOUT acceleration ({}); log:\n{log}",
                    st["daemon"]["reason"]
                );
                ensure!(
                    st["daemon"]["loopback_meshed_only"] == Value::Bool(true)
                        && st["daemon"]["pods"].as_array().map(Vec::len) == Some(2),
                    "daemon did not take the pods file: {}",
                    st["daemon"]
                );
            }
            Mode::Baseline => {
                if let Some(mut d) = self.daemon.take() {
                    d.kill9();
                    self.log.push_str(&d.log());
                }
                if self.env.pin_dir.exists() {
                    let out = self.env.unload();
                    ensure!(
                        out.status.success(),
                        "accel-daemon unload failed: {}{}",
                        String::from_utf8_lossy(&out.stdout),
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
                let att = self.env.attachments();
                ensure!(
                    att.is_empty() && !self.env.pin_dir.exists(),
                    "datapath still present after unload: attached {att:?}, pins {}",
                    self.env.pin_dir.exists()
                );
            }
        }
        if self.mode.is_some() {
            self.toggles += 1;
        }
        self.mode = Some(mode);
        // Let the start-up (self-test) or teardown settle before measuring.
        thread::sleep(Duration::from_millis(300));
        Ok(())
    }

    /// Switches between the modes so far (setting the first mode is none).
    pub(crate) fn toggles(&self) -> usize {
        self.toggles
    }

    /// The datapath's counters, and its programs' runs and run time.
    pub(crate) fn counters(&self) -> Result<BTreeMap<String, u64>> {
        crate::sandbox::datapath_counters(&self.env.status_json())
    }

    pub(crate) fn proof_state(&self) -> Result<ProofState> {
        Ok(ProofState {
            counters: match self.mode {
                Some(Mode::Accel) => Some(self.counters()?),
                _ => None,
            },
            attachments: self.env.attachments(),
            pins: self.env.pin_dir.exists(),
        })
    }

    pub(crate) fn log(&self) -> String {
        let mut l = self.log.clone();
        if let Some(d) = &self.daemon {
            l.push_str(&d.log());
        }
        l
    }
}

impl Drop for DaemonCtl<'_> {
    fn drop(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            d.kill9();
        }
        // TestEnv's drop removes the pins (which detaches sock_ops); an
        // explicit unload first drains properly.
        if self.env.pin_dir.exists() {
            let _ = self.env.unload();
        }
    }
}
