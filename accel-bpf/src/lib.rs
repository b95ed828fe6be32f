//! The sockmap datapath: BPF objects compiled from `src/bpf/*.bpf.c` by
//! build.rs, and the Rust mirror of the ABI they share with userspace.
//!
//! The objects are embedded so the daemon is one self-contained binary.

pub mod abi;
#[cfg(test)]
mod btf;
pub mod host;
pub mod map;

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

/// The drain check for kernels that refuse tracing programs (so no
/// `iter/sockmap`): a classifier run once per sockhash key with
/// `BPF_PROG_TEST_RUN`, answering whether that socket's ingress queue is
/// empty. See [`drain_probe`] for its contract.
pub static DRAIN_PROBE_OBJ: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/drain_probe.bpf.o"));

/// Program names inside [`DATAPATH_OBJ`], [`DRAIN_OBJ`] and [`DRAIN_PROBE_OBJ`].
pub mod prog {
    pub const SOCKOPS: &str = "accel_sockops";
    pub const SK_MSG: &str = "accel_sk_msg";
    pub const DRAIN_CHECK: &str = "accel_drain_check";
    pub const DRAIN_PROBE: &str = "accel_drain_probe";
}

/// Mirror of `src/bpf/drain_probe.h`: where the key goes in the test packet
/// and what the probe's return value means (checked against the header by
/// a unit test).
pub mod drain_probe {
    /// The key follows an Ethernet header's worth of bytes: a classifier
    /// test run refuses shorter packets.
    pub const KEY_OFFSET: usize = 14;
    pub const EMPTY: u32 = 0;
    pub const PENDING: u32 = 1;
    pub const GONE: u32 = 2;
    pub const UNREADABLE: u32 = 3;
    pub const BAD_INPUT: u32 = 4;

    /// The test packet that asks about `key`.
    pub fn packet(key: u64) -> [u8; KEY_OFFSET + 8] {
        let mut p = [0u8; KEY_OFFSET + 8];
        p[KEY_OFFSET..].copy_from_slice(&key.to_ne_bytes());
        p
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn constants_match_the_c_header() {
            let header = include_str!("bpf/drain_probe.h");
            let define = |name: &str| -> u64 {
                header
                    .lines()
                    .find_map(|l| {
                        let mut w = l.split_whitespace();
                        (w.next() == Some("#define") && w.next() == Some(name))
                            .then(|| w.next().and_then(|v| v.parse().ok()))
                            .flatten()
                    })
                    .unwrap_or_else(|| panic!("{name} missing from drain_probe.h"))
            };
            assert_eq!(define("DRAIN_PROBE_KEY_OFFSET"), KEY_OFFSET as u64);
            assert_eq!(define("DRAIN_PROBE_EMPTY"), u64::from(EMPTY));
            assert_eq!(define("DRAIN_PROBE_PENDING"), u64::from(PENDING));
            assert_eq!(define("DRAIN_PROBE_GONE"), u64::from(GONE));
            assert_eq!(define("DRAIN_PROBE_UNREADABLE"), u64::from(UNREADABLE));
            assert_eq!(define("DRAIN_PROBE_BAD_INPUT"), u64::from(BAD_INPUT));
        }

        #[test]
        fn the_key_sits_after_the_ethernet_header_in_native_order() {
            let p = packet(0x0102_0304_0506_0708);
            assert!(p[..KEY_OFFSET].iter().all(|b| *b == 0));
            assert_eq!(&p[KEY_OFFSET..], &0x0102_0304_0506_0708u64.to_ne_bytes());
        }
    }
}

/// Read-only globals the loader sets from its probes.
pub mod global {
    pub const HAVE_NETNS_COOKIE: &str = "accel_have_netns_cookie";
}
