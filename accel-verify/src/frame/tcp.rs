//! Transport layer: [`TcpFlags`] and the TCP header parser.

use std::net::{IpAddr, SocketAddr};

use super::{FrameError, TcpSegment, be16, be32};

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

/// Parses the TCP header. `seg_len` is the TCP header + payload length
/// declared by the IP layer; `tcp` holds whatever of it was captured.
pub(super) fn parse_tcp(
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
