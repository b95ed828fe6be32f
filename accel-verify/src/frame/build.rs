//! Helpers that build well-formed frames; used by this crate's tests and
//! handy for callers' tests (e.g. feeding synthetic traffic to a
//! [`crate::conn::ConnTable`]). Checksums are left zero: nothing here
//! validates them, and a capture on `lo` sees unchecksummed packets anyway.

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

/// A plain segment from `src` to `dst` (`"ip:port"`), built and parsed back
/// as a capture on `lo` would see it: the unit tests' traffic.
#[cfg(test)]
pub(crate) fn loopback_segment(
    src: &str,
    dst: &str,
    flags: u8,
    payload_len: usize,
) -> super::TcpSegment {
    let spec = FrameSpec::new(
        src.parse().unwrap(),
        dst.parse().unwrap(),
        flags,
        payload_len,
    );
    super::parse(super::LinkType::Loopback, &tcp_frame(&spec)).unwrap()
}
