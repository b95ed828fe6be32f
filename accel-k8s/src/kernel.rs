//! Kernel release parsing and the version gate, shared by the daemon (its own
//! `uname -r`) and the installer (each node's `status.nodeInfo.kernelVersion`),
//! so both say the same thing about the same kernel.

use std::{fmt, str::FromStr};

use thiserror::Error;

/// The oldest kernel the datapath supports: header options (5.10) and
/// sk_storage in sk_msg (5.8) are both needed.
pub const MIN_RELEASE: (u32, u32) = (5, 10);

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct KernelRelease {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
    pub raw: String,
}

#[derive(Debug, Error, PartialEq, Eq)]
#[error(
    "cannot parse kernel release {0:?}: expected MAJOR.MINOR[.PATCH][-suffix], e.g. 5.10.0-32-amd64"
)]
pub struct ParseReleaseError(pub String);

impl FromStr for KernelRelease {
    type Err = ParseReleaseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseReleaseError(s.to_string());
        let trimmed = s.trim();
        // Version numbers end at the first character that is neither a digit
        // nor a dot: "6.1.0-18-cloud-amd64", "5.10.134-15.al8.x86_64".
        let end = trimmed
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(trimmed.len());
        let mut parts = trimmed[..end].split('.').filter(|p| !p.is_empty());
        let major = parts.next().and_then(|p| p.parse().ok()).ok_or_else(err)?;
        let minor = parts.next().and_then(|p| p.parse().ok()).ok_or_else(err)?;
        let patch = match parts.next() {
            Some(p) => p.parse().map_err(|_| err())?,
            None => 0,
        };
        Ok(KernelRelease {
            major,
            minor,
            patch,
            raw: trimmed.to_string(),
        })
    }
}

impl fmt::Display for KernelRelease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl KernelRelease {
    pub fn meets_minimum(&self) -> bool {
        (self.major, self.minor) >= MIN_RELEASE
    }
}

/// Why a kernel cannot carry the datapath, in the words status and preflight print.
pub fn gate_reason(release: &KernelRelease) -> Option<String> {
    (!release.meets_minimum()).then(|| {
        format!(
            "kernel {} is older than {}.{} (the datapath needs TCP header options in sock_ops)",
            release.raw, MIN_RELEASE.0, MIN_RELEASE.1
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_distribution_releases() {
        let r: KernelRelease = "5.10.0-32-cloud-amd64".parse().unwrap();
        assert_eq!((r.major, r.minor, r.patch), (5, 10, 0));
        let r: KernelRelease = "5.10.134-15.al8.x86_64".parse().unwrap();
        assert_eq!((r.major, r.minor, r.patch), (5, 10, 134));
        let r: KernelRelease = "6.18.44-fc-v595".parse().unwrap();
        assert_eq!((r.major, r.minor, r.patch), (6, 18, 44));
        let r: KernelRelease = "5.4".parse().unwrap();
        assert_eq!((r.major, r.minor, r.patch), (5, 4, 0));
        let r: KernelRelease = "4.19.0+".parse().unwrap();
        assert_eq!((r.major, r.minor), (4, 19));
    }

    #[test]
    fn rejects_garbage() {
        assert!("".parse::<KernelRelease>().is_err());
        assert!("linux".parse::<KernelRelease>().is_err());
        assert!("5".parse::<KernelRelease>().is_err());
        assert!("5.x".parse::<KernelRelease>().is_err());
    }

    #[test]
    fn gate() {
        assert!(!"5.4.0".parse::<KernelRelease>().unwrap().meets_minimum());
        assert!(!"4.19.91".parse::<KernelRelease>().unwrap().meets_minimum());
        assert!("5.10.0".parse::<KernelRelease>().unwrap().meets_minimum());
        assert!("6.1.0".parse::<KernelRelease>().unwrap().meets_minimum());
    }
}
