//! Podman with a storage, state and cgroup parent of its own, for a test
//! that runs the daemon's container image: nothing it loads or starts
//! reaches the machine's podman storage, and Drop removes all of it (the
//! containers, the images, the storage, the cgroups), also while unwinding
//! from a failed assertion.

use std::{
    fs,
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

use crate::{collect_stderr, http_get, kill_cgroup_tree};

/// OCI runtime: runc, as containerd (most Kubernetes nodes) runs pods.
/// crun refuses hybrid cgroup layouts (a cgroup v2 mount with controllers
/// next to v1 hierarchies), which is what this project's test machine has.
const RUNTIME: &str = "runc";

pub struct Podman {
    /// Storage root, run root and temp dir, all below this directory.
    dir: PathBuf,
    /// Parent of the containers' cgroups, in every hierarchy.
    pub cgroup_parent: String,
}

impl Podman {
    /// A private podman for the test named `name` (its [`crate::TestEnv`]
    /// name, so a killed run's leftovers carry its pid).
    pub fn new(name: &str) -> Self {
        for tool in ["podman", RUNTIME] {
            let found = Command::new(tool)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            assert!(
                found,
                "FAILING LOUDLY: {tool} is needed to run the daemon's image \
                 (scripts/install-deps.sh installs it: apt-get install podman runc)"
            );
        }
        let dir = std::env::temp_dir().join(format!("{name}-podman"));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("tmp")).expect("create the podman dir");
        Podman {
            dir,
            cgroup_parent: format!("/{name}-podman"),
        }
    }

    /// `podman` with this test's storage and settings.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new("podman");
        c.arg("--root")
            .arg(self.dir.join("storage"))
            .arg("--runroot")
            .arg(self.dir.join("run"))
            .arg("--tmpdir")
            .arg(self.dir.join("libpod"))
            .args(["--storage-driver", "vfs", "--cgroup-manager", "cgroupfs"])
            .args(["--events-backend", "none", "--runtime", RUNTIME])
            .env("TMPDIR", self.dir.join("tmp"))
            .stdin(Stdio::null());
        c
    }

    /// Runs `podman args`, asserting success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "podman {args:?} failed ({:?}): {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd()
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("FAILING LOUDLY: cannot run podman {args:?}: {e}"))
    }

    /// Loads an image archive, as `podman load` on a node would.
    pub fn load(&self, archive: &Path) {
        let path = archive.display().to_string();
        self.ok(&["load", "--quiet", "--input", &path]);
    }

    /// Starts `podman run --name NAME ARGS` attached, its output collected.
    pub fn start(&self, name: &str, run_args: &[String]) -> Container<'_> {
        let mut child = self
            .cmd()
            .args([
                "run",
                "--name",
                name,
                "--cgroup-parent",
                &self.cgroup_parent,
            ])
            .args(run_args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("FAILING LOUDLY: cannot spawn podman run");
        let log = Arc::new(Mutex::new(String::new()));
        let sink = log.clone();
        collect_stderr(&mut child, move |line| {
            if let Ok(mut l) = sink.lock() {
                l.push_str(line);
                l.push('\n');
            }
        });
        // The daemon logs to stderr; stdout carries nothing but is drained.
        if let Some(out) = child.stdout.take() {
            thread::spawn(move || std::io::copy(&mut { out }, &mut std::io::sink()));
        }
        Container {
            podman: self,
            name: name.to_string(),
            child: Some(child),
            log,
        }
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.run(&["rm", "--all", "--force", "--time", "0"]);
        let _ = self.run(&["rmi", "--all", "--force"]);
        let _ = fs::remove_dir_all(&self.dir);
        for hierarchy in cgroup_mounts() {
            let parent = hierarchy.join(self.cgroup_parent.trim_start_matches('/'));
            kill_cgroup_tree(&parent);
            let _ = fs::remove_dir(&parent);
        }
    }
}

/// Mount points of every cgroup hierarchy, v1 and v2.
fn cgroup_mounts() -> Vec<PathBuf> {
    let mi = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    mi.lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let fstype = right.split_whitespace().next()?;
            let mount = left.split_whitespace().nth(4)?;
            matches!(fstype, "cgroup" | "cgroup2").then(|| PathBuf::from(mount))
        })
        .collect()
}

/// A running container of a [`Podman`], removed in Drop.
pub struct Container<'a> {
    podman: &'a Podman,
    pub name: String,
    child: Option<Child>,
    log: Arc<Mutex<String>>,
}

impl Container<'_> {
    /// Everything the container wrote to stdout and stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// The exit code if the container has stopped.
    pub fn exited(&mut self) -> Option<Option<i32>> {
        let child = self.child.as_mut()?;
        child.try_wait().ok().flatten().map(|s| s.code())
    }

    /// The container's main process, as the host sees it.
    pub fn host_pid(&self) -> u32 {
        let pid = self
            .podman
            .ok(&["inspect", "--format", "{{.State.Pid}}", &self.name]);
        pid.parse()
            .unwrap_or_else(|_| panic!("podman inspect gave pid {pid:?}; log:\n{}", self.log()))
    }

    /// Polls `http://ADDR/PATH` until it answers 200, as the kubelet's
    /// readiness probe does; fails with the log if the container exits
    /// first or after 60 s. Returns how long it took.
    pub fn wait_http_ok(&mut self, addr: &str, path: &str) -> Duration {
        let start = Instant::now();
        loop {
            if let Some(code) = self.exited() {
                panic!(
                    "the container exited ({code:?}) before ready:\n{}",
                    self.log()
                );
            }
            if TcpStream::connect(addr).is_ok() && http_get(addr, path).0 == 200 {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "{path} not 200 within 60 s:\n{}",
                self.log()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Peak memory of the container's cgroup (v1 max usage, v2 memory.peak).
    pub fn memory_peak(&self) -> Option<u64> {
        let pid = self.host_pid();
        let cgroups = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        let v1 = cgroups.lines().find_map(|l| l.split_once(":memory:"));
        let path = match v1 {
            Some((_, p)) => format!("/sys/fs/cgroup/memory{p}/memory.max_usage_in_bytes"),
            None => {
                let p = cgroups.lines().find_map(|l| l.strip_prefix("0::"))?;
                format!("{}{p}/memory.peak", crate::cgroup2_mount().display())
            }
        };
        fs::read_to_string(path).ok()?.trim().parse().ok()
    }

    /// `podman stop --time GRACE` (SIGTERM, SIGKILL after the grace period,
    /// as the kubelet stops a pod): the exit code and how long it took.
    pub fn stop(&mut self, grace: Duration) -> (Option<i32>, Duration) {
        let start = Instant::now();
        let secs = grace.as_secs().to_string();
        self.podman.ok(&["stop", "--time", &secs, &self.name]);
        let code = self
            .child
            .take()
            .and_then(|mut c| c.wait().ok())
            .and_then(|s| s.code());
        (code, start.elapsed())
    }
}

impl Drop for Container<'_> {
    fn drop(&mut self) {
        let _ = self
            .podman
            .run(&["rm", "--force", "--time", "0", &self.name]);
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
