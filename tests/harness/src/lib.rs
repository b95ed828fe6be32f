//! The room every end-to-end test runs in: a private cgroup, pin dir and
//! state dir per test ([`TestEnv`]), the real daemon binary ([`Daemon`]),
//! built on first use ([`binaries`]), traffic placed inside the cgroup,
//! tcpdump ([`Capture`]), and the one byte pattern every traffic tool
//! writes and checks ([`pattern`]).
//!
//! Everything a test creates is torn down in Drop, so a failing assertion
//! still leaves no program attached, no pin, no cgroup behind. Nothing here
//! ever attaches to the machine's root cgroup.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    thread,
    time::{Duration, Instant},
};

pub use serde_json::Value;

pub mod binaries;
pub mod bpffs;
pub mod capture;
pub mod daemon;
pub mod host;
pub mod kubelet;
pub mod load;
pub mod netns;
pub mod pattern;
pub mod podman;
pub mod process;
pub mod traffic;

pub use binaries::{daemon_bin, integrity_bin, loadgen_bin, pod_bin, workspace_bin};
pub use bpffs::PrivateBpffs;
pub use capture::{Capture, CaptureCounts};
pub use daemon::{Daemon, http_get, wait_ready};
pub use host::{
    attachments, cgroup2_mount, find_cgroup2_mount, join_cgroup_on_exec, kill_cgroup_tree,
    mount_bpffs_if_needed, remove_tree, running_kernel,
};
pub use load::{LoadReport, assert_clean_load, parse_load_report};
pub use netns::Netns;
pub use pattern::sha256_hex;
pub use process::{
    collect_stderr, free_port, peak_tcp_mem, peak_tcp_mem_while, peak_while, spawn_listening,
    wait_until,
};

/// A number for names unique within this process (with its pid, on the
/// machine).
pub fn next_seq() -> u32 {
    SEQ.fetch_add(1, Ordering::Relaxed)
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// These tests load BPF programs into the running kernel: without root they
/// cannot run, and must fail rather than pass by skipping.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "FAILING LOUDLY: the end-to-end tests need root (they load and attach BPF programs); \
         run them with sudo or as root, see README.md"
    );
}

/// A private cgroup, pin dir and state dir for one test.
pub struct TestEnv {
    pub name: String,
    pub cgroup: PathBuf,
    pub pin_root: PathBuf,
    pub pin_dir: PathBuf,
    pub state_dir: PathBuf,
}

/// Removes what test processes that were killed (so their Drop never ran)
/// left behind: cgroups, pins, state dirs and namespaces whose name carries
/// the pid of a process that no longer exists.
fn sweep_leftovers_of_dead_runs() {
    fn dead_owner(name: &str) -> bool {
        let rest = name
            .strip_prefix("accel-test-")
            .or_else(|| name.strip_prefix("atopo-"))
            .unwrap_or("");
        match rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) {
            Some(pid) => pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists(),
            None => false,
        }
    }
    let cg_root = cgroup2_mount();
    for dir in [
        cg_root.clone(),
        PathBuf::from("/sys/fs/bpf"),
        std::env::temp_dir(),
    ] {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !dead_owner(&name) {
                continue;
            }
            let path = e.path();
            if dir == cg_root {
                kill_cgroup_tree(&path);
                let _ = fs::remove_dir(&path);
            } else if dir.starts_with("/sys/fs/bpf") {
                remove_tree(&path);
            } else if path.is_dir() {
                let _ = fs::remove_dir_all(&path);
            } else {
                let _ = fs::remove_file(&path);
            }
        }
    }
    let out = Command::new("ip").args(["netns", "list"]).output();
    if let Ok(out) = out {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let name = line.split_whitespace().next().unwrap_or("");
            if dead_owner(name) {
                let _ = Command::new("ip")
                    .args(["netns", "pids", name])
                    .output()
                    .map(|o| {
                        for pid in String::from_utf8_lossy(&o.stdout).lines() {
                            if let Ok(pid) = pid.trim().parse::<i32>() {
                                // SAFETY: plain kill(2).
                                unsafe { libc::kill(pid, libc::SIGKILL) };
                            }
                        }
                    });
                let _ = Command::new("ip").args(["netns", "delete", name]).status();
            }
        }
    }
}

impl TestEnv {
    pub fn new(tag: &str) -> Self {
        require_root();
        host::ensure_bpffs();
        static SWEEP: std::sync::Once = std::sync::Once::new();
        SWEEP.call_once(sweep_leftovers_of_dead_runs);
        let name = format!(
            "accel-test-{}-{}-{tag}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let cgroup = cgroup2_mount().join(&name);
        fs::create_dir(&cgroup).expect("create test cgroup");
        let pin_root = Path::new("/sys/fs/bpf").join(&name);
        // The daemon's versioned layout (…/v<ABI>), under the test's own root.
        let pin_dir = pin_root.join(format!("v{}", accel_bpf::abi::ABI_VERSION));
        let state_dir = std::env::temp_dir().join(&name);
        TestEnv {
            name,
            cgroup,
            pin_root,
            pin_dir,
            state_dir,
        }
    }

    /// `run` arguments that keep the daemon inside this test's sandbox.
    pub fn daemon_args(&self) -> Vec<String> {
        vec![
            "--cgroup".into(),
            self.cgroup.display().to_string(),
            "--pin-dir".into(),
            self.pin_dir.display().to_string(),
            "--state-dir".into(),
            self.state_dir.display().to_string(),
            "--metrics-addr".into(),
            "127.0.0.1:0".into(),
        ]
    }

    /// The whole `run` command line of a sandboxed daemon, then `extra`.
    /// The datapath suites exercise every socket their traffic opens, as
    /// root in the test's cgroup (an application, to the datapath), so the
    /// node mode is `all` unless `extra` names one; the default mode has
    /// its own suite ([`TestEnv::run_args_default_mode`]).
    pub fn run_args(&self, extra: &[&str]) -> Vec<String> {
        let mut args = self.run_args_default_mode(extra);
        if !extra.iter().any(|a| a.starts_with("--pod-acceleration")) {
            args.extend(["--pod-acceleration".into(), "all".into()]);
        }
        args
    }

    /// [`TestEnv::run_args`] without a mode: the daemon's own default.
    pub fn run_args_default_mode(&self, extra: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = vec!["run".into()];
        args.extend(self.daemon_args());
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    }

    pub fn start_daemon(&self, extra: &[&str]) -> Daemon {
        Daemon::start(&self.run_args(extra))
    }

    /// A daemon in the default mode (no `--pod-acceleration`).
    pub fn start_daemon_default_mode(&self, extra: &[&str]) -> Daemon {
        Daemon::start(&self.run_args_default_mode(extra))
    }

    /// Runs an `accel-daemon` subcommand to completion.
    pub fn daemon_cmd(&self, args: &[&str]) -> Output {
        Command::new(daemon_bin())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run accel-daemon")
    }

    pub fn status_json(&self) -> Value {
        let pin = self.pin_dir.display().to_string();
        let state = self.state_dir.display().to_string();
        let out = self.daemon_cmd(&["status", "--json", "--pin-dir", &pin, "--state-dir", &state]);
        assert!(
            out.status.success(),
            "status failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("status --json is JSON")
    }

    pub fn counter(&self, name: &str) -> u64 {
        counter_of(&self.status_json(), name)
    }

    pub fn unload(&self) -> Output {
        let pin = self.pin_dir.display().to_string();
        let cg = self.cgroup.display().to_string();
        self.daemon_cmd(&[
            "unload",
            "--pin-dir",
            &pin,
            "--cgroup",
            &cg,
            "--drain-timeout",
            "10",
        ])
    }

    /// `unload`, asserting that it succeeded.
    pub fn unload_ok(&self) {
        let out = self.unload();
        assert!(
            out.status.success(),
            "unload failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Names of the BPF programs attached to this test's cgroup.
    pub fn attachments(&self) -> Vec<String> {
        attachments(&self.cgroup)
    }

    /// The datapath is attached to this test's cgroup exactly once.
    pub fn assert_one_attachment(&self, when: &str) {
        assert_eq!(
            self.attachments(),
            vec!["accel_sockops".to_string()],
            "exactly one sock_ops attachment {when}"
        );
    }

    /// A command that will run inside this test's cgroup.
    pub fn in_cgroup(&self, cmd: &mut Command) -> fs::File {
        join_cgroup_on_exec(cmd, &self.cgroup)
    }

    /// accel-loadgen (`program`: the test binary's
    /// `CARGO_BIN_EXE_accel-loadgen`, which the library cannot see) with its
    /// echo server on 127.0.0.1:`port`, inside this test's cgroup, stdout and
    /// stderr piped. The file must outlive the spawn, as for `in_cgroup`.
    pub fn loadgen(&self, program: &str, port: u16, args: &[&str]) -> (Command, fs::File) {
        let mut cmd = Command::new(program);
        cmd.arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let procs = self.in_cgroup(&mut cmd);
        (cmd, procs)
    }

    /// A short clean load (`conns` connections of 100 B and 64 KiB messages)
    /// on a port of its own, captured: its report and the number of
    /// PSH-flagged data segments (0 means every byte was redirected).
    pub fn short_load(&self, program: &str, conns: usize) -> (LoadReport, usize) {
        let port = free_port();
        let cap = Capture::start(port);
        let (mut cmd, _procs) = self.loadgen(
            program,
            port,
            &["--conns", &conns.to_string(), "--sizes", "100,65536"],
        );
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .expect("run accel-loadgen");
        let psh = cap.stop().psh_data;
        (assert_clean_load(&out, conns), psh)
    }
}

/// Gives `flag`, which `args` must hold already (as [`TestEnv::run_args`]
/// holds every sandbox flag), the value `value`.
pub fn set_flag(args: &mut [String], flag: &str, value: &str) {
    let idx = args
        .iter()
        .position(|a| a == flag)
        .unwrap_or_else(|| panic!("{flag} not in {args:?}"));
    args[idx + 1] = value.to_string();
}

pub fn counter_of(status: &Value, name: &str) -> u64 {
    status["datapath"]["counters"]
        .as_array()
        .and_then(|a| {
            a.iter().find_map(|pair| {
                (pair[0].as_str() == Some(name)).then(|| pair[1].as_u64().unwrap_or(0))
            })
        })
        .unwrap_or_else(|| panic!("counter {name} missing from status: {status}"))
}

/// The daemon's check `name` (`status.daemon.checks`), from a `status --json`
/// snapshot; panics if the daemon reported no such check.
pub fn check_named(status: &Value, name: &str) -> Value {
    status["daemon"]["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == name))
        .cloned()
        .unwrap_or_else(|| panic!("no {name:?} check in {status}"))
}

/// Entries in the datapath map `name`, from a `status --json` snapshot.
pub fn map_entries(status: &Value, name: &str) -> u64 {
    status["datapath"]["maps"]
        .as_array()
        .and_then(|maps| maps.iter().find(|m| m["name"] == name))
        .and_then(|m| m["entries"].as_u64())
        .unwrap_or_else(|| panic!("map {name} missing from status: {status}"))
}

/// How long a released link may take to detach before the test calls it
/// a leak.
const DETACH_GRACE: Duration = Duration::from_secs(15);

impl Drop for TestEnv {
    fn drop(&mut self) {
        kill_cgroup_tree(&self.cgroup);
        // Removing the link pin releases the link: sock_ops detaches.
        remove_tree(&self.pin_root);
        let _ = fs::remove_dir_all(&self.state_dir);
        // Unpinning (or unmounting a private bpffs) releases the link from
        // a kernel work item that needs the cgroup mutex, which the other
        // suites' cgroup churn holds often on a loaded 2-core runner: give
        // the detach time before calling it a leak (a leak never detaches).
        let started = Instant::now();
        let mut left = attachments_quiet(&self.cgroup);
        while !left.is_empty() && started.elapsed() < DETACH_GRACE {
            thread::sleep(Duration::from_millis(50));
            left = attachments_quiet(&self.cgroup);
        }
        if started.elapsed() > Duration::from_secs(1) {
            eprintln!(
                "accel-test-harness: {} took {:?} to detach",
                self.cgroup.display(),
                started.elapsed()
            );
        }
        let _ = fs::remove_dir(&self.cgroup);
        if !left.is_empty() && !thread::panicking() {
            panic!(
                "test left programs attached to {}: {left:?}",
                self.cgroup.display()
            );
        }
    }
}

fn attachments_quiet(cgroup: &Path) -> Vec<String> {
    if cgroup.exists() {
        attachments(cgroup)
    } else {
        Vec::new()
    }
}
