//! `verify --duration VALUE`: an operator-typed string.
#![no_main]

use accel_verify::parse_duration;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data)
        && let Ok(d) = parse_duration(s)
    {
        // Whatever parses must print back as a duration that parses.
        let again = parse_duration(&format!("{}us", d.as_micros()));
        assert!(again.is_ok() || d.as_micros() > u128::from(u64::MAX), "{s:?} -> {d:?}");
    }
});
