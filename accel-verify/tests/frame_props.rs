//! Property tests for the frame parser: it must never panic, and must parse
//! every well-formed frame we can build exactly.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use accel_verify::frame::build::{FrameSpec, tcp_frame};
use accel_verify::frame::{FrameError, LinkType, parse};
use proptest::prelude::*;

fn link() -> impl Strategy<Value = LinkType> {
    prop_oneof![
        Just(LinkType::Ethernet),
        Just(LinkType::Loopback),
        Just(LinkType::RawIp)
    ]
}

/// IPv6 extension header: (protocol, bytes) with a self-consistent length.
fn ext_header() -> impl Strategy<Value = (u8, Vec<u8>)> {
    // Byte 1 is the header's own length field, in the unit its RFC uses.
    let sized = |proto: u8, n: u8, len: usize| {
        let mut v = vec![0u8; len];
        v[1] = n;
        (proto, v)
    };
    prop_oneof![
        (prop_oneof![Just(0u8), Just(43), Just(60)], 0u8..3).prop_map(move |(p, n)| sized(
            p,
            n,
            (usize::from(n) + 1) * 8
        )),
        any::<bool>().prop_map(|more| (44u8, vec![0, 0, 0, u8::from(more), 1, 2, 3, 4])),
        (1u8..4).prop_map(move |n| sized(51, n, (usize::from(n) + 2) * 4)),
    ]
}

fn spec() -> impl Strategy<Value = FrameSpec> {
    let v4 = (any::<[u8; 4]>(), any::<[u8; 4]>())
        .prop_map(|(a, b)| (IpAddr::V4(Ipv4Addr::from(a)), IpAddr::V4(Ipv4Addr::from(b))));
    let v6 = (any::<[u8; 16]>(), any::<[u8; 16]>())
        .prop_map(|(a, b)| (IpAddr::V6(Ipv6Addr::from(a)), IpAddr::V6(Ipv6Addr::from(b))));
    (
        prop_oneof![v4, v6],
        any::<(u16, u16, u8, u32)>(),
        0usize..3000,
        proptest::collection::vec(any::<u8>(), 0..40),
        proptest::collection::vec(any::<u8>(), 0..40),
        proptest::collection::vec(prop_oneof![Just(0x8100u16), Just(0x88a8)], 0..3),
        proptest::collection::vec(ext_header(), 0..6),
    )
        .prop_map(
            |((s, d), (sp, dp, flags, seq), payload, topt, iopt, tags, ext)| {
                let mut f = FrameSpec::new(
                    SocketAddr::new(s, sp),
                    SocketAddr::new(d, dp),
                    flags,
                    payload,
                );
                f.seq = seq;
                f.tcp_options = topt;
                f.ipv4_options = iopt;
                f.vlan_tpids = tags;
                f.ipv6_ext = ext;
                f
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2000,
        // Keep regression files out of the source tree; failures print the seed.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn arbitrary_bytes_never_panic(l in link(), bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = parse(l, &bytes);
    }

    /// Arbitrary bytes behind a valid Ethernet+IP prefix reach the deeper
    /// layers, which pure random bytes rarely do.
    #[test]
    fn arbitrary_ip_bodies_never_panic(
        ethertype in prop_oneof![Just(0x0800u16), Just(0x86dd), Just(0x8100), Just(0x88a8)],
        body in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(&body);
        let _ = parse(LinkType::Loopback, &f);
        let _ = parse(LinkType::RawIp, &body);
    }

    #[test]
    fn built_frames_parse_exactly(s in spec()) {
        let frame = tcp_frame(&s);
        let seg = parse(LinkType::Loopback, &frame).unwrap();
        prop_assert_eq!(seg.src, s.src);
        prop_assert_eq!(seg.dst, s.dst);
        prop_assert_eq!(seg.flags.0, s.flags);
        prop_assert_eq!(seg.seq, s.seq);
        prop_assert_eq!(seg.payload_len as usize, s.payload_len);
        prop_assert_eq!(usize::from(seg.vlan_tags), s.vlan_tpids.len());
        prop_assert_eq!(usize::from(seg.tcp_header_len), 20 + s.tcp_options.len().div_ceil(4) * 4);
        prop_assert!(!seg.truncated);
    }

    #[test]
    fn every_truncation_never_panics_and_stays_honest(s in spec()) {
        let frame = tcp_frame(&s);
        let full = parse(LinkType::Ethernet, &frame);
        for cut in 0..frame.len() {
            if let Ok(seg) = parse(LinkType::Ethernet, &frame[..cut]) {
                prop_assert!(seg.truncated);
                if let Ok(full) = full {
                    prop_assert_eq!(seg.payload_len, full.payload_len);
                }
            }
        }
    }

    #[test]
    fn corrupted_headers_never_panic(s in spec(), flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
        let mut frame = tcp_frame(&s);
        // Corrupt only the first 120 bytes: that's where every header lives.
        let span = frame.len().min(120);
        for (at, v) in flips {
            frame[at % span] = v;
        }
        if let Ok(seg) = parse(LinkType::Ethernet, &frame) {
            // Whatever got through, lengths stay within what IP can declare
            // (plus the captured length for the 0-length TSO/jumbo case).
            prop_assert!(seg.payload_len as usize <= 65535usize.max(frame.len()));
            prop_assert!((20..=60).contains(&seg.tcp_header_len));
        }
    }

    #[test]
    fn bogus_ihl_and_data_offset_rejected(ihl in 0u8..16, doff in 0u8..16, payload in 0usize..8) {
        let s = FrameSpec::new("1.2.3.4:1".parse().unwrap(), "5.6.7.8:2".parse().unwrap(), 0x18, payload);
        let mut f = tcp_frame(&s);
        f[14] = 0x40 | ihl;
        f[14 + 20 + 12] = doff << 4;
        let seg_len = 20 + payload;
        match parse(LinkType::Ethernet, &f) {
            Ok(seg) => {
                prop_assert_eq!(ihl, 5);
                prop_assert!(doff >= 5 && usize::from(doff) * 4 <= seg_len);
                prop_assert_eq!(seg.payload_len as usize, seg_len - usize::from(doff) * 4);
            }
            Err(FrameError::BadIhl(x)) => {
                prop_assert_eq!(x, ihl);
                prop_assert!(x < 5 || usize::from(x) * 4 > f.len() - 14);
            }
            // With the right IHL, the data offset is the only thing wrong.
            Err(FrameError::BadDataOffset(x)) if ihl == 5 => {
                prop_assert!(x < 5 || usize::from(x) * 4 > seg_len);
            }
            // A wrong IHL shifts where TCP is read from; any error is fine.
            Err(e) => prop_assert!(ihl != 5, "ihl 5 doff {} gave {:?}", doff, e),
        }
    }
}
