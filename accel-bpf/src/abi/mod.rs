//! Rust mirror of `src/bpf/accel_abi.h`: the constants here, the counters
//! in `stats.rs`, the map key and value structs in `mirrors.rs`. The layout
//! tests (`tests.rs`) compare every struct's size and member offsets with
//! the BTF clang wrote into the built objects, and every constant and
//! counter with the header itself, so the two cannot drift apart.

mod mirrors;
mod stats;
#[cfg(test)]
mod tests;

pub use mirrors::{
    AppListenerKey, Config, Endpoint, EndpointKey, ExcludedCidrKey, ExcludedPortKey, MeshedNetns,
    PairKey, PairValue, PodHeldKey, PodPair, PodTraffic, ShortLived, SockState,
};
pub use stats::Stat;

pub const ABI_VERSION: u32 = 10;

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
/// The datapath set its `TCP_NOTSENT_LOWAT` for short TCP phases.
pub const SF_TCP_NOTSENT_SET: u8 = 64;
/// The datapath has decided, once, whether to set it.
pub const SF_TCP_PHASE_TRIED: u8 = 128;
/// The `TCP_NOTSENT_LOWAT` the datapath sets for short TCP phases.
pub const PHASE_NOTSENT_LOWAT: u32 = 65536;

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
/// The longest streak of short closes the datapath counts: the largest
/// `Config::short_lived_after`.
pub const SHORT_LIVED_STREAK_MAX: u32 = 65_535;
