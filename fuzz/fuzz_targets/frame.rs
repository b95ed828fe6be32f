//! One captured frame of any supported link type, as `accel-daemon verify`
//! reads it from a packet socket: the bytes are whatever the network sent.
#![no_main]

use accel_verify::frame::{self, LinkType};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    let link = match selector % 3 {
        0 => LinkType::Ethernet,
        1 => LinkType::Loopback,
        _ => LinkType::RawIp,
    };
    if let Ok(seg) = frame::parse(link, bytes) {
        // A header longer than the captured bytes is only possible in a
        // frame cut short by the snap length, which must then say so.
        assert!(seg.truncated || usize::from(seg.tcp_header_len) <= bytes.len());
        assert!(seg.tcp_header_len >= 20 && seg.tcp_header_len <= 60);
        assert!(usize::from(seg.vlan_tags) <= frame::MAX_VLAN_TAGS);
    }
});
