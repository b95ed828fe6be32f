//! A position-dependent byte stream per seed that is cheap to produce and to
//! check in a debug build: a shared random table (prime period, so chunk
//! boundaries never line up with it) XORed with an 8-byte key derived from
//! the seed. Two streams with different seeds differ in every 8-byte window,
//! so a misdelivered, duplicated, reordered or shifted chunk cannot match.
//!
//! The one byte pattern of the tests: the traffic tools write it, the
//! tools and the suites check it.

use std::sync::OnceLock;

/// Period of the table: prime, a little over 8 MiB.
pub const PERIOD: usize = 8_388_617;
/// Largest piece copied from the table in one go.
const SPAN: usize = 1 << 20;

fn table() -> &'static [u8] {
    static TABLE: OnceLock<Vec<u8>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = Vec::with_capacity(PERIOD + SPAN);
        let mut x: u64 = 0x243F_6A88_85A3_08D3;
        while t.len() < PERIOD {
            x = splitmix(x);
            t.extend_from_slice(&x.to_le_bytes());
        }
        t.truncate(PERIOD);
        let head = t[..SPAN].to_vec();
        t.extend_from_slice(&head);
        t
    })
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn key(seed: u64) -> [u8; 8] {
    splitmix(seed ^ 0x5851_F42D_4C95_7F2D).to_le_bytes()
}

fn phase(seed: u64) -> usize {
    (splitmix(seed) % PERIOD as u64) as usize
}

/// Writes bytes `offset..offset + buf.len()` of stream `seed` into `buf`.
pub fn fill(seed: u64, offset: u64, buf: &mut [u8]) {
    let t = table();
    let k = key(seed);
    let mut pos = ((phase(seed) as u64 + offset) % PERIOD as u64) as usize;
    let mut done = 0;
    while done < buf.len() {
        let n = (buf.len() - done).min(SPAN);
        buf[done..done + n].copy_from_slice(&t[pos..pos + n]);
        done += n;
        pos = (pos + n) % PERIOD;
    }
    // XOR the key word-wise once the stream offset is 8-aligned.
    let head = ((8 - (offset % 8) as usize) % 8).min(buf.len());
    for (i, b) in buf[..head].iter_mut().enumerate() {
        *b ^= k[((offset + i as u64) % 8) as usize];
    }
    let kw = u64::from_le_bytes(k);
    let mut words = buf[head..].chunks_exact_mut(8);
    for w in &mut words {
        let v = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]) ^ kw;
        w.copy_from_slice(&v.to_le_bytes());
    }
    for (i, b) in words.into_remainder().iter_mut().enumerate() {
        *b ^= k[i % 8];
    }
}

/// A fresh vector with bytes `offset..offset + len` of stream `seed`.
pub fn bytes(seed: u64, offset: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    fill(seed, offset, &mut v);
    v
}

/// Checks `data` against stream `seed` at `offset`; on a mismatch returns
/// the index of the first differing byte. `scratch` is reused between calls.
pub fn check(seed: u64, offset: u64, data: &[u8], scratch: &mut Vec<u8>) -> Result<(), usize> {
    scratch.resize(data.len(), 0);
    fill(seed, offset, scratch);
    if scratch[..] == *data {
        Ok(())
    } else {
        Err(data
            .iter()
            .zip(scratch.iter())
            .position(|(a, b)| a != b)
            .unwrap_or(0))
    }
}

/// The SHA-256 of `data`, in lowercase hex (the tools' reports carry it).
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Tiny deterministic RNG for message sizes and split points.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(splitmix(seed ^ 0xD1B5_4A32_D192_ED03))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = splitmix(self.0);
        self.0
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    /// Log-uniform in `1..=max`: every order of magnitude equally likely,
    /// so 1-byte and multi-MiB messages both occur.
    pub fn log_size(&mut self, max: u64) -> u64 {
        let bits = 64 - max.leading_zeros() as u64;
        let b = self.range(0, bits.saturating_sub(1));
        let lo = 1u64 << b;
        let hi = ((1u64 << (b + 1)) - 1).min(max);
        self.range(lo, hi.max(lo))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_match_the_whole_and_seeds_differ() {
        let whole = bytes(7, 3, 3 << 20);
        let mut scratch = Vec::new();
        let mut off = 0usize;
        let mut rng = Rng::new(1);
        while off < whole.len() {
            let n = (rng.log_size(1 << 20) as usize).min(whole.len() - off);
            assert_eq!(
                check(7, 3 + off as u64, &whole[off..off + n], &mut scratch),
                Ok(())
            );
            off += n;
        }
        assert!(check(8, 3, &whole[..64], &mut scratch).is_err());
        assert!(check(7, 4, &whole[..64], &mut scratch).is_err());
    }
}
