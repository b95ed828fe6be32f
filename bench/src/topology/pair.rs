//! The meshed pair every sidecar benchmark runs on: pods A and B on one
//! node with Istio's REDIRECT rules and haproxy sidecars, a server in B,
//! the pods file naming both, and the daemon switch. `accel-bench mesh`
//! and `accel-bench run-local` both start it here.

use accel_test_harness::TestEnv;
use accel_topology::{Mesh, Node, Pod, PodsFile};
use anyhow::{Context, Result};

use super::{DaemonCtl, pin, start_nginx};
use crate::records::placement::Placement;

/// What pod B serves.
#[derive(Clone, Copy)]
pub(crate) enum PodServer<'s> {
    /// nginx serving `/f<size>` for every size (sendfile on).
    Nginx { sizes: &'s [usize] },
    /// The topology's echo app.
    Echo,
}

/// The pair while it runs.
///
/// Fields drop in declaration order: the daemon (`ctl`: killed, then the
/// datapath unloaded), the pods file, the node (its pods' processes and
/// namespaces). The cgroup (`TestEnv`) is the caller's and outlives it.
pub(crate) struct SidecarPair<'e> {
    /// Switches the daemon between baseline and accelerated.
    pub(crate) ctl: DaemonCtl<'e>,
    /// Held for its Drop: removes the pods file.
    _pods_file: PodsFile,
    /// The node: more pods can join it (run-local's unmeshed pair).
    pub(crate) node: Node,
    /// Meshed pod A: the client side.
    pub(crate) a: Pod,
    /// Meshed pod B: the server side.
    pub(crate) b: Pod,
    /// The server's pid in B (nginx or echo).
    pub(crate) server_pid: u32,
}

impl<'e> SidecarPair<'e> {
    /// Creates the node `tag` with pods A and B, starts `server` in B and
    /// writes the pods file for both; the daemon, given `daemon_args` on
    /// top of the pods file when accelerated, is not started yet.
    pub(crate) fn start(
        env: &'e TestEnv,
        tag: &str,
        server: PodServer<'_>,
        daemon_args: &[&str],
    ) -> Result<Self> {
        let node = Node::new(env, tag);
        let a = node.meshed_pod("a", Mesh::default());
        let b = node.meshed_pod("b", Mesh::default());
        let server_pid = match server {
            PodServer::Nginx { sizes } => start_nginx(&b, sizes),
            PodServer::Echo => b.start_echo(),
        };
        let pods_file =
            PodsFile::write(env, &[(&a, ""), (&b, "")]).context("writing the pods file")?;
        let ctl = DaemonCtl::new(env, pods_file.arg()).with_args(daemon_args);
        Ok(SidecarPair {
            ctl,
            _pods_file: pods_file,
            node,
            a,
            b,
            server_pid,
        })
    }

    /// Pins the long-running processes for `placement` on a machine with
    /// `ncpu` CPUs: sidecar A on the client side's CPUs, sidecar B and the
    /// server on the server side's. The per-run clients and workers are
    /// pinned by their runner.
    pub(crate) fn place(&self, placement: Placement, ncpu: usize) -> Result<()> {
        let (client, server) = placement.cpu_lists(ncpu);
        pin(&self.a.sidecar_pids(), &client)?;
        let mut server_side = self.b.sidecar_pids();
        server_side.push(self.server_pid);
        pin(&server_side, &server)
    }
}
