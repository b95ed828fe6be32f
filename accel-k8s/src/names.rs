//! Names derived from a node's name, kept within API field limits.
//!
//! Node names may be 253 characters long; the fields the daemon fills from
//! them (an Event's name, its `reportingInstance`, 128) may be shorter. A
//! name that does not fit keeps a prefix and gets a hash of the whole, so
//! two long names that share a prefix still differ.

/// `s` itself if it has at most `max` bytes, else a prefix, `-` and 16 hex
/// digits of a hash of `s`: at most `max` bytes, and, for a DNS-1123 `s`,
/// still one (no `-` or `.` before the hash).
pub fn bounded(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let hash = format!("{:016x}", fnv1a64(s.as_bytes()));
    let keep = max.saturating_sub(hash.len() + 1);
    let mut end = keep.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let prefix = s[..end].trim_end_matches(['-', '.']);
    if prefix.is_empty() {
        return hash[..hash.len().min(max)].to_string();
    }
    format!("{prefix}-{hash}")
}

/// FNV-1a, 64 bits: stable across builds and platforms (std's hasher is not).
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 253-character DNS subdomain, as long as a node name can be.
    fn long_name(tail: char) -> String {
        let label = "a".repeat(63);
        let mut n = format!("{label}.{label}.{label}.{}", "a".repeat(60));
        n.push(tail);
        assert_eq!(n.len(), 253);
        n
    }

    #[test]
    fn short_names_are_kept_long_ones_fit_and_stay_distinct() {
        assert_eq!(bounded("node-1", 128), "node-1");
        let a = bounded(&format!("accel-daemon-{}", long_name('x')), 128);
        let b = bounded(&format!("accel-daemon-{}", long_name('y')), 128);
        assert_eq!(a.len(), 128, "{a}");
        assert!(a.starts_with("accel-daemon-aaaa"), "{a}");
        assert_ne!(a, b);
        // Same input, same output: restarts report the same instance.
        assert_eq!(a, bounded(&format!("accel-daemon-{}", long_name('x')), 128));
    }

    #[test]
    fn no_separator_is_left_before_the_hash() {
        // The cut falls right after a '-': it is dropped.
        let s = format!("{}-{}", "b".repeat(110), "c".repeat(40));
        let out = bounded(&s, 128);
        assert!(!out.contains("--"), "{out}");
        assert!(out.starts_with(&format!("{}-", "b".repeat(110))), "{out}");
        assert!(out.len() <= 128);
        assert!(
            out.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        );
        assert_eq!(bounded("ééééé", 3).len(), 3);
    }
}
