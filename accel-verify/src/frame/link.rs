//! Link layer: [`LinkType`], the ARPHRD/EtherType constants, and the
//! Ethernet (and loopback pseudo-Ethernet) parser with its VLAN tag walk.

use super::ip::{parse_ipv4, parse_ipv6};
use super::{FrameError, TcpSegment, be16};

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
