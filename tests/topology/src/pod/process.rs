//! Commands in a pod's namespace (workload and admin), spawning and
//! tracking its processes, and waiting for its listeners.

use std::{
    fs,
    path::Path,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use super::Pod;
use crate::{
    WAIT,
    netns::{netns_command, run_ok},
    node::Tracked,
};

impl Pod {
    /// A workload command: runs in this pod's namespace and in the test's
    /// cgroup (as root, like a pod's app container with uid 0 != 1337).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        netns_command(&self.netns_path, Some(&self.cgroup), None, program)
    }

    /// A workload command running as `uid`/`gid` (e.g. the sidecar's 1337).
    pub fn command_as(&self, program: impl AsRef<std::ffi::OsStr>, uid: u32, gid: u32) -> Command {
        netns_command(
            &self.netns_path,
            Some(&self.cgroup),
            Some((uid, gid)),
            program,
        )
    }

    /// An admin command (ss, iptables): in the pod's namespace, NOT in the
    /// test cgroup.
    pub fn admin(&self, program: &str) -> Command {
        netns_command(&self.netns_path, None, None, program)
    }

    /// Runs an admin command, asserting success; returns stdout.
    pub fn admin_ok(&self, program: &str, args: &[&str]) -> String {
        let out = run_ok(self.admin(program).args(args));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Spawns `cmd` and tracks it under `role`: killed and reaped when the
    /// node is dropped. Returns its PID (the program's own: no wrapper).
    pub fn spawn(&self, role: &str, cmd: &mut Command) -> u32 {
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("FAILING LOUDLY: cannot spawn {role} ({cmd:?}): {e}"));
        let pid = child.id();
        self.procs.lock().unwrap().push(Tracked {
            pod: self.name.clone(),
            role: role.to_string(),
            child,
        });
        pid
    }

    /// PID of the tracked process started under `role` (`sidecar-haproxy`,
    /// `sidecar-proxy6`, `echo`, `nginx`), for `--pid` style checks.
    pub fn pid_of(&self, role: &str) -> Option<u32> {
        self.procs.lock().ok().and_then(|p| {
            p.iter()
                .find(|t| t.pod == self.name && t.role == role)
                .map(|t| t.child.id())
        })
    }

    /// Panics with the log if the tracked process `role` has exited.
    pub fn assert_running(&self, role: &str, log: &Path) {
        let mut procs = self.procs.lock().unwrap();
        if let Some(t) = procs
            .iter_mut()
            .find(|t| t.pod == self.name && t.role == role)
            && let Ok(Some(st)) = t.child.try_wait()
        {
            panic!(
                "{role} in pod {} exited ({st}); log:\n{}",
                self.name,
                fs::read_to_string(log).unwrap_or_default()
            );
        }
    }

    fn listeners(&self, port: u16) -> usize {
        let out = self
            .admin("ss")
            .args(["-Hltn", &format!("sport = :{port}")])
            .stderr(Stdio::null())
            .output();
        out.map(|o| String::from_utf8_lossy(&o.stdout).lines().count())
            .unwrap_or(0)
    }

    pub(super) fn wait_listening_quiet(&self, port: u16, at_least: usize) -> bool {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if self.listeners(port) >= at_least {
                return true;
            }
            thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Waits (bounded) until `at_least` sockets listen on `port` in the pod.
    pub fn wait_listening(&self, port: u16, at_least: usize) {
        assert!(
            self.wait_listening_quiet(port, at_least),
            "nothing listening on port {port} in pod {} after {WAIT:?}",
            self.name
        );
    }
}
