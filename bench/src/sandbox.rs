//! Everything the benchmark puts on the machine, and its removal: two
//! private sibling cgroups (one with the datapath attached by a real
//! `accel-daemon run`, one with nothing attached), a private pin dir and
//! state dir, a directory for Unix sockets.
//!
//! [`Sandbox`] tears all of it down in Drop, so an error, a panic or a
//! Ctrl-C (the signal handler only raises a flag the driver polls) still
//! leaves no program attached, no pin, no cgroup and no process behind.
//! Nothing here ever attaches to the machine's root cgroup.

use std::{
    collections::BTreeMap,
    fs::{self, File},
    io::{BufRead, BufReader},
    os::{fd::AsRawFd, unix::process::CommandExt},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// SIGINT/SIGTERM/SIGHUP only raise a flag: the driver stops at the next
/// check and unwinds through the Drop guards.
pub fn install_signal_handlers() -> Result<()> {
    let act = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: the handler only stores to an atomic (async-signal-safe).
        unsafe { sigaction(sig, &act) }.with_context(|| format!("installing {sig} handler"))?;
    }
    Ok(())
}

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

pub fn check_interrupted() -> Result<()> {
    if interrupted() {
        bail!("interrupted by signal; cleaning up");
    }
    Ok(())
}

fn ensure_bpffs() -> Result<()> {
    accel_test_harness::mount_bpffs_if_needed().map_err(anyhow::Error::msg)
}

pub struct Sandbox {
    pub daemon_bin: PathBuf,
    pub cgroup_root: PathBuf,
    /// The daemon attaches here: traffic in it is accelerated.
    pub accel_cg: PathBuf,
    /// Nothing attached: the baseline (same depth, same controllers).
    pub plain_cg: PathBuf,
    pub pin_root: PathBuf,
    pub pin_dir: PathBuf,
    pub state_dir: PathBuf,
    pub sock_dir: PathBuf,
    accel_procs: Option<File>,
    plain_procs: Option<File>,
    daemon: Option<Child>,
    daemon_log: Arc<Mutex<String>>,
}

impl Sandbox {
    pub fn create(daemon_bin: PathBuf) -> Result<Self> {
        // SAFETY: geteuid has no preconditions.
        ensure!(
            unsafe { libc::geteuid() } == 0,
            "accel-bench loopback needs root: it loads and attaches BPF programs and creates cgroups"
        );
        ensure_bpffs()?;
        let root = crate::host::cgroup2_mount()?;
        let pid = std::process::id();
        let name = format!("accel-bench-{pid}");
        let pin_root = Path::new("/sys/fs/bpf").join(&name);
        let mut sb = Sandbox {
            daemon_bin,
            accel_cg: root.join(format!("{name}-accel")),
            plain_cg: root.join(format!("{name}-plain")),
            cgroup_root: root,
            pin_dir: pin_root.join("v1"),
            pin_root,
            state_dir: std::env::temp_dir().join(&name),
            sock_dir: std::env::temp_dir().join(format!("{name}-sock")),
            accel_procs: None,
            plain_procs: None,
            daemon: None,
            daemon_log: Arc::new(Mutex::new(String::new())),
        };
        // From here on Drop removes whatever exists.
        for cg in [&sb.accel_cg, &sb.plain_cg] {
            ensure!(
                cg.parent() == Some(sb.cgroup_root.as_path()) && cg != &sb.cgroup_root,
                "refusing cgroup {}",
                cg.display()
            );
            fs::create_dir(cg).with_context(|| format!("creating cgroup {}", cg.display()))?;
        }
        fs::create_dir_all(&sb.sock_dir)?;
        sb.accel_procs = Some(open_procs(&sb.accel_cg)?);
        sb.plain_procs = Some(open_procs(&sb.plain_cg)?);
        Ok(sb)
    }

    pub fn procs_fd(&self, accelerated: bool) -> i32 {
        let f = if accelerated {
            &self.accel_procs
        } else {
            &self.plain_procs
        };
        f.as_ref().map(|f| f.as_raw_fd()).unwrap_or(-1)
    }

    /// `accel-daemon run` on the private cgroup; returns once it is ready
    /// (its state file names it, `/readyz` answers 200) with acceleration
    /// on.
    pub fn start_daemon(&mut self) -> Result<()> {
        ensure!(
            self.accel_cg != self.cgroup_root,
            "refusing to attach to the root cgroup"
        );
        let mut cmd = Command::new(&self.daemon_bin);
        cmd.arg("run")
            .arg("--cgroup")
            .arg(&self.accel_cg)
            .arg("--pin-dir")
            .arg(&self.pin_dir)
            .arg("--state-dir")
            .arg(&self.state_dir)
            .args(["--metrics-addr", "127.0.0.1:0"])
            // Both workers are root processes, applications to the default
            // mode, which would leave an application-to-application pair on
            // TCP: the loopback benchmark measures the datapath itself.
            .args(["--pod-acceleration", "all"])
            // ... between two sidecar proxies, the hop the mesh accelerates:
            // the workers run as root (`create`), so root is the proxy's
            // uid, and a small-message writer may leave for TCP as it
            // would towards a sidecar (--stream-small-bytes).
            .args(["--proxy-uid", "0"])
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // SAFETY: prctl is async-signal-safe. The daemon gets SIGTERM (its
        // graceful exit) if the benchmark dies without running Drop.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("spawning {}", self.daemon_bin.display()))?;
        let stderr = child.stderr.take().context("daemon stderr")?;
        let pid = child.id();
        self.daemon = Some(child);
        let log = self.daemon_log.clone();
        // Drains the log for the daemon's whole life, so it never blocks.
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(mut l) = log.lock() {
                    l.push_str(&line);
                    l.push('\n');
                }
            }
        });
        let daemon = &mut self.daemon;
        let ready =
            accel_test_harness::wait_ready(&self.state_dir, pid, Duration::from_secs(90), || {
                check_interrupted().map_err(|e| e.to_string())?;
                match daemon.as_mut().map(Child::try_wait) {
                    Some(Ok(Some(st))) => Err(format!("accel-daemon exited ({st})")),
                    _ => Ok(()),
                }
            });
        if let Err(why) = ready {
            // The log thread may still be reading the last lines.
            thread::sleep(Duration::from_millis(100));
            bail!("accel-daemon not ready: {why}; log:\n{}", self.log());
        }
        let st = self.status()?;
        ensure!(
            st["daemon"]["accelerated"] == serde_json::Value::Bool(true),
            "accel-daemon came up WITHOUT acceleration ({}), nothing to benchmark; log:\n{}",
            st["daemon"]["reason"],
            self.log()
        );
        Ok(())
    }

    pub fn log(&self) -> String {
        self.daemon_log
            .lock()
            .map(|l| l.clone())
            .unwrap_or_default()
    }

    /// The counters and the maps holding entries, from one
    /// `accel-daemon status --json`.
    pub fn snapshot(&self) -> Result<DatapathSnapshot> {
        let v = self.status()?;
        Ok(DatapathSnapshot {
            counters: datapath_counters(&v)?,
            maps_holding_entries: maps_holding_entries(&v)?,
        })
    }

    fn status(&self) -> Result<serde_json::Value> {
        let out = Command::new(&self.daemon_bin)
            .arg("status")
            .arg("--json")
            .arg("--pin-dir")
            .arg(&self.pin_dir)
            .arg("--state-dir")
            .arg(&self.state_dir)
            .stdin(Stdio::null())
            .output()
            .context("running accel-daemon status")?;
        ensure!(
            out.status.success(),
            "accel-daemon status failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).context("status --json output")
    }

    fn stop_daemon(&mut self) {
        let Some(mut c) = self.daemon.take() else {
            return;
        };
        if let Ok(None) = c.try_wait() {
            // SAFETY: plain kill(2) on our own child.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                match c.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() > deadline => {
                        eprintln!("accel-bench: daemon ignored SIGTERM for 10 s; killing it");
                        let _ = c.kill();
                        let _ = c.wait();
                        break;
                    }
                    Ok(None) => thread::sleep(Duration::from_millis(20)),
                }
            }
        }
    }

    fn unload(&self) {
        if !self.pin_dir.exists() {
            return;
        }
        let out = Command::new(&self.daemon_bin)
            .arg("unload")
            .arg("--pin-dir")
            .arg(&self.pin_dir)
            .arg("--cgroup")
            .arg(&self.accel_cg)
            .args(["--drain-timeout", "10", "--force"])
            .stdin(Stdio::null())
            .output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!(
                "accel-bench: accel-daemon unload failed: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => eprintln!("accel-bench: running accel-daemon unload: {e}"),
        }
    }
}

fn open_procs(cg: &Path) -> Result<File> {
    fs::OpenOptions::new()
        .write(true)
        .open(cg.join("cgroup.procs"))
        .with_context(|| format!("opening {}/cgroup.procs", cg.display()))
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        // Workers first: nothing of ours keeps running.
        accel_test_harness::kill_cgroup_tree(&self.accel_cg);
        accel_test_harness::kill_cgroup_tree(&self.plain_cg);
        self.stop_daemon();
        self.unload();
        accel_test_harness::remove_tree(&self.pin_root);
        let _ = fs::remove_dir_all(&self.state_dir);
        let _ = fs::remove_dir_all(&self.sock_dir);
        self.accel_procs = None;
        self.plain_procs = None;
        for cg in [&self.accel_cg, &self.plain_cg] {
            accel_test_harness::kill_cgroup_tree(cg);
            if cg.exists()
                && let Err(e) = fs::remove_dir(cg)
            {
                eprintln!("accel-bench: could not remove cgroup {}: {e}", cg.display());
            }
        }
        if self.pin_root.exists() {
            eprintln!(
                "accel-bench: pin dir {} still exists after cleanup",
                self.pin_root.display()
            );
        }
    }
}

/// The `.datapath.counters` pairs of `accel-daemon status --json`, and the
/// programs' runs and run time ([`crate::bpf_stats::program_counters`]).
pub(crate) fn datapath_counters(status: &serde_json::Value) -> Result<BTreeMap<String, u64>> {
    let pairs = status["datapath"]["counters"]
        .as_array()
        .context("status has no .datapath.counters")?;
    let mut counters: BTreeMap<String, u64> = pairs
        .iter()
        .filter_map(|p| Some((p[0].as_str()?.to_string(), p[1].as_u64()?)))
        .collect();
    counters.extend(crate::bpf_stats::program_counters(status));
    Ok(counters)
}

/// What one `accel-daemon status --json` says of the datapath.
pub struct DatapathSnapshot {
    /// `.datapath.counters`, and the programs' runs and run time
    /// ([`datapath_counters`]).
    pub counters: BTreeMap<String, u64>,
    /// The datapath's maps that hold entries, with their counts. With no
    /// worker running, every map but configuration and the hint maps
    /// (`"hint": true`, LRU) must be empty: closed sockets leave nothing
    /// behind.
    pub maps_holding_entries: BTreeMap<String, u64>,
}

/// The maps of `.datapath.maps` with a non-zero entry count, hint maps
/// left out: what they keep outlives the sockets by design.
fn maps_holding_entries(status: &serde_json::Value) -> Result<BTreeMap<String, u64>> {
    let maps = status["datapath"]["maps"]
        .as_array()
        .context("status has no .datapath.maps")?;
    Ok(maps
        .iter()
        .filter(|m| m["hint"] != true)
        .filter_map(|m| Some((m["name"].as_str()?.to_string(), m["entries"].as_u64()?)))
        .filter(|(_, n)| *n > 0)
        .collect())
}
