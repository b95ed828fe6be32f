//! A stream of captured frames (2-byte length prefix each) fed through the
//! parser into the per-connection table, as a capture session does, then
//! summarised: no frame sequence may panic or overflow a counter.
#![no_main]

use std::time::{Duration, SystemTime};

use accel_verify::{ConnTable, Filter, frame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, mut rest)) = data.split_first() else {
        return;
    };
    let link = match selector % 3 {
        0 => frame::LinkType::Ethernet,
        1 => frame::LinkType::Loopback,
        _ => frame::LinkType::RawIp,
    };
    let filter = Filter {
        port: (selector & 0x80 != 0).then_some(80),
        host: None,
    };
    let mut table = ConnTable::new("fuzz", filter);
    let mut ts = SystemTime::UNIX_EPOCH;
    while rest.len() >= 2 {
        let len = usize::from(u16::from_le_bytes([rest[0], rest[1]]));
        rest = &rest[2..];
        let take = len.min(rest.len());
        let (frame_bytes, tail) = rest.split_at(take);
        rest = tail;
        ts += Duration::from_micros(u64::from(frame_bytes.first().copied().unwrap_or(1)));
        if let Ok(seg) = frame::parse(link, frame_bytes) {
            table.observe(&seg, ts);
        }
    }
    let _ = format!("{:?}", table.filter());
});
