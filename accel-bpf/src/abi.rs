//! Rust mirror of `src/bpf/accel_abi.h`. The layout tests at the bottom
//! compare every size, offset and constant with what the C compiler produced
//! from the header itself (see build.rs), so the two cannot drift apart.

use std::net::{IpAddr, Ipv6Addr};

pub const ABI_VERSION: u32 = 5;

pub const TCPOPT_KIND: u8 = 253;
pub const TCPOPT_EXID: u16 = 0xACCE;
pub const TCPOPT_LEN: u8 = 12;

pub const ROLE_ACTIVE: u8 = 1;
pub const ROLE_PASSIVE: u8 = 2;

pub const DECISION_UNDECIDED: u8 = 0;
pub const DECISION_REDIRECT: u8 = 1;
pub const DECISION_TCP: u8 = 2;
pub const DECISION_TCP_FLOW: u8 = 3;

pub const REASON_NONE: u8 = 0;
pub const REASON_UNPAIRED: u8 = 1;
pub const REASON_PASSTHROUGH: u8 = 2;
pub const REASON_PEER_GONE: u8 = 3;
pub const REASON_FLOW: u8 = 4;
/// An application socket (this one or its peer) is blocking (guard.h).
pub const REASON_BLOCKING: u8 = 5;
/// The peer is an `auto` application: it receives by TCP.
pub const REASON_APP_READS_TCP: u8 = 6;

pub const SF_OPT_PENDING: u8 = 1;
pub const SF_APP_GUARDED: u8 = 2;
pub const SF_PROVEN: u8 = 4;
pub const SF_LEAVING: u8 = 8;
/// In `accel_rx_sockhash`: only redirected to; its sends skip sk_msg.
pub const SF_RX_ONLY: u8 = 16;
/// Its peer is in `accel_rx_sockhash`.
pub const SF_PEER_RX_ONLY: u8 = 32;

pub const INGRESS_OPEN: u8 = 0;
pub const INGRESS_CLOSED: u8 = 1;
pub const INGRESS_UNLESS_BLOCKING: u8 = 2;

pub const READER_BLOCKING: u8 = 1;

/// Why a pod's socket was kept off the redirect path (`accel_pod_held`).
pub const HELD_BLOCKING: u16 = 1;
pub const HELD_NO_FILE: u16 = 2;
pub const HELD_APP_READS_TCP: u16 = 3;

pub const PAIR_OFFER: u32 = 1;
pub const PAIR_ANSWER: u32 = 2;
/// [`PairValue::flags`]: that socket is in `accel_rx_sockhash`.
pub const PAIR_F_RX_ONLY: u32 = 1;

pub const MODE_ACCELERATE: u32 = 0;
pub const MODE_PASSTHROUGH: u32 = 1;

pub const EP_MESHED: u32 = 1;
/// Only the sidecar proxy's own sockets (owner uid [`Config::proxy_uid`]) take part.
pub const EP_PROXY_ONLY: u32 = 2;
/// Application sockets take part only while their file is non-blocking.
pub const EP_APP_NONBLOCKING_ONLY: u32 = 4;
/// Nothing is redirected into application sockets (they receive by TCP).
pub const EP_APP_SEND_ONLY: u32 = 8;

pub const CFG_LOOPBACK_MESHED_ONLY: u32 = 1;

pub const DIR_INBOUND: u8 = 1;
pub const DIR_OUTBOUND: u8 = 2;

pub const STATS_SLOTS: u32 = 32;

/// Per-CPU counters of the datapath, in slot order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Stat {
    ActiveOffered = 0,
    PassivePaired,
    ActivePaired,
    RecordFailed,
    PairingFull,
    StateFailed,
    RefusedNoToken,
    RefusedUnknown,
    RefusedNetns,
    RefusedEarlyData,
    ActiveUnanswered,
    RedirectMsgs,
    RedirectBytes,
    RedirectFailed,
    PassMsgs,
    PassBytes,
    PassthroughSwitch,
    HdrOptFailed,
    Closed,
    Excluded,
    FlowToTcp,
    FlowResumed,
    PodTrafficFull,
    RefusedProxyOnly,
    ProxyOffNode,
    AppBlockingSkipped,
    AppBlockingLeft,
    AppLeft,
    AppReceivesByTcp,
    AppPairSkipped,
    RecordedRxOnly,
}

impl Stat {
    pub const ALL: [Stat; 31] = [
        Stat::ActiveOffered,
        Stat::PassivePaired,
        Stat::ActivePaired,
        Stat::RecordFailed,
        Stat::PairingFull,
        Stat::StateFailed,
        Stat::RefusedNoToken,
        Stat::RefusedUnknown,
        Stat::RefusedNetns,
        Stat::RefusedEarlyData,
        Stat::ActiveUnanswered,
        Stat::RedirectMsgs,
        Stat::RedirectBytes,
        Stat::RedirectFailed,
        Stat::PassMsgs,
        Stat::PassBytes,
        Stat::PassthroughSwitch,
        Stat::HdrOptFailed,
        Stat::Closed,
        Stat::Excluded,
        Stat::FlowToTcp,
        Stat::FlowResumed,
        Stat::PodTrafficFull,
        Stat::RefusedProxyOnly,
        Stat::ProxyOffNode,
        Stat::AppBlockingSkipped,
        Stat::AppBlockingLeft,
        Stat::AppLeft,
        Stat::AppReceivesByTcp,
        Stat::AppPairSkipped,
        Stat::RecordedRxOnly,
    ];

    /// Stable snake_case name, used in status output and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            Stat::ActiveOffered => "active_offered",
            Stat::PassivePaired => "passive_paired",
            Stat::ActivePaired => "active_paired",
            Stat::RecordFailed => "record_failed",
            Stat::PairingFull => "pairing_full",
            Stat::StateFailed => "state_failed",
            Stat::RefusedNoToken => "refused_no_token",
            Stat::RefusedUnknown => "refused_unknown_token",
            Stat::RefusedNetns => "refused_netns_mismatch",
            Stat::RefusedEarlyData => "refused_early_data",
            Stat::ActiveUnanswered => "active_unanswered",
            Stat::RedirectMsgs => "redirect_msgs",
            Stat::RedirectBytes => "redirect_bytes",
            Stat::RedirectFailed => "redirect_failed",
            Stat::PassMsgs => "pass_msgs",
            Stat::PassBytes => "pass_bytes",
            Stat::PassthroughSwitch => "passthrough_switch",
            Stat::HdrOptFailed => "hdr_opt_failed",
            Stat::Closed => "closed",
            Stat::Excluded => "excluded_by_pod_opt_out",
            Stat::FlowToTcp => "flow_reader_behind_to_tcp",
            Stat::FlowResumed => "flow_resumed_redirect",
            Stat::PodTrafficFull => "pod_traffic_map_full",
            Stat::RefusedProxyOnly => "refused_proxy_only",
            Stat::ProxyOffNode => "proxy_off_node_not_recorded",
            Stat::AppBlockingSkipped => "app_blocking_not_recorded",
            Stat::AppBlockingLeft => "app_blocking_seen_later",
            Stat::AppLeft => "app_left_sockhash",
            Stat::AppReceivesByTcp => "app_receives_by_tcp",
            Stat::AppPairSkipped => "app_to_app_not_recorded",
            Stat::RecordedRxOnly => "recorded_receive_only",
        }
    }
}

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
    pub _pad0: u16,
    pub _pad1: u32,
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
unsafe impl aya::Pod for ExcludedPortKey {}
unsafe impl aya::Pod for ExcludedCidrKey {}

#[cfg(test)]
mod layout_tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[allow(non_upper_case_globals, dead_code)]
    mod c {
        include!(concat!(env!("OUT_DIR"), "/c_layout.rs"));
    }

    #[test]
    fn structs_match_c() {
        assert_eq!(size_of::<Config>(), c::SIZEOF_accel_config);
        assert_eq!(offset_of!(Config, mode), c::OFFSETOF_accel_config_mode);

        assert_eq!(size_of::<SockState>(), c::SIZEOF_accel_sock_state);
        assert_eq!(
            offset_of!(SockState, token),
            c::OFFSETOF_accel_sock_state_token
        );
        assert_eq!(
            offset_of!(SockState, peer_cookie),
            c::OFFSETOF_accel_sock_state_peer_cookie
        );
        assert_eq!(
            offset_of!(SockState, role),
            c::OFFSETOF_accel_sock_state_role
        );
        assert_eq!(
            offset_of!(SockState, decision),
            c::OFFSETOF_accel_sock_state_decision
        );
        assert_eq!(
            offset_of!(SockState, reason),
            c::OFFSETOF_accel_sock_state_reason
        );
        assert_eq!(
            offset_of!(SockState, flags),
            c::OFFSETOF_accel_sock_state_flags
        );
        assert_eq!(
            offset_of!(SockState, redirected_msgs),
            c::OFFSETOF_accel_sock_state_redirected_msgs
        );
        assert_eq!(
            offset_of!(SockState, redirected_bytes),
            c::OFFSETOF_accel_sock_state_redirected_bytes
        );
        assert_eq!(
            offset_of!(SockState, passed_msgs),
            c::OFFSETOF_accel_sock_state_passed_msgs
        );
        assert_eq!(
            offset_of!(SockState, passed_bytes),
            c::OFFSETOF_accel_sock_state_passed_bytes
        );

        assert_eq!(size_of::<PairKey>(), c::SIZEOF_accel_pair_key);
        assert_eq!(offset_of!(PairKey, token), c::OFFSETOF_accel_pair_key_token);
        assert_eq!(offset_of!(PairKey, stage), c::OFFSETOF_accel_pair_key_stage);

        assert_eq!(size_of::<PairValue>(), c::SIZEOF_accel_pair_value);
        assert_eq!(
            offset_of!(PairValue, cookie),
            c::OFFSETOF_accel_pair_value_cookie
        );
        assert_eq!(
            offset_of!(PairValue, netns_cookie),
            c::OFFSETOF_accel_pair_value_netns_cookie
        );
        assert_eq!(
            offset_of!(PairValue, sk_addr),
            c::OFFSETOF_accel_pair_value_sk_addr
        );

        assert_eq!(offset_of!(Config, flags), c::OFFSETOF_accel_config_flags);
        assert_eq!(
            offset_of!(Config, flow_budget),
            c::OFFSETOF_accel_config_flow_budget
        );
        assert_eq!(
            size_of::<ExcludedPortKey>(),
            c::SIZEOF_accel_excluded_port_key
        );
        assert_eq!(
            offset_of!(ExcludedPortKey, addr),
            c::OFFSETOF_accel_excluded_port_key_addr
        );
        assert_eq!(
            offset_of!(ExcludedPortKey, port),
            c::OFFSETOF_accel_excluded_port_key_port
        );
        assert_eq!(
            offset_of!(ExcludedPortKey, direction),
            c::OFFSETOF_accel_excluded_port_key_direction
        );
        assert_eq!(
            size_of::<ExcludedCidrKey>(),
            c::SIZEOF_accel_excluded_cidr_key
        );
        assert_eq!(
            offset_of!(ExcludedCidrKey, prefixlen),
            c::OFFSETOF_accel_excluded_cidr_key_prefixlen
        );
        assert_eq!(
            offset_of!(ExcludedCidrKey, pod),
            c::OFFSETOF_accel_excluded_cidr_key_pod
        );
        assert_eq!(
            offset_of!(ExcludedCidrKey, dst),
            c::OFFSETOF_accel_excluded_cidr_key_dst
        );
        assert_eq!(size_of::<EndpointKey>(), c::SIZEOF_accel_endpoint_key);
        assert_eq!(size_of::<Endpoint>(), c::SIZEOF_accel_endpoint);
        assert_eq!(
            offset_of!(Endpoint, flags),
            c::OFFSETOF_accel_endpoint_flags
        );
        assert_eq!(offset_of!(Endpoint, pod), c::OFFSETOF_accel_endpoint_pod);
        assert_eq!(
            offset_of!(SockState, local_pod),
            c::OFFSETOF_accel_sock_state_local_pod
        );
        assert_eq!(
            offset_of!(SockState, peer_pod),
            c::OFFSETOF_accel_sock_state_peer_pod
        );
        assert_eq!(offset_of!(PairValue, pod), c::OFFSETOF_accel_pair_value_pod);
        assert_eq!(size_of::<MeshedNetns>(), c::SIZEOF_accel_meshed_netns);
        assert_eq!(
            offset_of!(MeshedNetns, pod),
            c::OFFSETOF_accel_meshed_netns_pod
        );
        assert_eq!(
            offset_of!(MeshedNetns, flags),
            c::OFFSETOF_accel_meshed_netns_flags
        );
        assert_eq!(
            offset_of!(Config, proxy_uid),
            c::OFFSETOF_accel_config_proxy_uid
        );
        assert_eq!(size_of::<PodPair>(), c::SIZEOF_accel_pod_pair);
        assert_eq!(offset_of!(PodPair, src), c::OFFSETOF_accel_pod_pair_src);
        assert_eq!(offset_of!(PodPair, dst), c::OFFSETOF_accel_pod_pair_dst);
        assert_eq!(size_of::<PodTraffic>(), c::SIZEOF_accel_pod_traffic);
        assert_eq!(
            offset_of!(PodTraffic, msgs),
            c::OFFSETOF_accel_pod_traffic_msgs
        );
        assert_eq!(
            offset_of!(PodTraffic, bytes),
            c::OFFSETOF_accel_pod_traffic_bytes
        );
        assert_eq!(
            offset_of!(Config, default_ep_flags),
            c::OFFSETOF_accel_config_default_ep_flags
        );
        assert_eq!(
            offset_of!(SockState, cookie),
            c::OFFSETOF_accel_sock_state_cookie
        );
        assert_eq!(
            offset_of!(SockState, ingress),
            c::OFFSETOF_accel_sock_state_ingress
        );
        assert_eq!(
            offset_of!(SockState, peer_ingress),
            c::OFFSETOF_accel_sock_state_peer_ingress
        );
        assert_eq!(
            offset_of!(PairValue, ingress),
            c::OFFSETOF_accel_pair_value_ingress
        );
        assert_eq!(
            offset_of!(PairValue, flags),
            c::OFFSETOF_accel_pair_value_flags
        );
        assert_eq!(size_of::<PodHeldKey>(), c::SIZEOF_accel_pod_held_key);
        assert_eq!(
            size_of::<AppListenerKey>(),
            c::SIZEOF_accel_app_listener_key
        );
        assert_eq!(
            offset_of!(AppListenerKey, addr),
            c::OFFSETOF_accel_app_listener_key_addr
        );
        assert_eq!(
            offset_of!(AppListenerKey, port),
            c::OFFSETOF_accel_app_listener_key_port
        );
        assert_eq!(
            offset_of!(PodHeldKey, reason),
            c::OFFSETOF_accel_pod_held_key_reason
        );
    }

    #[test]
    fn no_implicit_padding() {
        // Sum of field sizes equals the struct size: every hole is a named _pad.
        assert_eq!(
            size_of::<SockState>(),
            8 + 8 + 4 + 2 + 2 + 8 * 8 + 1 + 1 + 2 + 4
        );
        assert_eq!(size_of::<PodHeldKey>(), 2 + 2);
        assert_eq!(size_of::<AppListenerKey>(), 8 + 16 + 2 + 2 + 4);
        assert_eq!(size_of::<PairValue>(), 3 * 8 + 2 + 2 + 4);
        assert_eq!(size_of::<MeshedNetns>(), 2 + 2);
        assert_eq!(size_of::<PodPair>(), 2 + 2);
        assert_eq!(size_of::<PodTraffic>(), 8 + 8);
        assert_eq!(size_of::<PairKey>(), 8 + 4 + 4);
        assert_eq!(size_of::<Config>(), 5 * 4);
        assert_eq!(size_of::<Endpoint>(), 4 + 2 + 2);
        assert_eq!(size_of::<ExcludedPortKey>(), 16 + 2 + 1 + 1);
        assert_eq!(size_of::<ExcludedCidrKey>(), 4 + 16 + 16);
    }

    #[test]
    fn constants_match_c() {
        assert_eq!(u64::from(ABI_VERSION), c::ACCEL_ABI_VERSION);
        assert_eq!(u64::from(TCPOPT_KIND), c::ACCEL_TCPOPT_KIND);
        assert_eq!(u64::from(TCPOPT_EXID), c::ACCEL_TCPOPT_EXID);
        assert_eq!(u64::from(TCPOPT_LEN), c::ACCEL_TCPOPT_LEN);
        assert_eq!(u64::from(ROLE_ACTIVE), c::ACCEL_ROLE_ACTIVE);
        assert_eq!(u64::from(ROLE_PASSIVE), c::ACCEL_ROLE_PASSIVE);
        assert_eq!(u64::from(DECISION_UNDECIDED), c::ACCEL_DECISION_UNDECIDED);
        assert_eq!(u64::from(DECISION_REDIRECT), c::ACCEL_DECISION_REDIRECT);
        assert_eq!(u64::from(DECISION_TCP), c::ACCEL_DECISION_TCP);
        assert_eq!(u64::from(DECISION_TCP_FLOW), c::ACCEL_DECISION_TCP_FLOW);
        assert_eq!(u64::from(REASON_FLOW), c::ACCEL_REASON_FLOW);
        assert_eq!(u64::from(REASON_NONE), c::ACCEL_REASON_NONE);
        assert_eq!(u64::from(REASON_UNPAIRED), c::ACCEL_REASON_UNPAIRED);
        assert_eq!(u64::from(REASON_PASSTHROUGH), c::ACCEL_REASON_PASSTHROUGH);
        assert_eq!(u64::from(REASON_PEER_GONE), c::ACCEL_REASON_PEER_GONE);
        assert_eq!(u64::from(SF_OPT_PENDING), c::ACCEL_SF_OPT_PENDING);
        assert_eq!(u64::from(SF_APP_GUARDED), c::ACCEL_SF_APP_GUARDED);
        assert_eq!(u64::from(SF_PROVEN), c::ACCEL_SF_PROVEN);
        assert_eq!(u64::from(SF_LEAVING), c::ACCEL_SF_LEAVING);
        assert_eq!(u64::from(SF_RX_ONLY), c::ACCEL_SF_RX_ONLY);
        assert_eq!(u64::from(SF_PEER_RX_ONLY), c::ACCEL_SF_PEER_RX_ONLY);
        assert_eq!(u64::from(PAIR_F_RX_ONLY), c::ACCEL_PAIR_F_RX_ONLY);
        assert_eq!(u64::from(REASON_BLOCKING), c::ACCEL_REASON_BLOCKING);
        assert_eq!(
            u64::from(REASON_APP_READS_TCP),
            c::ACCEL_REASON_APP_READS_TCP
        );
        assert_eq!(u64::from(INGRESS_OPEN), c::ACCEL_INGRESS_OPEN);
        assert_eq!(u64::from(INGRESS_CLOSED), c::ACCEL_INGRESS_CLOSED);
        assert_eq!(
            u64::from(INGRESS_UNLESS_BLOCKING),
            c::ACCEL_INGRESS_UNLESS_BLOCKING
        );
        assert_eq!(u64::from(READER_BLOCKING), c::ACCEL_READER_BLOCKING);
        assert_eq!(u64::from(HELD_BLOCKING), c::ACCEL_HELD_BLOCKING);
        assert_eq!(u64::from(HELD_NO_FILE), c::ACCEL_HELD_NO_FILE);
        assert_eq!(u64::from(HELD_APP_READS_TCP), c::ACCEL_HELD_APP_READS_TCP);
        assert_eq!(
            u64::from(EP_APP_NONBLOCKING_ONLY),
            c::ACCEL_EP_APP_NONBLOCKING_ONLY
        );
        assert_eq!(u64::from(EP_APP_SEND_ONLY), c::ACCEL_EP_APP_SEND_ONLY);
        assert_eq!(u64::from(PAIR_OFFER), c::ACCEL_PAIR_OFFER);
        assert_eq!(u64::from(PAIR_ANSWER), c::ACCEL_PAIR_ANSWER);
        assert_eq!(u64::from(MODE_ACCELERATE), c::ACCEL_MODE_ACCELERATE);
        assert_eq!(u64::from(MODE_PASSTHROUGH), c::ACCEL_MODE_PASSTHROUGH);
        assert_eq!(u64::from(EP_MESHED), c::ACCEL_EP_MESHED);
        assert_eq!(u64::from(EP_PROXY_ONLY), c::ACCEL_EP_PROXY_ONLY);
        assert_eq!(
            u64::from(CFG_LOOPBACK_MESHED_ONLY),
            c::ACCEL_CFG_LOOPBACK_MESHED_ONLY
        );
        assert_eq!(u64::from(DIR_INBOUND), c::ACCEL_DIR_INBOUND);
        assert_eq!(u64::from(DIR_OUTBOUND), c::ACCEL_DIR_OUTBOUND);
        assert_eq!(u64::from(STATS_SLOTS), c::ACCEL_STATS_SLOTS);
    }

    #[test]
    fn stats_match_c() {
        assert_eq!(Stat::ALL.len() as u64, c::ACCEL_STAT_COUNT);
        const { assert!(c::ACCEL_STAT_COUNT <= c::ACCEL_STATS_SLOTS) };
        for (i, stat) in Stat::ALL.iter().enumerate() {
            assert_eq!(*stat as u32, c::STAT_VALUES_C[i], "{}", c::STAT_NAMES_C[i]);
            // ACCEL_STAT_FOO_BAR <-> Stat::FooBar: compare names loosely.
            let c_name = c::STAT_NAMES_C[i]
                .trim_start_matches("ACCEL_STAT_")
                .to_lowercase();
            let rust_name = format!("{stat:?}").to_lowercase();
            assert_eq!(c_name.replace('_', ""), rust_name, "slot {i}");
        }
    }

    #[test]
    fn cidr_keys_are_masked_and_count_the_pod_bits() {
        let pod = EndpointKey::from("10.244.0.2".parse::<IpAddr>().unwrap());
        let k = ExcludedCidrKey::new(pod, "10.96.7.9".parse().unwrap(), 12);
        assert_eq!(k.prefixlen, 128 + 96 + 12);
        assert_eq!(&k.dst[12..], &[10, 96, 0, 0]);
        let k6 = ExcludedCidrKey::new(pod, "fd00:1234::ff".parse().unwrap(), 32);
        assert_eq!(k6.prefixlen, 128 + 32);
        assert_eq!(&k6.dst[..6], &[0xfd, 0, 0x12, 0x34, 0, 0]);
        let all = ExcludedCidrKey::new(pod, "0.0.0.0".parse().unwrap(), 0);
        assert_eq!(all.prefixlen, 128 + 96);
    }

    #[test]
    fn endpoint_key_maps_v4() {
        let k = EndpointKey::from("10.1.2.3".parse::<IpAddr>().unwrap());
        assert_eq!(&k.addr[10..], &[0xff, 0xff, 10, 1, 2, 3]);
        assert_eq!(k.ip(), "10.1.2.3".parse::<IpAddr>().unwrap());
        let k6 = EndpointKey::from("fd00::1".parse::<IpAddr>().unwrap());
        assert_eq!(k6.ip(), "fd00::1".parse::<IpAddr>().unwrap());
    }
}
