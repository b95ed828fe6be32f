//! Rust mirror of `src/bpf/accel_abi.h`. The layout tests at the bottom
//! compare every struct's size and member offsets with the BTF clang wrote
//! into the built objects, and every constant and counter with the header
//! itself, so the two cannot drift apart.

use std::net::{IpAddr, Ipv6Addr};

pub const ABI_VERSION: u32 = 6;

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
/// A small-message stream to a reader behind: TCP, then out of the sockhash.
pub const REASON_STREAM: u8 = 7;
/// The peer is leaving the sockhash (a small-message stream writer).
pub const REASON_PEER_LEAVING: u8 = 8;
/// `accel_reader` was full: no claim, so no safe redirect.
pub const REASON_CLAIM_FULL: u8 = 9;

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
pub const READER_REDIRECTED_TO: u8 = 2;
pub const READER_LEAVING: u8 = 3;
pub const READER_LEAVE_SEEN: u8 = 4;

/// [`SockState::stream_flags`] (stream.h).
pub const STREAM_PROXY: u8 = 1;
pub const STREAM_PEER_PROXY: u8 = 2;
pub const STREAM_LEAVING: u8 = 4;
pub const STREAM_LEFT: u8 = 8;
pub const STREAM_COUNTED: u8 = 16;

/// Why a pod's socket was kept off the redirect path (`accel_pod_held`).
pub const HELD_BLOCKING: u16 = 1;
pub const HELD_NO_FILE: u16 = 2;
pub const HELD_APP_READS_TCP: u16 = 3;

pub const PAIR_OFFER: u32 = 1;
pub const PAIR_ANSWER: u32 = 2;
/// [`PairValue::flags`]: that socket is in `accel_rx_sockhash`.
pub const PAIR_F_RX_ONLY: u32 = 1;
/// [`PairValue::flags`]: that socket is the sidecar proxy's.
pub const PAIR_F_PROXY: u32 = 2;

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

pub const STATS_SLOTS: u32 = 48;

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
    StreamWriterLeaving,
    StreamWriterLeft,
    StreamWriterLeftBytes,
    StreamPeerLeaving,
    StreamClaimFull,
}

impl Stat {
    pub const ALL: [Stat; 36] = [
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
        Stat::StreamWriterLeaving,
        Stat::StreamWriterLeft,
        Stat::StreamWriterLeftBytes,
        Stat::StreamPeerLeaving,
        Stat::StreamClaimFull,
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
            Stat::StreamWriterLeaving => "stream_writer_leaving_to_tcp",
            Stat::StreamWriterLeft => "stream_writer_left_sockhash",
            Stat::StreamWriterLeftBytes => "stream_writer_left_bytes",
            Stat::StreamPeerLeaving => "stream_peer_leaving_to_tcp",
            Stat::StreamClaimFull => "stream_claim_map_full",
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
    /// Writers of messages all under this size, to a proxy whose reader is
    /// behind, leave for TCP (0: never).
    pub stream_small_bytes: u32,
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
    use crate::{DATAPATH_FLOW_OBJ, DATAPATH_OBJ};
    use core::mem::{offset_of, size_of, size_of_val};
    use std::collections::BTreeMap;

    /// A Rust mirror of one C struct.
    struct Mirror {
        c: &'static str,
        size: usize,
        /// Sum of the field sizes: equal to `size` when every hole is a named _pad.
        fields_size: usize,
        /// Field name -> offset.
        fields: BTreeMap<String, u32>,
    }

    macro_rules! mirror {
        ($t:ty = $c:literal { $($f:ident),* $(,)? }) => {{
            let v = <$t>::default();
            Mirror {
                c: $c,
                size: size_of::<$t>(),
                fields_size: 0 $(+ size_of_val(&v.$f))*,
                fields: BTreeMap::from([$((stringify!($f).to_string(), offset_of!($t, $f) as u32)),*]),
            }
        }};
    }

    /// Every struct of the ABI. A Rust field left out here breaks
    /// `no_implicit_padding`; a C member, the BTF comparison.
    fn mirrors() -> Vec<Mirror> {
        vec![
            mirror!(Config = "accel_config" {
                mode, flags, flow_budget, proxy_uid, default_ep_flags, stream_small_bytes,
            }),
            mirror!(SockState = "accel_sock_state" {
                token, peer_cookie, role, decision, reason, flags, local_pod, peer_pod,
                redirected_msgs, redirected_bytes, passed_msgs, passed_bytes, peer_sk,
                flow_switches, flow_unchecked, cookie, ingress, peer_ingress, stream_flags, small_run,
                _pad1,
            }),
            mirror!(PairKey = "accel_pair_key" { token, stage, _pad0 }),
            mirror!(PairValue = "accel_pair_value" { cookie, netns_cookie, sk_addr, pod, ingress, flags }),
            mirror!(EndpointKey = "accel_endpoint_key" { addr }),
            mirror!(Endpoint = "accel_endpoint" { flags, pod, _pad0 }),
            mirror!(MeshedNetns = "accel_meshed_netns" { pod, flags }),
            mirror!(PodPair = "accel_pod_pair" { src, dst }),
            mirror!(PodHeldKey = "accel_pod_held_key" { pod, reason }),
            mirror!(AppListenerKey = "accel_app_listener_key" { netns_cookie, addr, port, _pad0, _pad1 }),
            mirror!(PodTraffic = "accel_pod_traffic" { msgs, bytes }),
            mirror!(ExcludedPortKey = "accel_excluded_port_key" { addr, port, direction, _pad0 }),
            mirror!(ExcludedCidrKey = "accel_excluded_cidr_key" { prefixlen, pod, dst }),
        ]
    }

    /// Size and every member's offset, against the BTF clang wrote into
    /// each datapath object (the layout the programs really use).
    #[test]
    fn structs_match_the_btf_of_the_objects() {
        for (object, bytes) in [
            ("datapath", DATAPATH_OBJ),
            ("datapath_flow", DATAPATH_FLOW_OBJ),
        ] {
            let obj = aya_obj::Object::parse(bytes)
                .unwrap_or_else(|e| panic!("parsing {object}.bpf.o: {e}"));
            let btf = obj
                .btf
                .as_ref()
                .unwrap_or_else(|| panic!("{object}.bpf.o has no BTF: build with -g"))
                .to_bytes();
            let structs = crate::btf::structs(&btf)
                .unwrap_or_else(|e| panic!("reading the BTF of {object}.bpf.o: {e}"));
            for m in mirrors() {
                let c = structs.get(m.c).unwrap_or_else(|| {
                    panic!(
                        "{object}.bpf.o: struct {} is not in its BTF (does a map use it?)",
                        m.c
                    )
                });
                assert_eq!(
                    m.size as u32, c.size,
                    "{object}.bpf.o: size of struct {}",
                    m.c
                );
                assert_eq!(
                    m.fields, c.members,
                    "{object}.bpf.o: struct {} (member -> offset) differs from abi.rs",
                    m.c
                );
            }
        }
    }

    #[test]
    fn no_implicit_padding() {
        for m in mirrors() {
            assert_eq!(
                m.fields_size, m.size,
                "{}: a hole that is not a named _pad",
                m.c
            );
        }
    }

    const HEADER: &str = include_str!("bpf/accel_abi.h");

    /// A `#define` of accel_abi.h: decimal, hex or `(1U << n)`.
    fn c(name: &str) -> u64 {
        let int = |t: &str| -> u64 {
            let t = t.trim().trim_end_matches(['U', 'u', 'L', 'l']);
            let v = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => t.parse(),
            };
            v.unwrap_or_else(|_| panic!("{name}: cannot read {t:?} (decimal, hex or (1U << n))"))
        };
        let value = HEADER
            .lines()
            .find_map(|l| {
                let rest = l.trim_start().strip_prefix("#define")?.trim_start();
                let rest = rest.strip_prefix(name)?;
                rest.starts_with(char::is_whitespace)
                    .then(|| rest.split("/*").next().unwrap_or_default().trim())
            })
            .unwrap_or_else(|| panic!("{name} is not defined in accel_abi.h"));
        match value.strip_prefix('(').and_then(|v| v.strip_suffix(')')) {
            Some(inner) => match inner.split_once("<<") {
                Some((a, b)) => int(a) << int(b),
                None => int(inner),
            },
            None => int(value),
        }
    }

    /// `enum accel_stat` of accel_abi.h: (name, value) in order.
    fn c_stats() -> Vec<(String, u64)> {
        let body = HEADER
            .split_once("enum accel_stat {")
            .and_then(|(_, rest)| rest.split_once("};"))
            .map(|(body, _)| body)
            .expect("enum accel_stat in accel_abi.h");
        let mut next = 0;
        let mut out = Vec::new();
        for line in body.lines() {
            let item = line.split("/*").next().unwrap_or_default().trim();
            let item = item.trim_end_matches(',').trim();
            if item.is_empty() {
                continue;
            }
            let (name, value) = match item.split_once('=') {
                Some((n, v)) => (n.trim(), v.trim().parse().expect("enum value")),
                None => (item, next),
            };
            out.push((name.to_string(), value));
            next = value + 1;
        }
        out
    }

    #[test]
    fn constants_match_c() {
        assert_eq!(u64::from(ABI_VERSION), c("ACCEL_ABI_VERSION"));
        assert_eq!(u64::from(TCPOPT_KIND), c("ACCEL_TCPOPT_KIND"));
        assert_eq!(u64::from(TCPOPT_EXID), c("ACCEL_TCPOPT_EXID"));
        assert_eq!(u64::from(TCPOPT_LEN), c("ACCEL_TCPOPT_LEN"));
        assert_eq!(u64::from(ROLE_ACTIVE), c("ACCEL_ROLE_ACTIVE"));
        assert_eq!(u64::from(ROLE_PASSIVE), c("ACCEL_ROLE_PASSIVE"));
        assert_eq!(u64::from(DECISION_UNDECIDED), c("ACCEL_DECISION_UNDECIDED"));
        assert_eq!(u64::from(DECISION_REDIRECT), c("ACCEL_DECISION_REDIRECT"));
        assert_eq!(u64::from(DECISION_TCP), c("ACCEL_DECISION_TCP"));
        assert_eq!(u64::from(DECISION_TCP_FLOW), c("ACCEL_DECISION_TCP_FLOW"));
        assert_eq!(u64::from(REASON_FLOW), c("ACCEL_REASON_FLOW"));
        assert_eq!(u64::from(REASON_NONE), c("ACCEL_REASON_NONE"));
        assert_eq!(u64::from(REASON_UNPAIRED), c("ACCEL_REASON_UNPAIRED"));
        assert_eq!(u64::from(REASON_PASSTHROUGH), c("ACCEL_REASON_PASSTHROUGH"));
        assert_eq!(u64::from(REASON_PEER_GONE), c("ACCEL_REASON_PEER_GONE"));
        assert_eq!(u64::from(SF_OPT_PENDING), c("ACCEL_SF_OPT_PENDING"));
        assert_eq!(u64::from(SF_APP_GUARDED), c("ACCEL_SF_APP_GUARDED"));
        assert_eq!(u64::from(SF_PROVEN), c("ACCEL_SF_PROVEN"));
        assert_eq!(u64::from(SF_LEAVING), c("ACCEL_SF_LEAVING"));
        assert_eq!(u64::from(SF_RX_ONLY), c("ACCEL_SF_RX_ONLY"));
        assert_eq!(u64::from(SF_PEER_RX_ONLY), c("ACCEL_SF_PEER_RX_ONLY"));
        assert_eq!(u64::from(PAIR_F_RX_ONLY), c("ACCEL_PAIR_F_RX_ONLY"));
        assert_eq!(u64::from(REASON_BLOCKING), c("ACCEL_REASON_BLOCKING"));
        assert_eq!(
            u64::from(REASON_APP_READS_TCP),
            c("ACCEL_REASON_APP_READS_TCP")
        );
        assert_eq!(u64::from(INGRESS_OPEN), c("ACCEL_INGRESS_OPEN"));
        assert_eq!(u64::from(INGRESS_CLOSED), c("ACCEL_INGRESS_CLOSED"));
        assert_eq!(
            u64::from(INGRESS_UNLESS_BLOCKING),
            c("ACCEL_INGRESS_UNLESS_BLOCKING")
        );
        assert_eq!(u64::from(READER_BLOCKING), c("ACCEL_READER_BLOCKING"));
        assert_eq!(
            u64::from(READER_REDIRECTED_TO),
            c("ACCEL_READER_REDIRECTED_TO")
        );
        assert_eq!(u64::from(READER_LEAVING), c("ACCEL_READER_LEAVING"));
        assert_eq!(u64::from(READER_LEAVE_SEEN), c("ACCEL_READER_LEAVE_SEEN"));
        assert_eq!(u64::from(STREAM_PROXY), c("ACCEL_STREAM_PROXY"));
        assert_eq!(u64::from(STREAM_PEER_PROXY), c("ACCEL_STREAM_PEER_PROXY"));
        assert_eq!(u64::from(STREAM_LEAVING), c("ACCEL_STREAM_LEAVING"));
        assert_eq!(u64::from(STREAM_LEFT), c("ACCEL_STREAM_LEFT"));
        assert_eq!(u64::from(STREAM_COUNTED), c("ACCEL_STREAM_COUNTED"));
        assert_eq!(u64::from(PAIR_F_PROXY), c("ACCEL_PAIR_F_PROXY"));
        assert_eq!(u64::from(REASON_STREAM), c("ACCEL_REASON_STREAM"));
        assert_eq!(
            u64::from(REASON_PEER_LEAVING),
            c("ACCEL_REASON_PEER_LEAVING")
        );
        assert_eq!(u64::from(REASON_CLAIM_FULL), c("ACCEL_REASON_CLAIM_FULL"));
        assert_eq!(u64::from(HELD_BLOCKING), c("ACCEL_HELD_BLOCKING"));
        assert_eq!(u64::from(HELD_NO_FILE), c("ACCEL_HELD_NO_FILE"));
        assert_eq!(u64::from(HELD_APP_READS_TCP), c("ACCEL_HELD_APP_READS_TCP"));
        assert_eq!(
            u64::from(EP_APP_NONBLOCKING_ONLY),
            c("ACCEL_EP_APP_NONBLOCKING_ONLY")
        );
        assert_eq!(u64::from(EP_APP_SEND_ONLY), c("ACCEL_EP_APP_SEND_ONLY"));
        assert_eq!(u64::from(PAIR_OFFER), c("ACCEL_PAIR_OFFER"));
        assert_eq!(u64::from(PAIR_ANSWER), c("ACCEL_PAIR_ANSWER"));
        assert_eq!(u64::from(MODE_ACCELERATE), c("ACCEL_MODE_ACCELERATE"));
        assert_eq!(u64::from(MODE_PASSTHROUGH), c("ACCEL_MODE_PASSTHROUGH"));
        assert_eq!(u64::from(EP_MESHED), c("ACCEL_EP_MESHED"));
        assert_eq!(u64::from(EP_PROXY_ONLY), c("ACCEL_EP_PROXY_ONLY"));
        assert_eq!(
            u64::from(CFG_LOOPBACK_MESHED_ONLY),
            c("ACCEL_CFG_LOOPBACK_MESHED_ONLY")
        );
        assert_eq!(u64::from(DIR_INBOUND), c("ACCEL_DIR_INBOUND"));
        assert_eq!(u64::from(DIR_OUTBOUND), c("ACCEL_DIR_OUTBOUND"));
        assert_eq!(u64::from(STATS_SLOTS), c("ACCEL_STATS_SLOTS"));
    }

    #[test]
    fn stats_match_c() {
        let c_stats = c_stats();
        let (count, slots) = c_stats.split_last().expect("enum accel_stat is empty");
        for (stat, (c_name, c_value)) in Stat::ALL.iter().zip(slots) {
            assert_eq!(u64::from(*stat as u32), *c_value, "{c_name}");
            // ACCEL_STAT_FOO_BAR <-> Stat::FooBar: compare names loosely.
            let c_name = c_name.trim_start_matches("ACCEL_STAT_").to_lowercase();
            let rust_name = format!("{stat:?}").to_lowercase();
            assert_eq!(c_name.replace('_', ""), rust_name, "slot {c_value}");
        }
        assert_eq!(slots.len(), Stat::ALL.len(), "counters in C and in Rust");
        assert_eq!(
            count,
            &("ACCEL_STAT_COUNT".to_string(), Stat::ALL.len() as u64)
        );
        assert!(count.1 <= c("ACCEL_STATS_SLOTS"));
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
