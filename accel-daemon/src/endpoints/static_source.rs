//! The static source: `--local-endpoint` flags, the endpoints file (one
//! address per line) and the pods file, re-read on every sync.

use std::{
    collections::BTreeSet,
    fs,
    net::IpAddr,
    path::{Path, PathBuf},
};

use super::{EndpointError, EndpointSource, LocalEndpoint, Snapshot};

/// Addresses from `--local-endpoint` flags and `--local-endpoints-file`, and
/// pods from `--pods-file`; the files are re-read on every sync so an
/// operator can edit them without a restart.
pub struct StaticEndpoints {
    flags: Vec<IpAddr>,
    file: Option<PathBuf>,
    pods_file: Option<PathBuf>,
}

impl StaticEndpoints {
    pub fn new(
        flags: &[IpAddr],
        file: Option<PathBuf>,
        pods_file: Option<PathBuf>,
    ) -> Result<Self, EndpointError> {
        if let Some(ip) = flags.iter().find(|ip| ip.is_loopback()) {
            return Err(EndpointError::Loopback(*ip));
        }
        Ok(StaticEndpoints {
            flags: flags.to_vec(),
            file,
            pods_file,
        })
    }
}

impl EndpointSource for StaticEndpoints {
    fn describe(&self) -> String {
        let mut parts = vec![format!("{} flags", self.flags.len())];
        if let Some(f) = &self.file {
            parts.push(format!("file {}", f.display()));
        }
        if let Some(f) = &self.pods_file {
            parts.push(format!("pods file {}", f.display()));
        }
        format!("static ({})", parts.join(", "))
    }

    fn snapshot(&mut self) -> Result<Snapshot, EndpointError> {
        let mut plain: BTreeSet<IpAddr> = self.flags.iter().copied().collect();
        if let Some(path) = &self.file {
            plain.extend(parse_file(path)?);
        }
        let mut endpoints: Vec<LocalEndpoint> = plain
            .into_iter()
            .map(|ip| LocalEndpoint {
                name: ip.to_string(),
                ips: vec![ip],
                ..Default::default()
            })
            .collect();
        if let Some(path) = &self.pods_file {
            endpoints.extend(parse_pods_file(path)?);
        }
        Ok(Snapshot {
            endpoints,
            loopback_meshed_only: self.pods_file.is_some(),
        })
    }
}

pub fn parse_file(path: &Path) -> Result<BTreeSet<IpAddr>, EndpointError> {
    let text = fs::read_to_string(path).map_err(|error| EndpointError::Read {
        path: path.into(),
        error,
    })?;
    parse_lines(path, &text)
}

pub(super) fn parse_lines(path: &Path, text: &str) -> Result<BTreeSet<IpAddr>, EndpointError> {
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

pub fn parse_pods_file(path: &Path) -> Result<Vec<LocalEndpoint>, EndpointError> {
    let text = fs::read_to_string(path).map_err(|error| EndpointError::Read {
        path: path.into(),
        error,
    })?;
    parse_pods(path, &text)
}

pub(super) fn parse_pods(path: &Path, text: &str) -> Result<Vec<LocalEndpoint>, EndpointError> {
    accel_k8s::pods_file::parse(text).map_err(|detail| EndpointError::PodsFile {
        path: path.into(),
        detail,
    })
}
