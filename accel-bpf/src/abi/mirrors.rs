//! The map key and value structs of `accel_abi.h`, `#[repr(C)]` with
//! explicit padding, and their `aya::Pod` marks.

use std::net::{IpAddr, Ipv6Addr};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Config {
    pub mode: u32,
    pub flags: u32,
    /// Flow control budget in bytes (0: off).
    pub flow_budget: u32,
    /// Owner uid of the sidecar proxy's sockets, for proxy-only pods.
    pub proxy_uid: u32,
    /// `EP_*` of loopback in namespaces nobody listed (the node's mode).
    pub default_ep_flags: u32,
    /// Writers of messages all under this size, to a proxy whose reader is
    /// behind, leave for TCP (0: never).
    pub stream_small_bytes: u32,
    /// Short closes in a row to one destination after which its new
    /// connections stay on TCP, all but probes (0: never).
    pub short_lived_after: u32,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct SockState {
    pub token: u64,
    pub peer_cookie: u64,
    pub role: u8,
    pub decision: u8,
    pub reason: u8,
    pub flags: u8,
    pub local_pod: u16,
    pub peer_pod: u16,
    pub redirected_msgs: u64,
    pub redirected_bytes: u64,
    pub passed_msgs: u64,
    pub passed_bytes: u64,
    pub peer_sk: u64,
    pub flow_switches: u64,
    pub flow_unchecked: u64,
    /// The socket's own cookie (its sockhash key).
    pub cookie: u64,
    /// `INGRESS_*`: may bytes be redirected into this socket.
    pub ingress: u8,
    /// `INGRESS_*` of the peer.
    pub peer_ingress: u8,
    /// `STREAM_*`.
    pub stream_flags: u8,
    /// Small sends in a row.
    pub small_run: u8,
    /// The peer's read bytes of this socket's redirected ones (mod 2^32) at
    /// the last look of a small-message writer.
    pub peer_read_mark: u32,
    /// Looks in the current window.
    pub small_looks: u16,
    /// Of those, the looks that found bytes unread and none read since.
    pub small_stalls: u16,
    /// A recorded connecting socket's establishment, in units of 1024 ns
    /// (mod 2^32); 0 when the short-lived rule was off.
    pub established_units: u32,
    /// Bytes written (redirected + passed) when the TCP-share window began.
    pub share_mark: u64,
    /// Bytes passed to TCP when the TCP-share window began.
    pub share_passed_mark: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(C)]
pub struct PairKey {
    pub token: u64,
    pub stage: u32,
    pub _pad0: u32,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct PairValue {
    pub cookie: u64,
    pub netns_cookie: u64,
    pub sk_addr: u64,
    pub pod: u16,
    /// `INGRESS_*` of that socket.
    pub ingress: u16,
    /// `PAIR_F_*`.
    pub flags: u32,
}

/// An address as the datapath keys it: IPv4 as `::ffff:a.b.c.d`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(C)]
pub struct EndpointKey {
    pub addr: [u8; 16],
}

impl From<IpAddr> for EndpointKey {
    fn from(ip: IpAddr) -> Self {
        let v6: Ipv6Addr = match ip {
            IpAddr::V4(v4) => v4.to_ipv6_mapped(),
            IpAddr::V6(v6) => v6,
        };
        EndpointKey { addr: v6.octets() }
    }
}

impl EndpointKey {
    pub fn ip(&self) -> IpAddr {
        let v6 = Ipv6Addr::from(self.addr);
        match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(C)]
pub struct ExcludedPortKey {
    pub addr: [u8; 16],
    /// Host byte order.
    pub port: u16,
    pub direction: u8,
    pub _pad0: u8,
}

/// LPM key: the pod address in full (128 bits) followed by a destination
/// prefix; `prefixlen` counts both.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(C)]
pub struct ExcludedCidrKey {
    pub prefixlen: u32,
    pub pod: [u8; 16],
    pub dst: [u8; 16],
}

impl ExcludedCidrKey {
    /// `dst` masked to `dst_prefix` bits (an IPv4 prefix counts from the
    /// `::ffff:` mapping, i.e. +96).
    pub fn new(pod: EndpointKey, dst: IpAddr, dst_prefix: u8) -> Self {
        let (bits, prefix) = match dst {
            IpAddr::V4(v4) => (
                v4.to_ipv6_mapped().octets(),
                u32::from(dst_prefix.min(32)) + 96,
            ),
            IpAddr::V6(v6) => (v6.octets(), u32::from(dst_prefix.min(128))),
        };
        let mut masked = [0u8; 16];
        for (i, b) in bits.iter().enumerate() {
            let keep = prefix.saturating_sub(8 * i as u32).min(8);
            masked[i] = if keep == 0 {
                0
            } else {
                b & (0xffu8 << (8 - keep))
            };
        }
        ExcludedCidrKey {
            prefixlen: 128 + prefix,
            pod: pod.addr,
            dst: masked,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Endpoint {
    pub flags: u32,
    /// The daemon's id of the pod owning the address (0: none).
    pub pod: u16,
    pub _pad0: u16,
}

/// Value of the meshed-netns map: the pod whose namespace it is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct MeshedNetns {
    pub pod: u16,
    /// `EP_*` flags of the pod, for its loopback sockets.
    pub flags: u16,
}

/// Key of the per pod pair traffic map.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(C)]
pub struct PodPair {
    pub src: u16,
    pub dst: u16,
}

/// Key of the held-back sockets map: a pod and a `HELD_*` reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(C)]
pub struct PodHeldKey {
    pub pod: u16,
    pub reason: u16,
}

/// Key of the `auto` application listeners map (`accel_app_listeners`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(C)]
pub struct AppListenerKey {
    pub netns_cookie: u64,
    /// As [`EndpointKey`]; all-zero: every address.
    pub addr: [u8; 16],
    /// Host byte order.
    pub port: u16,
    pub _pad0: u16,
    pub _pad1: u32,
}

/// What the short-lived rule knows of one destination
/// (`accel_short_lived`, keyed by [`AppListenerKey`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct ShortLived {
    /// Short closes in a row, each soon after the one before.
    pub streak: u32,
    /// Connections left on TCP since the last probe (the 16th or a later
    /// one is the next probe).
    pub attempts: u32,
    /// `bpf_ktime_get_ns()` of the last short close.
    pub last_short_ns: u64,
}

/// Redirected traffic of one pod pair (one CPU's share in the map).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct PodTraffic {
    pub msgs: u64,
    pub bytes: u64,
}

// SAFETY: all of these are repr(C), contain only integers and byte arrays,
// and have no implicit padding (checked by the layout tests).
unsafe impl aya::Pod for Config {}
unsafe impl aya::Pod for SockState {}
unsafe impl aya::Pod for PairKey {}
unsafe impl aya::Pod for PairValue {}
unsafe impl aya::Pod for EndpointKey {}
unsafe impl aya::Pod for Endpoint {}
unsafe impl aya::Pod for MeshedNetns {}
unsafe impl aya::Pod for PodPair {}
unsafe impl aya::Pod for PodTraffic {}
unsafe impl aya::Pod for PodHeldKey {}
unsafe impl aya::Pod for AppListenerKey {}
unsafe impl aya::Pod for ShortLived {}
unsafe impl aya::Pod for ExcludedPortKey {}
unsafe impl aya::Pod for ExcludedCidrKey {}
