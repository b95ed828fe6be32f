//! A one-node "cluster" of pods with Istio-style sidecars, for end-to-end
//! tests of the datapath against real sidecar traffic.
//!
//! Nothing here touches the host network namespace. A private *node*
//! namespace holds a Linux bridge (`br0`, 10.244.0.1/24 and fd00:244::1/64);
//! every pod is its own namespace, connected to that bridge by a veth pair
//! (pod side `eth0`, 10.244.0.N/24 and fd00:244::N/64, default routes via
//! the bridge). Every pod process (apps, sidecars, clients) runs inside the
//! test's cgroup, so a datapath attached to [`TestEnv::cgroup`] sees all of
//! them and nothing else.
//!
//! A *meshed* pod gets Istio's interception exactly as `istio-iptables`
//! installs it in REDIRECT mode (see [`istio_rules`]), and a sidecar running
//! as uid/gid 1337:
//!
//! - IPv4: Debian's haproxy, TCP mode, outbound listener 15001 forwarding to
//!   the original destination (`server s 0.0.0.0:0`, haproxy reads
//!   `SO_ORIGINAL_DST`), inbound listener 15006 forwarding to the original
//!   destination from source 127.0.0.6 (Istio's inbound passthrough).
//! - IPv6: haproxy (2.6, Debian bookworm) only reads `SO_ORIGINAL_DST` for
//!   AF_INET sockets, so it cannot forward redirected IPv6 connections; the
//!   same two listeners for IPv6 (`[::]:15001`, `[::]:15006`, `IPV6_V6ONLY`)
//!   are served by `accel-pod proxy`, a tiny Rust proxy that reads
//!   `IP6T_SO_ORIGINAL_DST` and connects from `::6` for inbound, as Envoy
//!   does. Both run as uid/gid 1337 in the pod, like the two halves of one
//!   Envoy.
//!
//! Everything is torn down in [`Node`]'s Drop, also while unwinding from a
//! panic: tracked processes are killed and reaped, then every process still
//! in one of our namespaces (`ip netns pids`) is killed, then the namespaces
//! are deleted (with them the veths, the bridge and all iptables state).

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    time::Duration,
};

pub mod mesh;
pub mod netns;
pub mod node;
pub mod pod;
pub mod pods_file;
pub mod sock;
pub mod sockets;

pub use accel_test_harness::pod_bin;
pub use mesh::{Mesh, haproxy_config, istio_rules};
pub use netns::{netns_command, netns_list, netns_pids, pid_alive};
pub use node::Node;
pub use pod::{EchoClient, EchoReport, Pod};
pub use pods_file::PodsFile;
pub use sockets::{LegCaptures, MeshLegs, SockInfo};

/// Istio's proxy uid and gid (`istio-proxy`), numeric: no passwd entry needed.
pub const SIDECAR_UID: u32 = 1337;
pub const SIDECAR_GID: u32 = 1337;
/// Envoy's outbound capture port (`ISTIO_REDIRECT`).
pub const OUTBOUND_PORT: u16 = 15001;
/// Envoy's inbound capture port (`ISTIO_IN_REDIRECT`).
pub const INBOUND_PORT: u16 = 15006;
/// HBONE tunnel port, always excluded by istio-iptables.
pub const TUNNEL_PORT: u16 = 15008;
/// The source of Istio's inbound passthrough connections.
pub const PASSTHROUGH_V4: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 6);
pub const PASSTHROUGH_V6: Ipv6Addr = Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 6);
/// The pods' echo app and nginx.
pub const ECHO_PORT: u16 = 8080;
pub const HTTP_PORT: u16 = 80;
/// Path nginx serves the generated file under.
pub const HTTP_FILE: &str = "/file";
/// First of the source ports tests bind on purpose. They sit below the
/// kernel's ephemeral range (32768-60999) because the sidecar's own
/// outgoing connections take their ports from that range without
/// SO_REUSEADDR, and a bind() to a port the proxy holds fails with
/// EADDRINUSE (a CI run lost the NAT-remap test to exactly that).
pub const BOUND_SOURCE_PORTS: u16 = 20000;

pub const BRIDGE: &str = "br0";
pub const GATEWAY_V4: Ipv4Addr = Ipv4Addr::new(10, 244, 0, 1);
pub const GATEWAY_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x244, 0, 0, 0, 0, 0, 1);

pub(crate) const WAIT: Duration = Duration::from_secs(15);
