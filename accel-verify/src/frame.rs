//! Pure parser for captured frames: link layer → IPv4/IPv6 → TCP.
//!
//! The parser never allocates and never panics: every index is bounds-checked
//! through `get`-based helpers that return `None` instead of slicing past
//! the end. It is the only authority on what a packet is — the kernel socket
//! filter installed by [`crate::capture`] is merely an optimization and the
//! parser re-checks everything it assumed.
//!
//! Lengths are taken from the IP headers, not from the captured length, so a
//! frame truncated by a snap length still reports the real payload length.
//! The exceptions are an IPv4 total length of 0 and an IPv6 payload length of
//! 0: Linux uses those for TSO/GSO and BIG TCP super-packets seen by taps, and
//! there the captured length is the only length there is.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Link-layer framing of the captured bytes, derived from the interface's
/// ARPHRD type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkType {
    /// `ARPHRD_ETHER` (veth, bridge, physical NICs): a real Ethernet header.
    Ethernet,
    /// `ARPHRD_LOOPBACK` (`lo`): Linux hands packet sockets a 14-byte
    /// Ethernet-shaped header with zeroed MACs and a real EtherType, so it is
    /// parsed exactly like Ethernet; kept distinct for reporting and because
    /// loopback needs outgoing-copy de-duplication.
    Loopback,
    /// Devices without a link header (`ARPHRD_NONE`: tun, wireguard): the
    /// frame starts at the IP header.
    RawIp,
}

impl LinkType {
    /// Maps a Linux `ARPHRD_*` value to a supported link type.
    pub fn from_arphrd(hatype: u16) -> Option<LinkType> {
        match hatype {
            ARPHRD_ETHER => Some(LinkType::Ethernet),
            ARPHRD_LOOPBACK => Some(LinkType::Loopback),
            ARPHRD_NONE => Some(LinkType::RawIp),
            _ => None,
        }
    }
}

/// `ARPHRD_ETHER` from `<linux/if_arp.h>`.
pub const ARPHRD_ETHER: u16 = 1;
/// `ARPHRD_LOOPBACK` from `<linux/if_arp.h>`.
pub const ARPHRD_LOOPBACK: u16 = 772;
/// `ARPHRD_NONE` from `<linux/if_arp.h>`.
pub const ARPHRD_NONE: u16 = 0xFFFE;

/// EtherType of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType of IPv6.
pub const ETHERTYPE_IPV6: u16 = 0x86DD;
/// EtherType of an 802.1Q customer VLAN tag.
pub const ETHERTYPE_VLAN: u16 = 0x8100;
/// EtherType of an 802.1ad service VLAN tag (QinQ outer tag).
pub const ETHERTYPE_QINQ: u16 = 0x88A8;
/// Pre-standard QinQ tag still emitted by some switches.
pub const ETHERTYPE_QINQ_OLD: u16 = 0x9100;

/// Maximum number of stacked VLAN tags we walk before giving up.
pub const MAX_VLAN_TAGS: usize = 4;
/// Maximum number of IPv6 extension headers we walk before giving up; real
/// traffic has at most a handful, an unbounded walk would let a crafted
/// packet make us loop over the whole frame.
pub const MAX_IPV6_EXT_HEADERS: usize = 8;

const IPPROTO_HOPOPTS: u8 = 0;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_ROUTING: u8 = 43;
const IPPROTO_FRAGMENT: u8 = 44;
const IPPROTO_AH: u8 = 51;
const IPPROTO_DSTOPTS: u8 = 60;

/// TCP header flags (the low 8 bits of byte 13; NS is ignored).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    /// FIN flag bit.
    pub const FIN: u8 = 0x01;
    /// SYN flag bit.
    pub const SYN: u8 = 0x02;
    /// RST flag bit.
    pub const RST: u8 = 0x04;
    /// PSH flag bit.
    pub const PSH: u8 = 0x08;
    /// ACK flag bit.
    pub const ACK: u8 = 0x10;
    /// URG flag bit.
    pub const URG: u8 = 0x20;

    fn has(self, bit: u8) -> bool {
        self.0 & bit != 0
    }
    /// FIN set.
    pub fn fin(self) -> bool {
        self.has(Self::FIN)
    }
    /// SYN set.
    pub fn syn(self) -> bool {
        self.has(Self::SYN)
    }
    /// RST set.
    pub fn rst(self) -> bool {
        self.has(Self::RST)
    }
    /// PSH set.
    pub fn psh(self) -> bool {
        self.has(Self::PSH)
    }
    /// ACK set.
    pub fn ack(self) -> bool {
        self.has(Self::ACK)
    }
}

impl std::fmt::Display for TcpFlags {
    /// tcpdump-style flag string, e.g. `S.` for SYN-ACK, `P.` for PSH-ACK.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (bit, c) in [
            (Self::SYN, 'S'),
            (Self::FIN, 'F'),
            (Self::PSH, 'P'),
            (Self::RST, 'R'),
            (Self::URG, 'U'),
        ] {
            if self.has(bit) {
                write!(f, "{c}")?;
            }
        }
        if self.ack() {
            write!(f, ".")?;
        }
        if self.0 & (Self::SYN | Self::FIN | Self::PSH | Self::RST | Self::URG | Self::ACK) == 0 {
            write!(f, "none")?;
        }
        Ok(())
    }
}

/// One parsed TCP segment. Plain data, `Copy`, no borrowed bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpSegment {
    /// Source address and port.
    pub src: SocketAddr,
    /// Destination address and port.
    pub dst: SocketAddr,
    /// TCP flags.
    pub flags: TcpFlags,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number.
    pub ack: u32,
    /// TCP header length in bytes (data offset × 4).
    pub tcp_header_len: u16,
    /// TCP payload length in bytes, from the IP length fields (see module docs).
    pub payload_len: u32,
    /// Number of VLAN tags that were skipped on the way in.
    pub vlan_tags: u8,
    /// True when the IP header declares more bytes than were captured.
    pub truncated: bool,
}

/// Why a frame did not yield a TCP segment. Some variants are ordinary
/// "not for us" outcomes (ARP, UDP, later fragments), others mean the bytes
/// are malformed; callers typically just count them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Fewer bytes than the named header needs.
    #[error("truncated {0} header")]
    Truncated(&'static str),
    /// EtherType is not IPv4/IPv6 (or is an 802.3 length field).
    #[error("not IP (ethertype {0:#06x})")]
    NotIp(u16),
    /// More stacked VLAN tags than [`MAX_VLAN_TAGS`].
    #[error("too many VLAN tags")]
    TooManyVlanTags,
    /// IP version nibble does not match the EtherType (or is neither 4 nor 6).
    #[error("bad IP version {0}")]
    BadIpVersion(u8),
    /// IPv4 IHL below 5 or larger than the captured bytes.
    #[error("bad IPv4 header length {0}")]
    BadIhl(u8),
    /// IP length fields inconsistent with header sizes.
    #[error("bogus IP length field")]
    BadLength,
    /// A fragment other than the first: it carries no TCP header.
    #[error("non-first IP fragment")]
    NonFirstFragment,
    /// IPv6 extension header chain longer than [`MAX_IPV6_EXT_HEADERS`].
    #[error("IPv6 extension header chain too long")]
    TooManyExtHeaders,
    /// The transport protocol is not TCP (protocol number given).
    #[error("not TCP (protocol {0})")]
    NotTcp(u8),
    /// TCP data offset below 5 or beyond the segment.
    #[error("bad TCP data offset {0}")]
    BadDataOffset(u8),
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([s[0], s[1]]))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

/// Parses one captured frame of the given link type into a TCP segment.
pub fn parse(link: LinkType, frame: &[u8]) -> Result<TcpSegment, FrameError> {
    match link {
        LinkType::Ethernet | LinkType::Loopback => parse_ethernet(frame),
        LinkType::RawIp => {
            let version = frame.first().ok_or(FrameError::Truncated("ip"))? >> 4;
            match version {
                4 => parse_ipv4(frame, 0),
                6 => parse_ipv6(frame, 0),
                v => Err(FrameError::BadIpVersion(v)),
            }
        }
    }
}

/// Parses an Ethernet (or loopback pseudo-Ethernet) frame, skipping up to
/// [`MAX_VLAN_TAGS`] 802.1Q / 802.1ad tags.
pub fn parse_ethernet(frame: &[u8]) -> Result<TcpSegment, FrameError> {
    let mut ethertype = be16(frame, 12).ok_or(FrameError::Truncated("ethernet"))?;
    let mut off = 14usize;
    let mut tags = 0u8;
    while matches!(
        ethertype,
        ETHERTYPE_VLAN | ETHERTYPE_QINQ | ETHERTYPE_QINQ_OLD
    ) {
        if usize::from(tags) >= MAX_VLAN_TAGS {
            return Err(FrameError::TooManyVlanTags);
        }
        // Tag layout: TCI (2 bytes) then the next EtherType.
        ethertype = be16(frame, off + 2).ok_or(FrameError::Truncated("vlan"))?;
        off += 4;
        tags += 1;
    }
    let ip = frame.get(off..).ok_or(FrameError::Truncated("ip"))?;
    let mut seg = match ethertype {
        ETHERTYPE_IPV4 => parse_ipv4(ip, 4),
        ETHERTYPE_IPV6 => parse_ipv6(ip, 6),
        other => Err(FrameError::NotIp(other)),
    }?;
    seg.vlan_tags = tags;
    Ok(seg)
}

/// Parses an IPv4 packet starting at `ip[0]`. `expect_version` of 0 skips the
/// version/EtherType consistency check (raw-IP links infer it from the nibble).
fn parse_ipv4(ip: &[u8], expect_version: u8) -> Result<TcpSegment, FrameError> {
    let b0 = *ip.first().ok_or(FrameError::Truncated("ipv4"))?;
    if b0 >> 4 != 4 || (expect_version != 0 && expect_version != 4) {
        return Err(FrameError::BadIpVersion(b0 >> 4));
    }
    if ip.len() < 20 {
        return Err(FrameError::Truncated("ipv4"));
    }
    let ihl = b0 & 0x0f;
    let hlen = usize::from(ihl) * 4;
    if ihl < 5 || hlen > ip.len() {
        return Err(FrameError::BadIhl(ihl));
    }
    let declared = usize::from(be16(ip, 2).ok_or(FrameError::Truncated("ipv4"))?);
    // 0 = TSO/BIG TCP super-packet: the real length is whatever was captured.
    let total = if declared == 0 { ip.len() } else { declared };
    if total < hlen {
        return Err(FrameError::BadLength);
    }
    let frag = be16(ip, 6).ok_or(FrameError::Truncated("ipv4"))?;
    if frag & 0x1fff != 0 {
        return Err(FrameError::NonFirstFragment);
    }
    let proto = ip[9];
    if proto != IPPROTO_TCP {
        return Err(FrameError::NotTcp(proto));
    }
    let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    parse_tcp(
        &ip[hlen..],
        total - hlen,
        total > ip.len(),
        IpAddr::V4(src),
        IpAddr::V4(dst),
    )
}

/// Parses an IPv6 packet, walking a bounded chain of extension headers.
fn parse_ipv6(ip: &[u8], expect_version: u8) -> Result<TcpSegment, FrameError> {
    let b0 = *ip.first().ok_or(FrameError::Truncated("ipv6"))?;
    if b0 >> 4 != 6 || (expect_version != 0 && expect_version != 6) {
        return Err(FrameError::BadIpVersion(b0 >> 4));
    }
    if ip.len() < 40 {
        return Err(FrameError::Truncated("ipv6"));
    }
    let declared = usize::from(be16(ip, 4).ok_or(FrameError::Truncated("ipv6"))?);
    // 0 = jumbogram / BIG TCP: the captured length is authoritative.
    let payload_total = if declared == 0 {
        ip.len() - 40
    } else {
        declared
    };
    let truncated = 40 + payload_total > ip.len();
    let mut src = [0u8; 16];
    let mut dst = [0u8; 16];
    src.copy_from_slice(&ip[8..24]);
    dst.copy_from_slice(&ip[24..40]);

    let mut next = ip[6];
    let mut off = 40usize;
    let mut walked = 0usize;
    loop {
        match next {
            IPPROTO_TCP => break,
            IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS | IPPROTO_FRAGMENT | IPPROTO_AH => {
                walked += 1;
                if walked > MAX_IPV6_EXT_HEADERS {
                    return Err(FrameError::TooManyExtHeaders);
                }
                let h = ip
                    .get(off..off + 8)
                    .ok_or(FrameError::Truncated("ipv6 ext"))?;
                let len = match next {
                    IPPROTO_FRAGMENT => {
                        // Fragment offset is the top 13 bits of bytes 2..4.
                        let frag_off = u16::from_be_bytes([h[2], h[3]]) >> 3;
                        if frag_off != 0 {
                            return Err(FrameError::NonFirstFragment);
                        }
                        8
                    }
                    // AH length is in 4-octet units minus 2 (RFC 4302).
                    IPPROTO_AH => (usize::from(h[1]) + 2) * 4,
                    // Other ext headers: 8-octet units not counting the first 8.
                    _ => (usize::from(h[1]) + 1) * 8,
                };
                next = h[0];
                off += len;
                if off > 40 + payload_total {
                    return Err(FrameError::BadLength);
                }
            }
            other => return Err(FrameError::NotTcp(other)),
        }
    }
    let tcp = ip.get(off..).ok_or(FrameError::Truncated("tcp"))?;
    parse_tcp(
        tcp,
        40 + payload_total - off,
        truncated,
        IpAddr::V6(Ipv6Addr::from(src)),
        IpAddr::V6(Ipv6Addr::from(dst)),
    )
}

/// Parses the TCP header. `seg_len` is the TCP header + payload length
/// declared by the IP layer; `tcp` holds whatever of it was captured.
fn parse_tcp(
    tcp: &[u8],
    seg_len: usize,
    truncated: bool,
    src: IpAddr,
    dst: IpAddr,
) -> Result<TcpSegment, FrameError> {
    if tcp.len() < 20 || seg_len < 20 {
        return Err(FrameError::Truncated("tcp"));
    }
    let doff = tcp[12] >> 4;
    let hlen = usize::from(doff) * 4;
    if doff < 5 || hlen > seg_len {
        return Err(FrameError::BadDataOffset(doff));
    }
    let sport = be16(tcp, 0).ok_or(FrameError::Truncated("tcp"))?;
    let dport = be16(tcp, 2).ok_or(FrameError::Truncated("tcp"))?;
    let seq = be32(tcp, 4).ok_or(FrameError::Truncated("tcp"))?;
    let ack = be32(tcp, 8).ok_or(FrameError::Truncated("tcp"))?;
    let payload_len = u32::try_from(seg_len - hlen).map_err(|_| FrameError::BadLength)?;
    Ok(TcpSegment {
        src: SocketAddr::new(src, sport),
        dst: SocketAddr::new(dst, dport),
        flags: TcpFlags(tcp[13]),
        seq,
        ack,
        // hlen ≤ 60, always fits.
        tcp_header_len: hlen as u16,
        payload_len,
        vlan_tags: 0,
        truncated,
    })
}

/// Helpers that build well-formed frames; used by this crate's tests and
/// handy for callers' tests (e.g. feeding synthetic traffic to a
/// [`crate::conn::ConnTable`]). Checksums are left zero: nothing here
/// validates them, and a capture on `lo` sees unchecksummed packets anyway.
pub mod build {
    use std::net::{IpAddr, SocketAddr};

    /// Options for [`tcp_frame`].
    #[derive(Debug, Clone)]
    pub struct FrameSpec {
        /// Source endpoint.
        pub src: SocketAddr,
        /// Destination endpoint (must be the same address family as `src`).
        pub dst: SocketAddr,
        /// TCP flags byte.
        pub flags: u8,
        /// Sequence number.
        pub seq: u32,
        /// TCP payload length (filled with `0xAB`).
        pub payload_len: usize,
        /// TCP option bytes (padded to a multiple of 4).
        pub tcp_options: Vec<u8>,
        /// IPv4 option bytes (padded to a multiple of 4).
        pub ipv4_options: Vec<u8>,
        /// VLAN TPIDs to insert, outermost first (e.g. `[0x88a8, 0x8100]`).
        pub vlan_tpids: Vec<u16>,
        /// Raw IPv6 extension headers as `(protocol number, bytes)`; the
        /// next-header byte of each is patched in.
        pub ipv6_ext: Vec<(u8, Vec<u8>)>,
    }

    impl FrameSpec {
        /// A plain segment with no options, tags or extension headers.
        pub fn new(src: SocketAddr, dst: SocketAddr, flags: u8, payload_len: usize) -> Self {
            FrameSpec {
                src,
                dst,
                flags,
                seq: 1000,
                payload_len,
                tcp_options: Vec::new(),
                ipv4_options: Vec::new(),
                vlan_tpids: Vec::new(),
                ipv6_ext: Vec::new(),
            }
        }
    }

    fn pad4(mut v: Vec<u8>) -> Vec<u8> {
        while !v.len().is_multiple_of(4) {
            v.push(0);
        }
        v
    }

    /// Builds an Ethernet frame (zero MACs, like `lo`) carrying the segment.
    ///
    /// # Panics
    /// If `src`/`dst` families differ — a test-construction bug.
    pub fn tcp_frame(spec: &FrameSpec) -> Vec<u8> {
        let topts = pad4(spec.tcp_options.clone());
        let mut tcp = Vec::new();
        tcp.extend_from_slice(&spec.src.port().to_be_bytes());
        tcp.extend_from_slice(&spec.dst.port().to_be_bytes());
        tcp.extend_from_slice(&spec.seq.to_be_bytes());
        tcp.extend_from_slice(&0u32.to_be_bytes());
        tcp.push((((20 + topts.len()) / 4) as u8) << 4);
        tcp.push(spec.flags);
        tcp.extend_from_slice(&[0xff, 0xff, 0, 0, 0, 0]);
        tcp.extend_from_slice(&topts);
        tcp.extend(std::iter::repeat_n(0xABu8, spec.payload_len));

        let (ethertype, ip) = match (spec.src.ip(), spec.dst.ip()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let iopts = pad4(spec.ipv4_options.clone());
                let hlen = 20 + iopts.len();
                let mut ip = vec![0x40 | (hlen / 4) as u8, 0];
                ip.extend_from_slice(&((hlen + tcp.len()) as u16).to_be_bytes());
                ip.extend_from_slice(&[0, 1, 0x40, 0, 64, 6, 0, 0]);
                ip.extend_from_slice(&s.octets());
                ip.extend_from_slice(&d.octets());
                ip.extend_from_slice(&iopts);
                ip.extend_from_slice(&tcp);
                (0x0800u16, ip)
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let mut ext = Vec::new();
                let first = spec.ipv6_ext.first().map_or(6, |(p, _)| *p);
                for (i, (_, bytes)) in spec.ipv6_ext.iter().enumerate() {
                    let next = spec.ipv6_ext.get(i + 1).map_or(6, |(p, _)| *p);
                    let mut b = bytes.clone();
                    if let Some(x) = b.first_mut() {
                        *x = next;
                    }
                    ext.extend_from_slice(&b);
                }
                let mut ip = vec![0x60, 0, 0, 0];
                ip.extend_from_slice(&((ext.len() + tcp.len()) as u16).to_be_bytes());
                ip.push(first);
                ip.push(64);
                ip.extend_from_slice(&s.octets());
                ip.extend_from_slice(&d.octets());
                ip.extend_from_slice(&ext);
                ip.extend_from_slice(&tcp);
                (0x86DDu16, ip)
            }
            _ => panic!("FrameSpec: mixed address families"),
        };
        let mut frame = vec![0u8; 12];
        for tpid in &spec.vlan_tpids {
            frame.extend_from_slice(&tpid.to_be_bytes());
            frame.extend_from_slice(&[0x00, 0x64]); // VID 100
        }
        frame.extend_from_slice(&ethertype.to_be_bytes());
        frame.extend_from_slice(&ip);
        frame
    }
}

#[cfg(test)]
mod tests {
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
}
