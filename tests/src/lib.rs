//! Fixtures for the end-to-end tests: a private cgroup and pin dir per test,
//! the real daemon binary, traffic placed inside the cgroup, tcpdump.
//!
//! Everything a test creates is torn down in Drop, so a failing assertion
//! still leaves no program attached, no pin, no cgroup behind. Nothing here
//! ever attaches to the machine's root cgroup.

use std::{
    fs,
    io::{BufRead, BufReader, Read, Write},
    os::{fd::AsRawFd, unix::process::CommandExt},
    path::{Path, PathBuf},
    process::{Child, ChildStdout, Command, Output, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

pub use serde_json::Value;

pub mod kubelet;
pub mod podman;
pub mod topology;
pub mod traffic;

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

/// The profile directory this process runs from (`target/debug`): a test
/// binary lives in its `deps/`, a tool binary in the directory itself.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe.parent().expect("an executable lives in a directory");
    match dir.file_name() {
        Some(name) if name == "deps" => dir.parent().unwrap_or(dir).to_path_buf(),
        _ => dir.to_path_buf(),
    }
}

/// `bin` of the workspace package `package`, as the tests run it: the path
/// in the environment variable `env_override` if set (nothing is built
/// then), else the binary in this process's profile directory, built once
/// per process with `cargo build -p PACKAGE --bin BIN`. A running
/// `cargo test` holds no build lock, so the nested build cannot deadlock;
/// it uses the same target directory and profile as the test binary, and is
/// a no-op when `cargo build --workspace --bins` ran before.
pub fn workspace_bin(package: &str, bin: &str, env_override: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(env_override) {
        let path = PathBuf::from(path);
        assert!(
            path.exists(),
            "FAILING LOUDLY: {env_override}={} does not exist",
            path.display()
        );
        return path;
    }
    static BUILT: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let profile_dir = profile_dir();
    let path = profile_dir.join(bin);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if !built.iter().any(|b| b == bin) {
        cargo_build(&profile_dir, package, bin);
        built.push(bin.to_string());
    }
    assert!(
        path.exists(),
        "FAILING LOUDLY: {} does not exist after building it",
        path.display()
    );
    path
}

/// `cargo build -p PACKAGE --bin BIN` into the target directory and profile
/// that `profile_dir` (`<target>/<profile>`) belongs to.
fn cargo_build(profile_dir: &Path, package: &str, bin: &str) {
    let target_dir = profile_dir.parent().unwrap_or(profile_dir);
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.arg("build")
        .arg("--manifest-path")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir)
        .args(["--quiet", "-p", package, "--bin", bin]);
    match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => {}
        Some("release") => {
            cmd.arg("--release");
        }
        Some(profile) => {
            cmd.args(["--profile", profile]);
        }
    }
    let _ = writeln!(std::io::stderr(), "accel-tests: building {bin} ({cmd:?})");
    let status = cmd
        .stdin(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("FAILING LOUDLY: running {cmd:?}: {e}"));
    assert!(
        status.success(),
        "FAILING LOUDLY: {cmd:?} failed ({status}); fix the build, or set the binary's \
         path in its environment variable"
    );
}

/// The real daemon binary, built on first use (see [`workspace_bin`]);
/// `ACCEL_DAEMON_BIN` names another one.
pub fn daemon_bin() -> PathBuf {
    workspace_bin("accel-daemon", "accel-daemon", "ACCEL_DAEMON_BIN")
}

/// The cgroup v2 mount point, from /proc/self/mountinfo.
/// `uname -r`: the release a node object of this machine would report.
pub fn running_kernel() -> String {
    let out = Command::new("uname").arg("-r").output().expect("uname");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

pub fn find_cgroup2_mount() -> Option<PathBuf> {
    let mi = fs::read_to_string("/proc/self/mountinfo").ok()?;
    mi.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        let mount_point = left.split_whitespace().nth(4)?;
        (right.split_whitespace().next()? == "cgroup2").then(|| PathBuf::from(mount_point))
    })
}

pub fn cgroup2_mount() -> PathBuf {
    find_cgroup2_mount().expect("FAILING LOUDLY: no cgroup v2 mount on this machine")
}

const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// Mounts bpffs at /sys/fs/bpf unless it is already there. Test binaries
/// run in parallel: the check and the mount hold a lock, or two of them
/// stack two bpffs mounts there on a fresh machine.
pub fn mount_bpffs_if_needed() -> Result<(), String> {
    let lock = fs::File::create("/run/accel-tests-bpffs.lock")
        .map_err(|e| format!("creating /run/accel-tests-bpffs.lock: {e}"))?;
    // SAFETY: flock on a file we hold; released when `lock` drops.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(format!("locking: {}", std::io::Error::last_os_error()));
    }
    let path = c"/sys/fs/bpf";
    // SAFETY: statfs into a zeroed struct we own.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid C string and output buffer.
    if unsafe { libc::statfs(path.as_ptr(), &mut st) } == 0 && st.f_type as i64 == BPF_FS_MAGIC {
        return Ok(());
    }
    let status = Command::new("mount")
        .args(["-t", "bpf", "bpf", "/sys/fs/bpf"])
        .status()
        .map_err(|e| format!("running mount -t bpf: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err("cannot mount bpffs at /sys/fs/bpf".into())
    }
}

fn ensure_bpffs() {
    mount_bpffs_if_needed().expect("FAILING LOUDLY: bpffs is needed");
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
        ensure_bpffs();
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

/// Node-wide TCP memory in pages: the `mem` field of the `TCP:` line of
/// /proc/net/sockstat (0 if it cannot be read).
fn tcp_mem_pages() -> u64 {
    fs::read_to_string("/proc/net/sockstat")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("TCP:"))?.to_string();
            let mut words = line.split_whitespace();
            words.find(|w| *w == "mem")?;
            words.next()?.parse().ok()
        })
        .unwrap_or(0)
}

/// Peak node TCP memory above the starting level while `f` runs, in bytes.
/// The counter is node-wide: other TCP traffic on the machine inflates it.
pub fn peak_tcp_mem(f: impl FnOnce()) -> u64 {
    const PAGE: u64 = 4096;
    let base = tcp_mem_pages();
    let (peak, ()) = peak_while(base, Duration::from_millis(5), tcp_mem_pages, f);
    peak.saturating_sub(base) * PAGE
}

/// Runs `f` while a thread samples `sample` every `every`; returns the
/// largest sample (at least `floor`) and what `f` returned.
pub fn peak_while<T>(
    floor: u64,
    every: Duration,
    sample: impl Fn() -> u64 + Send + 'static,
    f: impl FnOnce() -> T,
) -> (u64, T) {
    let peak = Arc::new(AtomicU64::new(floor));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, stop) = (peak.clone(), stop.clone());
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(sample(), Ordering::Relaxed);
                thread::sleep(every);
            }
        })
    };
    let out = f();
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    (peak.load(Ordering::Relaxed), out)
}

pub fn attachments(cgroup: &Path) -> Vec<String> {
    let out = Command::new("bpftool")
        .args(["cgroup", "show"])
        .arg(cgroup)
        .arg("-j")
        .output()
        .expect("FAILING LOUDLY: bpftool is needed (apt-get install bpftool)");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Array(vec![]));
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| p["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Makes `cmd` move itself into `cgroup` before exec. The returned file must
/// outlive the spawn (it is the open cgroup.procs).
pub fn join_cgroup_on_exec(cmd: &mut Command, cgroup: &Path) -> fs::File {
    let procs = fs::OpenOptions::new()
        .write(true)
        .open(cgroup.join("cgroup.procs"))
        .expect("open cgroup.procs");
    let fd = procs.as_raw_fd();
    // SAFETY: only write(2) on an fd opened before fork.
    unsafe {
        cmd.pre_exec(move || {
            if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    procs
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        kill_cgroup_tree(&self.cgroup);
        // Removing the link pin releases the link: sock_ops detaches.
        remove_tree(&self.pin_root);
        let _ = fs::remove_dir_all(&self.state_dir);
        // Unpinning releases the link from a kernel work item: give the
        // detach a moment before calling it a leak.
        let mut left = attachments_quiet(&self.cgroup);
        let deadline = Instant::now() + Duration::from_secs(3);
        while !left.is_empty() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(50));
            left = attachments_quiet(&self.cgroup);
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

/// Kills every process in `cgroup` and its children (cgroup.kill, then
/// SIGKILL for kernels without it) and removes the child cgroups.
pub fn kill_cgroup_tree(cgroup: &Path) {
    if !cgroup.exists() {
        return;
    }
    if let Ok(entries) = fs::read_dir(cgroup) {
        for e in entries.flatten() {
            if e.path().is_dir() {
                kill_cgroup_tree(&e.path());
            }
        }
    }
    let _ = fs::write(cgroup.join("cgroup.kill"), "1");
    for _ in 0..100 {
        let procs = fs::read_to_string(cgroup.join("cgroup.procs")).unwrap_or_default();
        if procs.trim().is_empty() {
            break;
        }
        for pid in procs.lines().filter_map(|p| p.trim().parse::<i32>().ok()) {
            // SAFETY: plain kill(2).
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        thread::sleep(Duration::from_millis(20));
    }
    if let Ok(entries) = fs::read_dir(cgroup) {
        for e in entries.flatten() {
            if e.path().is_dir() {
                let _ = fs::remove_dir(e.path());
            }
        }
    }
}

/// Removes a directory tree file by file (bpffs has no recursive rmdir).
pub fn remove_tree(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                remove_tree(&p);
            } else {
                let _ = fs::remove_file(&p);
            }
        }
    }
    let _ = fs::remove_dir(dir);
}

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
        let (tx, rx) = std::sync::mpsc::channel();
        let log2 = log.clone();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let line = strip_ansi(&line);
                if let Ok(mut l) = log2.lock() {
                    l.push_str(&line);
                    l.push('\n');
                }
                if let Some(addr) = line.split("listening on ").nth(1) {
                    let _ = tx.send(
                        addr.trim_end_matches(')')
                            .split(')')
                            .next()
                            .unwrap_or("")
                            .to_string(),
                    );
                }
            }
        });
        let mut d = Daemon {
            child: Some(child),
            metrics_addr: String::new(),
            log,
        };
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(addr) => d.metrics_addr = addr,
            Err(_) => {
                let status = d.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
                panic!(
                    "daemon never became ready (exit {status:?}); log:\n{}",
                    d.log()
                );
            }
        }
        d
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
    let mut s = std::net::TcpStream::connect(addr).expect("connect to metrics endpoint");
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("read response");
    let code = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

/// A free TCP port on loopback (bound and released; tests use distinct ones).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// tcpdump on lo for one port, like an operator would run it.
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
    pub fn start(port: u16) -> Self {
        let file = std::env::temp_dir().join(format!(
            "accel-cap-{}-{}.pcap",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let child = start_tcpdump(None, "lo", &format!("tcp port {port}"), &file);
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
pub fn start_tcpdump(netns: Option<&str>, iface: &str, filter: &str, file: &Path) -> Child {
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
pub fn stop_tcpdump(child: Option<Child>, file: &Path) -> CaptureCounts {
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

/// The result line of accel-loadgen.
#[derive(Debug, serde::Deserialize)]
pub struct LoadReport {
    pub port: u16,
    pub connections: usize,
    pub messages: u64,
    pub bytes_each_way: u64,
    pub errors: Vec<String>,
}

pub fn parse_load_report(out: &Output) -> LoadReport {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| {
            panic!(
                "loadgen printed no report (exit {:?}); stderr: {}",
                out.status.code(),
                String::from_utf8_lossy(&out.stderr)
            )
        });
    serde_json::from_str(line).expect("loadgen report is JSON")
}

/// The load ended without a single connection error, every byte checked by
/// accel-loadgen, on `conns` connections that carried traffic.
pub fn assert_clean_load(out: &Output, conns: usize) -> LoadReport {
    let r = parse_load_report(out);
    assert!(
        r.errors.is_empty() && out.status.success(),
        "traffic failed: {:?}\nstderr: {}",
        r.errors,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(r.connections, conns, "connections in the report: {r:?}");
    assert!(r.bytes_each_way > 0 && r.messages > 0, "no traffic: {r:?}");
    r
}

/// Reads `child`'s piped stderr on a thread, handing each line to `on_line`;
/// the thread returns all of it once the child has closed it.
pub fn collect_stderr(
    child: &mut Child,
    mut on_line: impl FnMut(&str) + Send + 'static,
) -> thread::JoinHandle<String> {
    let stderr = child.stderr.take().expect("stderr piped");
    thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            on_line(&line);
            all.push_str(&line);
            all.push('\n');
        }
        all
    })
}

/// Spawns a sink (`cmd`: stdin closed, stdout and stderr piped) and returns
/// once it prints `listening`, with the rest of its stdout (its report).
pub fn spawn_listening(cmd: &mut Command) -> (Child, std::io::Lines<BufReader<ChildStdout>>) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let mut lines = BufReader::new(child.stdout.take().expect("stdout piped")).lines();
    let first = lines.next().and_then(Result::ok);
    if first.as_deref() != Some("listening") {
        let _ = child.kill();
        let out = child.wait_with_output().expect("wait for the sink");
        panic!(
            "{cmd:?} never said `listening` (first line {first:?}, exit {:?}); stderr: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    (child, lines)
}

/// A private network namespace for a test, removed in Drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Self {
        require_root();
        let name = format!(
            "accel-test-{}-{}-{tag}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let ns = Netns { name };
        ns.ip(&["netns", "add", &ns.name]);
        ns.exec_ok(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    fn ip(&self, args: &[&str]) {
        let st = Command::new("ip")
            .args(args)
            .status()
            .expect("FAILING LOUDLY: iproute2 is needed");
        assert!(st.success(), "ip {args:?} failed");
    }

    /// Runs a command inside the namespace and asserts it succeeded.
    pub fn exec_ok(&self, args: &[&str]) {
        let st = Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .status()
            .expect("ip netns exec");
        assert!(st.success(), "in {}: {args:?} failed", self.name);
    }

    /// A command that will run inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .status();
    }
}

/// Polls `f` every 20 ms until it holds; panics naming `what` after
/// `limit`. Returns how long it took.
pub fn wait_until(limit: Duration, what: &str, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if f() {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        thread::sleep(Duration::from_millis(20));
    }
}
