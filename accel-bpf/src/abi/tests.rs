//! Layout tests: every mirror struct against the BTF of the built objects,
//! every constant and counter against `accel_abi.h`.

use super::*;
use crate::{DATAPATH_FLOW_OBJ, DATAPATH_OBJ};
use core::mem::{offset_of, size_of, size_of_val};
use std::{collections::BTreeMap, net::IpAddr};

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
            short_lived_after,
        }),
        mirror!(SockState = "accel_sock_state" {
            token, peer_cookie, role, decision, reason, flags, local_pod, peer_pod,
            redirected_msgs, redirected_bytes, passed_msgs, passed_bytes, peer_sk,
            flow_switches, flow_unchecked, cookie, ingress, peer_ingress, stream_flags, small_run,
            peer_read_mark, small_looks, small_stalls, established_units, share_mark, share_passed_mark,
        }),
        mirror!(PairKey = "accel_pair_key" { token, stage, _pad0 }),
        mirror!(PairValue = "accel_pair_value" { cookie, netns_cookie, sk_addr, pod, ingress, flags }),
        mirror!(EndpointKey = "accel_endpoint_key" { addr }),
        mirror!(Endpoint = "accel_endpoint" { flags, pod, _pad0 }),
        mirror!(MeshedNetns = "accel_meshed_netns" { pod, flags }),
        mirror!(PodPair = "accel_pod_pair" { src, dst }),
        mirror!(PodHeldKey = "accel_pod_held_key" { pod, reason }),
        mirror!(AppListenerKey = "accel_app_listener_key" { netns_cookie, addr, port, _pad0, _pad1 }),
        mirror!(ShortLived = "accel_short_lived" { streak, attempts, last_short_ns }),
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
        let obj =
            aya_obj::Object::parse(bytes).unwrap_or_else(|e| panic!("parsing {object}.bpf.o: {e}"));
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
                "{object}.bpf.o: struct {} (member -> offset) differs from abi/mirrors.rs",
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

const HEADER: &str = include_str!("../bpf/accel_abi.h");

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
    assert_eq!(u64::from(SF_TCP_NOTSENT_SET), c("ACCEL_SF_TCP_NOTSENT_SET"));
    assert_eq!(u64::from(SF_TCP_PHASE_TRIED), c("ACCEL_SF_TCP_PHASE_TRIED"));
    assert_eq!(
        u64::from(PHASE_NOTSENT_LOWAT),
        c("ACCEL_PHASE_NOTSENT_LOWAT")
    );
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
    assert_eq!(
        u64::from(SHORT_LIVED_STREAK_MAX),
        c("ACCEL_SHORT_LIVED_STREAK_MAX")
    );
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
