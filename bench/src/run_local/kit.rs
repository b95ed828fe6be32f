//! The running kit: the sidecar topology of `run-local` (pods A, B, U1, U2
//! on one node), its servers, the pods file and the daemon switch.

use std::path::{Path, PathBuf};

use accel_test_harness::TestEnv;
use accel_topology::{ECHO_PORT, HTTP_PORT, Pod};
use anyhow::{Context, Result, ensure};

use crate::{
    records::{local::LocalProto, mesh::Mode},
    report::fortio::RunnerResults,
    topology::{PodServer, SidecarPair},
};

/// The port of the echo server in pod U2 (unmeshed connection setup).
pub(super) const CONN_PORT: u16 = 9100;

/// The topology while it runs, with what the measurements need of it.
///
/// Fields drop in declaration order: the meshed pair (daemon, pods file,
/// node with every pod's processes and namespaces); the cgroup (`env`) is
/// owned by the caller, declared before the kit, and so dropped after it.
pub(super) struct Kit<'e> {
    /// Meshed pods A (the load generator) and B (nginx or the echo app),
    /// and the daemon switch.
    pub(super) pair: SidecarPair<'e>,
    /// Unmeshed pod U1: the connection setup client.
    pub(super) u1: Pod,
    /// Unmeshed pod U2: the connection setup echo server.
    pub(super) u2: Pod,
    /// The sandbox: cgroup, pin dir.
    pub(super) env: &'e TestEnv,
    /// This executable (`accel-bench load`, `accel-bench echo-server`).
    exe: PathBuf,
    /// Where the fortio JSON files go.
    pub(super) json_dir: PathBuf,
    /// The server's port in pod B (nginx or echo).
    pub(super) target_port: u16,
}

impl<'e> Kit<'e> {
    /// Creates the node and the pods, starts the servers (nginx serving
    /// `sizes` or the echo app in B, per `proto`; the echo server in U2),
    /// writes the pods file for A and B; the daemon is not started yet.
    pub(super) fn start(
        env: &'e TestEnv,
        exe: &Path,
        json_dir: &Path,
        proto: LocalProto,
        sizes: &[usize],
    ) -> Result<Self> {
        let (server, target_port) = match proto {
            LocalProto::Http => (PodServer::Nginx { sizes }, HTTP_PORT),
            LocalProto::Tcp => (PodServer::Echo, ECHO_PORT),
        };
        let pair = SidecarPair::start(env, "rl", server, &[])?;
        let u1 = pair.node.unmeshed_pod("u1");
        let u2 = pair.node.unmeshed_pod("u2");
        let mut echo_cmd = u2.command(exe);
        echo_cmd
            .args(["echo-server", "--listen", &format!("0.0.0.0:{CONN_PORT}")])
            .stdout(std::process::Stdio::null());
        u2.spawn("bench-echo", &mut echo_cmd);
        u2.wait_listening(CONN_PORT, 1);
        eprintln!(
            "accel-bench run-local: pods A {} B {} (meshed), U1 {} U2 {} (unmeshed); cgroup {}",
            pair.a.ipv4,
            pair.b.ipv4,
            u1.ipv4,
            u2.ipv4,
            env.cgroup.display()
        );
        Ok(Kit {
            pair,
            u1,
            u2,
            env,
            exe: exe.to_path_buf(),
            json_dir: json_dir.to_path_buf(),
            target_port,
        })
    }

    /// Runs `accel-bench load` with `extra` arguments in `pod`, writing
    /// `file`; returns what it wrote.
    pub(super) fn load(&self, pod: &Pod, extra: &[String], file: &Path) -> Result<RunnerResults> {
        let mut cmd = pod.command(&self.exe);
        cmd.arg("load").args(extra).arg("--json").arg(file);
        let out = cmd.output().context("running accel-bench load")?;
        ensure!(
            out.status.success(),
            "load failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(RunnerResults::read(file)?)
    }

    /// Leaves the daemon stopped and unloaded (baseline); returns the
    /// daemon logs of the whole run.
    pub(super) fn stop_daemon(&mut self) -> Result<String> {
        self.pair.ctl.set(Mode::Baseline)?;
        Ok(self.pair.ctl.log())
    }
}
