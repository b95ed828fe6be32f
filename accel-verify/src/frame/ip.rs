//! Network layer: IPv4 and IPv6 header parsing, including the bounded walk
//! over IPv6 extension headers.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::tcp::parse_tcp;
use super::{FrameError, TcpSegment, be16};

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

/// Parses an IPv4 packet starting at `ip[0]`. `expect_version` of 0 skips the
/// version/EtherType consistency check (raw-IP links infer it from the nibble).
pub(super) fn parse_ipv4(ip: &[u8], expect_version: u8) -> Result<TcpSegment, FrameError> {
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
pub(super) fn parse_ipv6(ip: &[u8], expect_version: u8) -> Result<TcpSegment, FrameError> {
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
