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
//!
//! ## Layout
//! * `link` — [`LinkType`], link-layer constants and [`parse_ethernet`].
//! * `ip` — IPv4 and IPv6 (with its extension header walk).
//! * `tcp` — [`TcpFlags`] and the TCP header.
//! * [`build`] — frame builders for tests.

pub mod build;
mod ip;
mod link;
mod tcp;
#[cfg(test)]
mod tests;

pub use ip::MAX_IPV6_EXT_HEADERS;
pub use link::{
    ARPHRD_ETHER, ARPHRD_LOOPBACK, ARPHRD_NONE, ETHERTYPE_IPV4, ETHERTYPE_IPV6, ETHERTYPE_QINQ,
    ETHERTYPE_QINQ_OLD, ETHERTYPE_VLAN, LinkType, MAX_VLAN_TAGS, parse_ethernet,
};
pub use tcp::TcpFlags;

use std::net::SocketAddr;

use ip::{parse_ipv4, parse_ipv6};

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
