//! Unit tests of the frame parser on frames from [`super::build`].

use super::build::{FrameSpec, tcp_frame};
use super::*;

fn v4(a: &str) -> SocketAddr {
    a.parse().unwrap()
}

#[test]
fn ipv4_psh_ack_exact() {
    let spec = FrameSpec::new(
        v4("10.0.0.1:40000"),
        v4("10.0.0.2:8080"),
        TcpFlags::PSH | TcpFlags::ACK,
        123,
    );
    let f = tcp_frame(&spec);
    let s = parse(LinkType::Loopback, &f).unwrap();
    assert_eq!(s.src, v4("10.0.0.1:40000"));
    assert_eq!(s.dst, v4("10.0.0.2:8080"));
    assert!(s.flags.psh() && s.flags.ack() && !s.flags.syn());
    assert_eq!(s.payload_len, 123);
    assert_eq!(s.tcp_header_len, 20);
    assert_eq!(s.seq, 1000);
    assert_eq!(s.vlan_tags, 0);
    assert!(!s.truncated);
    assert_eq!(s.flags.to_string(), "P.");
}

#[test]
fn ipv4_options_and_tcp_options() {
    let mut spec = FrameSpec::new(v4("1.2.3.4:1"), v4("5.6.7.8:2"), TcpFlags::SYN, 0);
    spec.ipv4_options = vec![1, 1, 1, 1, 1, 1, 1, 1]; // NOPs → IHL 7
    spec.tcp_options = vec![2, 4, 0x05, 0xb4, 1, 1, 4, 2]; // MSS, NOP, NOP, SACK-perm
    let f = tcp_frame(&spec);
    assert_eq!(f[14] & 0x0f, 7);
    let s = parse_ethernet(&f).unwrap();
    assert_eq!(s.tcp_header_len, 28);
    assert_eq!(s.payload_len, 0);
    assert_eq!(s.flags.to_string(), "S");
}

#[test]
fn vlan_tags_single_and_qinq() {
    let mut spec = FrameSpec::new(v4("1.1.1.1:10"), v4("2.2.2.2:20"), 0x18, 7);
    spec.vlan_tpids = vec![0x8100];
    let s = parse_ethernet(&tcp_frame(&spec)).unwrap();
    assert_eq!((s.vlan_tags, s.payload_len), (1, 7));
    spec.vlan_tpids = vec![0x88a8, 0x8100];
    let s = parse_ethernet(&tcp_frame(&spec)).unwrap();
    assert_eq!((s.vlan_tags, s.payload_len), (2, 7));
    spec.vlan_tpids = vec![0x8100; MAX_VLAN_TAGS + 1];
    assert_eq!(
        parse_ethernet(&tcp_frame(&spec)),
        Err(FrameError::TooManyVlanTags)
    );
}

#[test]
fn ipv6_plain_and_ext_chain() {
    let src: SocketAddr = "[fd00::1]:5555".parse().unwrap();
    let dst: SocketAddr = "[fd00::2]:443".parse().unwrap();
    let mut spec = FrameSpec::new(src, dst, 0x18, 1000);
    let s = parse_ethernet(&tcp_frame(&spec)).unwrap();
    assert_eq!((s.src, s.dst, s.payload_len), (src, dst, 1000));

    spec.ipv6_ext = vec![
        (0, vec![0, 0, 1, 4, 0, 0, 0, 0]), // hop-by-hop, 8 bytes
        (43, vec![0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), // routing, 16 bytes
        (44, vec![0, 0, 0, 1, 0, 0, 0, 42]), // fragment, offset 0, M=1
        (51, vec![0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), // AH, (1+2)*4 = 12 bytes
        (60, vec![0, 0, 1, 4, 0, 0, 0, 0]), // dest options
    ];
    let s = parse_ethernet(&tcp_frame(&spec)).unwrap();
    assert_eq!(s.payload_len, 1000);
    assert_eq!(s.dst, dst);
}

#[test]
fn ipv6_non_first_fragment_skipped() {
    let src: SocketAddr = "[fd00::1]:5555".parse().unwrap();
    let dst: SocketAddr = "[fd00::2]:443".parse().unwrap();
    let mut spec = FrameSpec::new(src, dst, 0x18, 10);
    spec.ipv6_ext = vec![(44, vec![0, 0, 0x00, 0x08, 0, 0, 0, 1])]; // offset 1
    assert_eq!(
        parse_ethernet(&tcp_frame(&spec)),
        Err(FrameError::NonFirstFragment)
    );
}

#[test]
fn ipv6_ext_chain_bounded() {
    let src: SocketAddr = "[::1]:1".parse().unwrap();
    let dst: SocketAddr = "[::1]:2".parse().unwrap();
    let mut spec = FrameSpec::new(src, dst, 0x10, 0);
    spec.ipv6_ext = vec![(60, vec![0, 0, 1, 4, 0, 0, 0, 0]); MAX_IPV6_EXT_HEADERS + 1];
    assert_eq!(
        parse_ethernet(&tcp_frame(&spec)),
        Err(FrameError::TooManyExtHeaders)
    );
    spec.ipv6_ext.truncate(MAX_IPV6_EXT_HEADERS);
    assert!(parse_ethernet(&tcp_frame(&spec)).is_ok());
}

#[test]
fn ipv4_non_first_fragment_and_non_tcp() {
    let spec = FrameSpec::new(v4("1.1.1.1:1"), v4("2.2.2.2:2"), 0x18, 4);
    let mut f = tcp_frame(&spec);
    f[14 + 6] = 0x00;
    f[14 + 7] = 0x10; // fragment offset 16
    assert_eq!(parse_ethernet(&f), Err(FrameError::NonFirstFragment));
    let mut f = tcp_frame(&spec);
    f[14 + 9] = 17;
    assert_eq!(parse_ethernet(&f), Err(FrameError::NotTcp(17)));
    let mut f = tcp_frame(&spec);
    f[12] = 0x08;
    f[13] = 0x06; // ARP
    assert_eq!(parse_ethernet(&f), Err(FrameError::NotIp(0x0806)));
}

#[test]
fn bogus_ihl_and_data_offset() {
    let spec = FrameSpec::new(v4("1.1.1.1:1"), v4("2.2.2.2:2"), 0x18, 4);
    for ihl in [0u8, 1, 4] {
        let mut f = tcp_frame(&spec);
        f[14] = 0x40 | ihl;
        assert_eq!(parse_ethernet(&f), Err(FrameError::BadIhl(ihl)));
    }
    let mut f = tcp_frame(&spec);
    f[14] = 0x4f; // 60-byte header in a 44-byte packet
    assert_eq!(parse_ethernet(&f), Err(FrameError::BadIhl(15)));
    // Segment is 24 bytes (20 + 4 payload): 7 and 15 overrun it.
    for doff in [0u8, 4, 7, 15] {
        let mut f = tcp_frame(&spec);
        f[14 + 20 + 12] = doff << 4;
        assert_eq!(parse_ethernet(&f), Err(FrameError::BadDataOffset(doff)));
    }
    // Total length shorter than the IP header.
    let mut f = tcp_frame(&spec);
    f[16] = 0;
    f[17] = 10;
    assert_eq!(parse_ethernet(&f), Err(FrameError::BadLength));
    // Version nibble disagrees with the EtherType.
    let mut f = tcp_frame(&spec);
    f[14] = 0x65;
    assert_eq!(parse_ethernet(&f), Err(FrameError::BadIpVersion(6)));
}

#[test]
fn snaplen_truncated_payload_uses_ip_length() {
    let spec = FrameSpec::new(v4("1.1.1.1:1"), v4("2.2.2.2:2"), 0x18, 1400);
    let f = tcp_frame(&spec);
    let s = parse_ethernet(&f[..14 + 20 + 20 + 10]).unwrap();
    assert_eq!(s.payload_len, 1400);
    assert!(s.truncated);
}

#[test]
fn tso_zero_total_length_uses_captured() {
    let spec = FrameSpec::new(v4("1.1.1.1:1"), v4("2.2.2.2:2"), 0x18, 300);
    let mut f = tcp_frame(&spec);
    f[16] = 0;
    f[17] = 0;
    assert_eq!(parse_ethernet(&f).unwrap().payload_len, 300);
}

#[test]
fn raw_ip_link() {
    let spec = FrameSpec::new(v4("1.1.1.1:1"), v4("2.2.2.2:2"), 0x18, 9);
    let f = tcp_frame(&spec);
    assert_eq!(parse(LinkType::RawIp, &f[14..]).unwrap().payload_len, 9);
    assert_eq!(LinkType::from_arphrd(772), Some(LinkType::Loopback));
    assert_eq!(LinkType::from_arphrd(1), Some(LinkType::Ethernet));
    assert_eq!(LinkType::from_arphrd(24), None);
}

#[test]
fn every_truncation_of_good_frames_is_handled() {
    let v6s: SocketAddr = "[fd00::1]:5555".parse().unwrap();
    let v6d: SocketAddr = "[fd00::2]:443".parse().unwrap();
    let mut v6 = FrameSpec::new(v6s, v6d, 0x18, 16);
    v6.ipv6_ext = vec![(0, vec![0, 0, 1, 4, 0, 0, 0, 0]), (44, vec![0; 8])];
    v6.vlan_tpids = vec![0x8100];
    let mut v4s = FrameSpec::new(v4("1.1.1.1:1"), v4("2.2.2.2:2"), 0x18, 16);
    v4s.ipv4_options = vec![1; 4];
    v4s.tcp_options = vec![1; 12];
    for f in [tcp_frame(&v6), tcp_frame(&v4s)] {
        let full = parse_ethernet(&f).unwrap();
        for cut in 0..f.len() {
            match parse_ethernet(&f[..cut]) {
                // Once the TCP base header is in, only the payload is
                // missing and the IP length still tells the truth.
                Ok(s) => {
                    assert_eq!(s.payload_len, full.payload_len);
                    assert!(s.truncated);
                }
                Err(e) => assert!(
                    matches!(e, FrameError::Truncated(_) | FrameError::BadIhl(_)),
                    "cut {cut}: {e:?}"
                ),
            }
        }
    }
}
