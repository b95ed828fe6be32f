//! Where the daemon learns which non-loopback addresses take part.
//!
//! A trait so the source can be static (flags, a file) on standalone hosts
//! and the Kubernetes API in a cluster; the datapath only sees the result.

use std::{
    collections::BTreeSet,
    fs,
    net::IpAddr,
    path::{Path, PathBuf},
};

use accel_bpf::abi::{EP_MESHED, Endpoint, EndpointKey};
use thiserror::Error;

use crate::datapath::{Datapath, DatapathError};

#[derive(Debug, Error)]
pub enum EndpointError {
    #[error("reading endpoints file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path}:{line}: {text:?} is not an IP address (one address per line, # starts a comment)"
    )]
    Parse {
        path: PathBuf,
        line: usize,
        text: String,
    },
    #[error(
        "--local-endpoint {0:?}: loopback addresses always take part; list pod or host addresses"
    )]
    Loopback(IpAddr),
}

/// A source of the local endpoints that take part in acceleration.
pub trait EndpointSource: Send {
    /// Human-readable name for logs and status.
    fn describe(&self) -> String;
    /// The full current set; the daemon applies the difference.
    fn endpoints(&mut self) -> Result<BTreeSet<IpAddr>, EndpointError>;
}

/// Addresses from `--local-endpoint` flags and an optional file, re-read on
/// every sync so an operator can edit the file without a restart.
pub struct StaticEndpoints {
    flags: BTreeSet<IpAddr>,
    file: Option<PathBuf>,
}

impl StaticEndpoints {
    pub fn new(flags: &[IpAddr], file: Option<PathBuf>) -> Result<Self, EndpointError> {
        if let Some(ip) = flags.iter().find(|ip| ip.is_loopback()) {
            return Err(EndpointError::Loopback(*ip));
        }
        let source = StaticEndpoints {
            flags: flags.iter().copied().collect(),
            file,
        };
        Ok(source)
    }
}

impl EndpointSource for StaticEndpoints {
    fn describe(&self) -> String {
        match &self.file {
            Some(f) => format!("static ({} flags, file {})", self.flags.len(), f.display()),
            None => format!("static ({} flags)", self.flags.len()),
        }
    }

    fn endpoints(&mut self) -> Result<BTreeSet<IpAddr>, EndpointError> {
        let mut all = self.flags.clone();
        if let Some(path) = &self.file {
            all.extend(parse_file(path)?);
        }
        Ok(all)
    }
}

pub fn parse_file(path: &Path) -> Result<BTreeSet<IpAddr>, EndpointError> {
    let text = fs::read_to_string(path).map_err(|source| EndpointError::Read {
        path: path.into(),
        source,
    })?;
    parse_lines(path, &text)
}

fn parse_lines(path: &Path, text: &str) -> Result<BTreeSet<IpAddr>, EndpointError> {
    let mut out = BTreeSet::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let ip: IpAddr = line.parse().map_err(|_| EndpointError::Parse {
            path: path.into(),
            line: i + 1,
            text: line.to_string(),
        })?;
        if ip.is_loopback() {
            return Err(EndpointError::Loopback(ip));
        }
        out.insert(ip);
    }
    Ok(out)
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct SyncResult {
    pub added: usize,
    pub removed: usize,
}

/// Brings the endpoint map to exactly `wanted`: adds new, removes stale.
pub fn sync(dp: &mut Datapath, wanted: &BTreeSet<IpAddr>) -> Result<SyncResult, DatapathError> {
    let current: BTreeSet<EndpointKey> = dp.endpoint_keys()?.into_iter().collect();
    let wanted_keys: BTreeSet<EndpointKey> =
        wanted.iter().map(|ip| EndpointKey::from(*ip)).collect();
    let mut result = SyncResult::default();
    for key in wanted_keys.difference(&current) {
        dp.insert_endpoint(
            *key,
            Endpoint {
                flags: EP_MESHED,
                _pad0: 0,
            },
        )?;
        result.added += 1;
    }
    for key in current.difference(&wanted_keys) {
        dp.remove_endpoint(key)?;
        result.removed += 1;
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_file_with_comments() {
        let set = parse_lines(
            Path::new("f"),
            "# pods\n10.0.0.5\n  fd00::5  # v6 pod\n\n10.0.0.5\n",
        )
        .unwrap();
        assert_eq!(set.len(), 2);
    }

    #[test]
    fn rejects_bad_lines_with_position() {
        let err = parse_lines(Path::new("f"), "10.0.0.1\nnot-an-ip\n").unwrap_err();
        assert!(err.to_string().contains("f:2"), "{err}");
        assert!(parse_lines(Path::new("f"), "127.0.0.1\n").is_err());
    }
}
