//! Sizes as the command line and the result labels write them.

/// A size in bytes: a number, with a K or M suffix for KiB or MiB.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let (num, mul) = match s.chars().last() {
        Some('k' | 'K') => (&s[..s.len() - 1], 1024),
        Some('m' | 'M') => (&s[..s.len() - 1], 1024 * 1024),
        _ => (s, 1),
    };
    let n: usize = num.parse().map_err(|e| format!("bad size {s:?}: {e}"))?;
    if n == 0 {
        return Err("size must be > 0".into());
    }
    Ok(n * mul)
}
