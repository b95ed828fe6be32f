//! Where the daemon learns which pods (and addresses) take part.
//!
//! A trait so the source can be static (flags and files) on standalone hosts
//! and the Kubernetes API in a cluster; the datapath only sees snapshots,
//! and [`sync`] brings the BPF maps to exactly the latest one.
//!
//! Here: the error, the snapshot and the source trait. The static source
//! and its files are in `static_source.rs`, namespace cookies in `netns.rs`,
//! pod ids in `pod_ids.rs`, and the map sync in `sync.rs`.

mod netns;
mod pod_ids;
mod static_source;
mod sync;
#[cfg(test)]
mod tests;

use std::{collections::BTreeSet, io, net::IpAddr, path::PathBuf, sync::Arc};

pub use accel_k8s::{
    net::cidr_contains,
    pods_file::{Acceleration, LocalEndpoint, NetnsRef},
};
pub use netns::NetnsCookies;
pub use pod_ids::PodIds;
pub use static_source::StaticEndpoints;
pub use sync::{SyncContext, SyncResult, mode_flags, sync};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum EndpointError {
    // Not a `source`: the message carries the cause once, for `{e}` and `{e:#}` alike.
    #[error("reading {path}: {error}")]
    Read { path: PathBuf, error: io::Error },
    #[error(
        "{path}:{line}: {text:?} is not an IP address (one address per line, # starts a comment)"
    )]
    Parse {
        path: PathBuf,
        line: usize,
        text: String,
    },
    #[error("pods file {path}: {detail} (see docs/reference.md, \"Pods file\")")]
    PodsFile { path: PathBuf, detail: String },
    #[error(
        "--local-endpoint {0:?}: loopback addresses always take part; list pod or host addresses"
    )]
    Loopback(IpAddr),
    /// The source has nothing complete yet (no first list from the API
    /// server): the datapath keeps what it has.
    #[error("{0}")]
    NotReady(String),
}

/// Everything a source knows at one point in time.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub endpoints: Vec<LocalEndpoint>,
    /// A node (pods file, Kubernetes): loopback takes part only inside the
    /// listed pods' namespaces. A standalone host: everywhere.
    pub loopback_meshed_only: bool,
}

impl Snapshot {
    pub fn ips(&self) -> BTreeSet<IpAddr> {
        self.endpoints
            .iter()
            .flat_map(|e| e.ips.iter().copied())
            .collect()
    }
}

/// A source of the local endpoints that take part in acceleration.
pub trait EndpointSource: Send {
    /// Human-readable name for logs and status.
    fn describe(&self) -> String;
    /// The full current set; the daemon applies the difference.
    fn snapshot(&mut self) -> Result<Snapshot, EndpointError>;
    /// Notified when the source has news, so changes reach the maps without
    /// waiting for the next periodic sync. Sources that can only be polled
    /// have none.
    fn notifier(&self) -> Option<Arc<tokio::sync::Notify>> {
        None
    }
    /// Meshed pods kept on TCP because their configuration cannot be read, with why.
    fn invalid_pods(&self) -> Vec<(String, String)> {
        Vec::new()
    }
    /// Health of a source that talks to a server (errors so far).
    fn health(&self) -> Option<Arc<accel_k8s::watch::WatchHealth>> {
        None
    }
}
