//! The running kit: the sidecar topology of `run-local` (pods A, B, U1, U2
//! on one node), its servers, the pods file and the daemon switch.

use std::path::{Path, PathBuf};

use accel_test_harness::TestEnv;
use accel_topology::{ECHO_PORT, HTTP_PORT, Mesh, Node, Pod, PodsFile};
use anyhow::{Context, Result, ensure};

use crate::{
    records::{local::LocalProto, mesh::Mode},
    report::fortio::RunnerResults,
    topology::{DaemonCtl, start_nginx},
};

/// The port of the echo server in pod U2 (unmeshed connection setup).
pub(super) const CONN_PORT: u16 = 9100;

/// The topology while it runs, with what the measurements need of it.
///
/// Fields drop in declaration order: the daemon (`ctl`), the pods file, the
/// node (its pods' processes and namespaces); the cgroup (`env`) is owned by
/// the caller, declared before the kit, and so dropped after it.
pub(super) struct Kit<'e> {
    /// Switches the daemon between baseline and accelerated.
    pub(super) ctl: DaemonCtl<'e>,
    /// Held for its Drop: removes the pods file.
    _pods_file: PodsFile,
    /// Held for its Drop: kills the pod processes, deletes the namespaces.
    _node: Node,
    /// Meshed pod A: runs the load generator.
    pub(super) pa: Pod,
    /// Meshed pod B: runs nginx or the echo app.
    pub(super) pb: Pod,
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
    /// The client side's processes (sidecar A), pinned per placement.
    pub(super) client_side: Vec<u32>,
    /// The server side's processes (sidecar B, the server), pinned per
    /// placement.
    pub(super) server_side: Vec<u32>,
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
        let node = Node::new(env, "rl");
        let pa = node.meshed_pod("a", Mesh::default());
        let pb = node.meshed_pod("b", Mesh::default());
        let u1 = node.unmeshed_pod("u1");
        let u2 = node.unmeshed_pod("u2");
        let (server_pid, target_port) = match proto {
            LocalProto::Http => (start_nginx(&pb, sizes), HTTP_PORT),
            LocalProto::Tcp => (pb.start_echo(), ECHO_PORT),
        };
        let mut echo_cmd = u2.command(exe);
        echo_cmd
            .args(["echo-server", "--listen", &format!("0.0.0.0:{CONN_PORT}")])
            .stdout(std::process::Stdio::null());
        u2.spawn("bench-echo", &mut echo_cmd);
        u2.wait_listening(CONN_PORT, 1);
        let pods_file =
            PodsFile::write(env, &[(&pa, ""), (&pb, "")]).context("writing the pods file")?;
        let ctl = DaemonCtl::new(env, pods_file.arg());
        let client_side: Vec<u32> = pa.sidecar_pids();
        let mut server_side: Vec<u32> = pb.sidecar_pids();
        server_side.push(server_pid);
        eprintln!(
            "accel-bench run-local: pods A {} B {} (meshed), U1 {} U2 {} (unmeshed); cgroup {}",
            pa.ipv4,
            pb.ipv4,
            u1.ipv4,
            u2.ipv4,
            env.cgroup.display()
        );
        Ok(Kit {
            ctl,
            _pods_file: pods_file,
            _node: node,
            pa,
            pb,
            u1,
            u2,
            env,
            exe: exe.to_path_buf(),
            json_dir: json_dir.to_path_buf(),
            client_side,
            server_side,
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
        self.ctl.set(Mode::Baseline)?;
        Ok(self.ctl.log())
    }
}
