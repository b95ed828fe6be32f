//! A pod: its namespace, its processes (apps, sidecars, clients), and the
//! echo client that holds a connection open.
//!
//! The [`Pod`] type and what it reports about itself (addresses, PIDs,
//! sockets, captures) are here; the rest is split by concern:
//!
//! - `process`: commands in the pod's namespace, spawning and tracking
//!   processes, waiting for listeners;
//! - `sidecar`: Istio's interception rules and the sidecar proxies;
//! - `servers`: the echo app and nginx;
//! - `clients`: the echo client ([`EchoClient`], [`EchoReport`]) and curl.

use std::{
    net::{Ipv4Addr, Ipv6Addr, SocketAddr},
    path::PathBuf,
    sync::{Arc, Mutex},
};

use accel_test_harness::Capture;

use crate::{OUTBOUND_PORT, mesh::Mesh, netns::netns_pids, node::Tracked, sockets::SockInfo};

mod clients;
mod process;
mod servers;
mod sidecar;

pub use clients::{EchoClient, EchoReport};

/// One pod: its own namespace on the node's bridge.
#[derive(Clone)]
pub struct Pod {
    pub name: String,
    pub netns: String,
    pub netns_path: PathBuf,
    pub node_netns: String,
    pub ipv4: Ipv4Addr,
    pub ipv6: Ipv6Addr,
    /// The veth end in the node namespace, on `br0`.
    pub host_veth: String,
    /// `Some` for a meshed pod.
    pub mesh: Option<Mesh>,
    pub dir: PathBuf,
    pub(crate) cgroup: PathBuf,
    pub(crate) procs: Arc<Mutex<Vec<Tracked>>>,
}

impl Pod {
    pub fn is_meshed(&self) -> bool {
        self.mesh.is_some()
    }

    pub fn addr_v4(&self, port: u16) -> SocketAddr {
        SocketAddr::new(self.ipv4.into(), port)
    }

    pub fn addr_v6(&self, port: u16) -> SocketAddr {
        SocketAddr::new(self.ipv6.into(), port)
    }

    /// Every process in this pod's namespace.
    pub fn pids(&self) -> Vec<u32> {
        netns_pids(&self.netns)
    }

    /// Non-listening TCP sockets in the pod (`ss -tnpe`).
    pub fn sockets(&self) -> Vec<SockInfo> {
        let out = self.admin_ok("ss", &["-Htnpe"]);
        out.lines().filter_map(SockInfo::parse).collect()
    }

    /// The source ports of this pod's own connections (from its pod IP) as
    /// its sidecar's outbound listener accepted them: where netfilter
    /// remapped a clashing source port, the remapped one.
    pub fn ports_at_outbound_sidecar(&self) -> Vec<u16> {
        self.sockets()
            .iter()
            .filter(|s| s.local.port() == OUTBOUND_PORT && s.peer.ip() == self.ipv4)
            .map(|s| s.peer.port())
            .collect()
    }

    /// tcpdump on an interface of this pod (`lo`, `eth0`).
    pub fn capture(&self, iface: &str, filter: &str) -> Capture {
        Capture::in_netns(&self.netns, iface, filter)
    }
}
