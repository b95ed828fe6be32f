//! The sockmap datapath: BPF objects compiled from `src/bpf/*.bpf.c` by
//! build.rs, and the Rust mirror of the ABI they share with userspace.
//!
//! The objects are embedded so the daemon is one self-contained binary.

pub mod abi;

/// The datapath object: `accel_sockops` (sock_ops) and `accel_sk_msg` (sk_msg)
/// with their maps.
pub static DATAPATH_OBJ: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/datapath.bpf.o"));

/// The datapath with flow control for slow readers (CO-RE: the loader must
/// give it the kernel's BTF). Same programs, maps and ABI as [`DATAPATH_OBJ`].
pub static DATAPATH_FLOW_OBJ: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/datapath_flow.bpf.o"));

/// One tiny program per kernel capability the datapath relies on.
pub static PROBES_OBJ: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/probes.bpf.o"));

/// The unload drain check: an `iter/sockmap` program (CO-RE, needs kernel BTF)
/// that lists sockets whose ingress queue still holds redirected messages.
pub static DRAIN_OBJ: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/drain.bpf.o"));

/// Program names inside [`DATAPATH_OBJ`] and [`DRAIN_OBJ`].
pub mod prog {
    pub const SOCKOPS: &str = "accel_sockops";
    pub const SK_MSG: &str = "accel_sk_msg";
    pub const DRAIN_CHECK: &str = "accel_drain_check";
}

/// Map names inside [`DATAPATH_OBJ`] (also their pin file names).
pub mod map {
    pub const SOCKHASH: &str = "accel_sockhash";
    pub const SOCK_STATE: &str = "accel_sock_state";
    pub const PAIRING: &str = "accel_pairing";
    pub const ENDPOINTS: &str = "accel_endpoints";
    pub const CONFIG: &str = "accel_config";
    pub const STATS: &str = "accel_stats";
    pub const MESHED_NETNS: &str = "accel_meshed_netns";
    pub const EXCLUDED_PORTS: &str = "accel_excluded_ports";
    pub const EXCLUDED_CIDRS: &str = "accel_excluded_cidrs";
    pub const POD_TRAFFIC: &str = "accel_pod_traffic";
    /// Every pinned map, in the order status reports them.
    pub const ALL: [&str; 10] = [
        SOCKHASH,
        SOCK_STATE,
        PAIRING,
        ENDPOINTS,
        CONFIG,
        STATS,
        MESHED_NETNS,
        EXCLUDED_PORTS,
        EXCLUDED_CIDRS,
        POD_TRAFFIC,
    ];
}

/// Read-only globals the loader sets from its probes.
pub mod global {
    pub const HAVE_NETNS_COOKIE: &str = "accel_have_netns_cookie";
}
