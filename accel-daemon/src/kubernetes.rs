//! The Kubernetes endpoint source, and the daemon's reports on its node.
//!
//! Meshed pods come from a watch of this node's pods ([`accel_k8s::watch`]).
//! What the API cannot tell us, a pod's network namespace (needed for its
//! loopback app <-> sidecar traffic), we find on the node: the namespace of
//! a process in the daemon's cgroup tree that owns the pod's address.

use std::{
    collections::{BTreeMap, HashMap},
    fs, io,
    net::IpAddr,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use accel_k8s::watch::{PodView, WatchHealth};
use tokio::sync::{Notify, watch};
use tracing::{debug, warn};

use crate::endpoints::{EndpointError, EndpointSource, LocalEndpoint, Snapshot};

/// The daemon's log filter: `RUST_LOG` (default `info`) with kube's
/// per-retry noise turned down. kube's HTTP layer logs an ERROR for every
/// failed request, and its watcher a WARN for every 403: one line per retry
/// while the API server is down or RBAC is missing. The daemon logs those
/// failures itself, at most once a minute, with a hint. A `RUST_LOG` that
/// names `kube_client` or `kube_runtime` is taken as it is.
pub fn log_filter(rust_log: Option<&str>) -> String {
    let mut filter = rust_log
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .unwrap_or("info")
        .to_string();
    for (module, directive) in [
        ("kube_client", "kube_client::client::builder=off"),
        ("kube_runtime", "kube_runtime::watcher=error"),
    ] {
        if !filter.contains(module) {
            filter.push(',');
            filter.push_str(directive);
        }
    }
    filter
}

pub struct KubernetesEndpoints {
    node: String,
    view: watch::Receiver<Arc<PodView>>,
    pub health: Arc<WatchHealth>,
    resolver: NetnsResolver,
    notify: Arc<Notify>,
}

impl KubernetesEndpoints {
    pub fn new(
        client: kube::Client,
        node: &str,
        proc_root: &Path,
        cgroup: &Path,
    ) -> KubernetesEndpoints {
        let (view, health) = accel_k8s::watch::spawn_pod_watcher(client, node);
        // A permit is stored when nobody waits, so no change is missed
        // while the daemon is busy syncing.
        let notify = Arc::new(Notify::new());
        let mut changes = view.clone();
        let n = notify.clone();
        tokio::spawn(async move {
            while changes.changed().await.is_ok() {
                n.notify_one();
            }
        });
        KubernetesEndpoints {
            node: node.to_string(),
            view,
            health,
            resolver: NetnsResolver::new(proc_root, cgroup),
            notify,
        }
    }
}

impl EndpointSource for KubernetesEndpoints {
    fn describe(&self) -> String {
        format!("kubernetes (pods on node {})", self.node)
    }

    fn snapshot(&mut self) -> Result<Snapshot, EndpointError> {
        let view = self.view.borrow().clone();
        if !view.synced {
            return Err(EndpointError::NotReady(
                "waiting for the first pod list from the Kubernetes API server".into(),
            ));
        }
        for (pod, why) in view.invalid() {
            debug!(%pod, %why, "meshed pod kept on TCP: annotation unreadable");
        }
        let meshed: Vec<_> = view.meshed().collect();
        let netns = self
            .resolver
            .resolve(meshed.iter().map(|m| (m.key(), m.ips.clone())));
        let endpoints = meshed
            .into_iter()
            .map(|m| LocalEndpoint {
                name: m.key(),
                ips: m.ips.clone(),
                netns: netns.get(&m.key()).cloned(),
                pid: None,
                exclude_inbound_ports: m.exclude_inbound_ports.clone(),
                exclude_outbound_ports: m.exclude_outbound_ports.clone(),
                exclude_outbound_ip_ranges: m.exclude_outbound_ip_ranges.clone(),
                acceleration: m.acceleration,
            })
            .collect();
        Ok(Snapshot {
            endpoints,
            loopback_meshed_only: true,
        })
    }

    fn notifier(&self) -> Option<Arc<Notify>> {
        Some(self.notify.clone())
    }

    fn invalid_pods(&self) -> Vec<(String, String)> {
        self.view
            .borrow()
            .invalid()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    fn health(&self) -> Option<Arc<WatchHealth>> {
        Some(self.health.clone())
    }
}

/// Finds pods' network namespaces by address.
///
/// Only processes in the daemon's cgroup tree are considered: those are the
/// only sockets the datapath sees, and a private test cgroup then never
/// picks up another test's pods with the same addresses.
struct NetnsResolver {
    proc_root: PathBuf,
    cgroup: PathBuf,
    /// Pod -> (namespace inode, process) of the last successful resolution;
    /// revalidated on every use (the process may be gone, the inode reused).
    cache: HashMap<String, (u64, u32)>,
    /// Pods not found last time, with when: a rescan costs a setns per
    /// namespace, so a pod that is not (yet) in our cgroup is retried at a pace.
    missing_since: Option<Instant>,
}

const RESCAN_PACE: Duration = Duration::from_secs(2);

impl NetnsResolver {
    fn new(proc_root: &Path, cgroup: &Path) -> Self {
        NetnsResolver {
            proc_root: proc_root.to_path_buf(),
            cgroup: cgroup.to_path_buf(),
            cache: HashMap::new(),
            missing_since: None,
        }
    }

    fn ns_path(&self, pid: u32) -> PathBuf {
        self.proc_root.join(pid.to_string()).join("ns/net")
    }

    fn ns_inode(&self, pid: u32) -> Option<u64> {
        fs::metadata(self.ns_path(pid)).ok().map(|m| m.ino())
    }

    /// The namespace file of each pod that could be resolved exactly (one
    /// namespace holds all of the pod's addresses, and no other namespace
    /// in our cgroup holds any of them).
    fn resolve(
        &mut self,
        pods: impl Iterator<Item = (String, Vec<IpAddr>)>,
    ) -> BTreeMap<String, PathBuf> {
        let pods: Vec<_> = pods.collect();
        let mut out = BTreeMap::new();
        let mut misses = Vec::new();
        for (pod, ips) in &pods {
            match self.cache.get(pod) {
                Some(&(ino, pid)) if self.ns_inode(pid) == Some(ino) => {
                    out.insert(pod.clone(), self.ns_path(pid));
                }
                _ => misses.push((pod.clone(), ips.clone())),
            }
        }
        self.cache.retain(|k, _| pods.iter().any(|(p, _)| p == k));
        if misses.is_empty() {
            self.missing_since = None;
            return out;
        }
        if self
            .missing_since
            .is_some_and(|t| t.elapsed() < RESCAN_PACE)
        {
            return out;
        }
        let owners = match self.scan() {
            Ok(o) => o,
            Err(e) => {
                warn!(error = %e, cgroup = %self.cgroup.display(), "listing pod network namespaces failed");
                self.missing_since = Some(Instant::now());
                return out;
            }
        };
        let mut still_missing = false;
        for (pod, ips) in misses {
            let mut found: Vec<(u64, u32)> = ips
                .iter()
                .filter_map(|ip| owners.get(ip))
                .flatten()
                .copied()
                .collect();
            found.sort_unstable();
            found.dedup_by_key(|(ino, _)| *ino);
            match found.as_slice() {
                [(ino, pid)] => {
                    self.cache.insert(pod.clone(), (*ino, *pid));
                    out.insert(pod, self.ns_path(*pid));
                }
                [] => {
                    still_missing = true;
                    debug!(%pod, "no process of the pod in the daemon's cgroup yet");
                }
                many => {
                    warn!(%pod, namespaces = many.len(), "pod address found in several network namespaces; its loopback traffic stays on TCP");
                }
            }
        }
        self.missing_since = still_missing.then(Instant::now);
        out
    }

    /// Address -> the namespaces (inode, a process) that hold it.
    fn scan(&self) -> io::Result<HashMap<IpAddr, Vec<(u64, u32)>>> {
        // The daemon's own namespace is the host's (hostNetwork): host
        // addresses are never pod addresses.
        let own = fs::metadata("/proc/self/ns/net")?.ino();
        let mut pids = Vec::new();
        collect_pids(&self.cgroup, &mut pids, 0)?;
        let mut by_ns: BTreeMap<u64, u32> = BTreeMap::new();
        for pid in pids {
            if let Some(ino) = self.ns_inode(pid).filter(|i| *i != own) {
                by_ns.entry(ino).or_insert(pid);
            }
        }
        let mut owners: HashMap<IpAddr, Vec<(u64, u32)>> = HashMap::new();
        for (ino, pid) in by_ns {
            match addresses_in(&self.ns_path(pid)) {
                Ok(ips) => {
                    for ip in ips.into_iter().filter(|ip| !ip.is_loopback()) {
                        owners.entry(ip).or_default().push((ino, pid));
                    }
                }
                // The process may have exited since: skip its namespace.
                Err(e) => debug!(pid, error = %e, "reading addresses of a network namespace"),
            }
        }
        Ok(owners)
    }
}

/// Every pid in `dir` and its descendants (`cgroup.procs`).
fn collect_pids(dir: &Path, out: &mut Vec<u32>, depth: usize) -> io::Result<()> {
    if depth > 64 {
        return Ok(());
    }
    match fs::read_to_string(dir.join("cgroup.procs")) {
        Ok(text) => out.extend(text.lines().filter_map(|l| l.trim().parse::<u32>().ok())),
        // A child removed while we walk.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) if depth == 0 => return Err(e),
        Err(_) => {}
    }
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if depth == 0 => return Err(e),
        Err(_) => return Ok(()),
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            collect_pids(&entry.path(), out, depth + 1)?;
        }
    }
    Ok(())
}

/// The addresses configured in a network namespace. setns(2) changes the
/// calling thread only, so a short-lived thread does it.
pub(crate) fn addresses_in(ns: &Path) -> io::Result<Vec<IpAddr>> {
    let file = fs::File::open(ns)?;
    std::thread::scope(|s| {
        s.spawn(|| -> io::Result<Vec<IpAddr>> {
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(io::Error::from)?;
            let addrs = nix::ifaddrs::getifaddrs().map_err(io::Error::from)?;
            Ok(addrs
                .filter_map(|a| a.address)
                .filter_map(|a| {
                    a.as_sockaddr_in()
                        .map(|v4| IpAddr::V4(v4.ip()))
                        .or_else(|| a.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip())))
                })
                .collect())
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("namespace address thread panicked")))
    })
}
