//! Where the daemon learns which pods (and addresses) take part.
//!
//! A trait so the source can be static (flags and files) on standalone hosts
//! and the Kubernetes API in a cluster; the datapath only sees snapshots,
//! and [`sync`] brings the BPF maps to exactly the latest one.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    fs, io,
    net::IpAddr,
    os::{fd::AsRawFd, unix::fs::MetadataExt},
    path::{Path, PathBuf},
    sync::Arc,
};

use accel_bpf::{
    abi::{
        DIR_INBOUND, DIR_OUTBOUND, EP_APP_NONBLOCKING_ONLY, EP_APP_SEND_ONLY, EP_MESHED,
        EP_PROXY_ONLY, Endpoint, EndpointKey, ExcludedCidrKey, ExcludedPortKey, MeshedNetns,
    },
    map::{self, Spec},
};
pub use accel_k8s::{
    net::cidr_contains,
    pods_file::{Acceleration, LocalEndpoint, NetnsRef},
};
use aya::Pod;
use thiserror::Error;

use crate::{
    datapath::{Datapath, DatapathError},
    reconcile::reconcile,
};

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

pub fn parse_pods_file(path: &Path) -> Result<Vec<LocalEndpoint>, EndpointError> {
    let text = fs::read_to_string(path).map_err(|error| EndpointError::Read {
        path: path.into(),
        error,
    })?;
    parse_pods(path, &text)
}

fn parse_pods(path: &Path, text: &str) -> Result<Vec<LocalEndpoint>, EndpointError> {
    accel_k8s::pods_file::parse(text).map_err(|detail| EndpointError::PodsFile {
        path: path.into(),
        detail,
    })
}

/// Cookies of network namespaces, cached by the namespace's inode so a sync
/// does not enter every pod's namespace every time.
#[derive(Default)]
pub struct NetnsCookies {
    by_inode: HashMap<(u64, u64), u64>,
}

impl NetnsCookies {
    pub fn cookie(&mut self, r: &NetnsRef) -> io::Result<u64> {
        let path = r.path();
        let file = fs::File::open(&path)?;
        let meta = file.metadata()?;
        let key = (meta.dev(), meta.ino());
        if let Some(c) = self.by_inode.get(&key) {
            return Ok(*c);
        }
        let cookie = netns_cookie_of(&file)?;
        self.by_inode.insert(key, cookie);
        Ok(cookie)
    }
}

/// SO_NETNS_COOKIE (5.14+) of a socket opened inside the namespace, on a
/// short-lived thread so the daemon's own threads never change namespace.
fn netns_cookie_of(ns: &fs::File) -> io::Result<u64> {
    const SO_NETNS_COOKIE: libc::c_int = 71;
    let fd = ns.as_raw_fd();
    std::thread::scope(|s| {
        s.spawn(move || -> io::Result<u64> {
            // SAFETY: setns on a namespace fd we hold; this thread ends next.
            if unsafe { libc::setns(fd, libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: plain socket(2); closed below.
            let sock =
                unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
            if sock < 0 {
                return Err(io::Error::last_os_error());
            }
            let mut cookie: u64 = 0;
            let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
            // SAFETY: valid socket and output buffer of the stated length.
            let rc = unsafe {
                libc::getsockopt(
                    sock,
                    libc::SOL_SOCKET,
                    SO_NETNS_COOKIE,
                    (&mut cookie as *mut u64).cast(),
                    &mut len,
                )
            };
            let err = io::Error::last_os_error();
            // SAFETY: closing the socket we opened.
            unsafe { libc::close(sock) };
            if rc != 0 {
                return Err(err);
            }
            Ok(cookie)
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("netns cookie thread panicked")))
    })
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct SyncResult {
    pub added: usize,
    pub removed: usize,
    /// Pods whose namespace could not be resolved (their loopback traffic
    /// stays on TCP), with the reason.
    pub unresolved: Vec<(String, String)>,
    /// Entries the maps refused (full), by kind; those pods' traffic, or
    /// their opt-outs, are not applied. The first error says why.
    pub refused: usize,
    pub first_refusal: Option<String>,
}

impl SyncResult {
    fn refuse(&mut self, what: &str, e: DatapathError) {
        self.refused += 1;
        if self.first_refusal.is_none() {
            self.first_refusal = Some(format!("{what}: {e}"));
        }
    }
}

/// Small stable ids for pods, carried by the endpoint and netns maps into
/// each socket's state, so redirected traffic can be counted per pod pair.
/// Ids are handed out round-robin: one is reused only after 65,535 others,
/// long after sockets of its old pod are gone.
#[derive(Debug, Default)]
pub struct PodIds {
    by_name: BTreeMap<String, u16>,
    last: u16,
}

impl PodIds {
    /// Pod name by id, for metric labels.
    pub fn names(&self) -> BTreeMap<u16, String> {
        self.by_name
            .iter()
            .map(|(n, id)| (*id, n.clone()))
            .collect()
    }

    fn allocate(&mut self, taken: &BTreeSet<u16>) -> Option<u16> {
        let mut id = self.last;
        for _ in 0..u16::MAX {
            id = if id == u16::MAX { 1 } else { id + 1 };
            if !taken.contains(&id) {
                self.last = id;
                return Some(id);
            }
        }
        None
    }
}

/// What `sync` keeps between rounds.
#[derive(Default)]
pub struct SyncContext {
    pub cookies: NetnsCookies,
    pub pod_ids: PodIds,
    /// For pods that do not say (`--pod-acceleration`).
    pub default_acceleration: Acceleration,
    /// What the log already said about held-back sockets.
    pub held_log: crate::held::HeldLog,
}

/// The value of a key in the opt-out maps: the key is the fact.
const EXCLUDED: u8 = 1;

fn present<K: Ord>(keys: Vec<K>) -> BTreeMap<K, u8> {
    keys.into_iter().map(|k| (k, EXCLUDED)).collect()
}

/// Brings one map from `have` to `want`: removals first (an error there
/// ends the sync), then inserts and updates, each refused one handed to
/// `refused`. Returns (inserted, removed).
fn apply<K: Pod + Ord, V: Pod + PartialEq>(
    dp: &mut Datapath,
    m: &Spec<K, V>,
    have: &BTreeMap<K, V>,
    want: &BTreeMap<K, V>,
    mut refused: impl FnMut(&mut Datapath, &K, DatapathError),
) -> Result<(usize, usize), DatapathError> {
    let changes = reconcile(have, want);
    for k in &changes.removes {
        dp.remove(m, k)?;
    }
    let mut inserted = 0;
    for (k, v) in &changes.inserts {
        match dp.insert(m, **k, **v) {
            Ok(()) => inserted += 1,
            Err(e) => refused(dp, k, e),
        }
    }
    for (k, v) in &changes.updates {
        if let Err(e) = dp.insert(m, **k, **v) {
            refused(dp, k, e);
        }
    }
    Ok((inserted, changes.removes.len()))
}

/// The datapath's endpoint flags for a pod's mode (guard.h, owner.h).
pub fn mode_flags(mode: Acceleration) -> u32 {
    match mode {
        Acceleration::Auto => EP_APP_NONBLOCKING_ONLY | EP_APP_SEND_ONLY,
        Acceleration::AppSafe => EP_APP_NONBLOCKING_ONLY,
        Acceleration::All => 0,
        Acceleration::ProxyOnly => EP_PROXY_ONLY,
    }
}

/// Brings every endpoint map to exactly `snap`: adds new entries, removes
/// stale ones, sets the loopback scope, and keeps pod ids stable (across
/// daemon restarts too: they are read back from the maps).
pub fn sync(
    dp: &mut Datapath,
    snap: &Snapshot,
    ctx: &mut SyncContext,
) -> Result<SyncResult, DatapathError> {
    let mut result = SyncResult::default();
    dp.set_loopback_meshed_only(snap.loopback_meshed_only)?;
    // Namespaces nobody listed get the node's mode, not a looser one.
    dp.set_default_ep_flags(mode_flags(ctx.default_acceleration))?;

    let have_eps: BTreeMap<EndpointKey, Endpoint> =
        dp.entries(&map::ENDPOINTS)?.into_iter().collect();
    let have_netns: BTreeMap<u64, MeshedNetns> =
        dp.entries(&map::MESHED_NETNS)?.into_iter().collect();

    // Each pod's namespace cookie, if it has one.
    let mut netns_of = Vec::with_capacity(snap.endpoints.len());
    for ep in &snap.endpoints {
        let cookie = match ep.netns_ref() {
            Some(ns) => match ctx.cookies.cookie(&ns) {
                Ok(c) => Some(c),
                Err(e) => {
                    result
                        .unresolved
                        .push((ep.name.clone(), format!("{}: {e}", ns.path().display())));
                    None
                }
            },
            None => None,
        };
        netns_of.push(cookie);
    }

    // Pod ids: the one we gave it, else the one the maps carry (a restart),
    // else a new one. Never two pods with one id.
    let mut ids: BTreeMap<String, u16> = BTreeMap::new();
    let mut taken = BTreeSet::new();
    for (ep, cookie) in snap.endpoints.iter().zip(&netns_of) {
        let known = ctx.pod_ids.by_name.get(&ep.name).copied().or_else(|| {
            ep.ips
                .iter()
                .filter_map(|ip| have_eps.get(&EndpointKey::from(*ip)).map(|e| e.pod))
                .chain(cookie.and_then(|c| have_netns.get(&c).map(|n| n.pod)))
                .find(|id| *id != 0)
        });
        if let Some(id) = known.filter(|id| !taken.contains(id)) {
            ids.insert(ep.name.clone(), id);
            taken.insert(id);
        }
    }
    for ep in &snap.endpoints {
        if !ids.contains_key(&ep.name)
            && let Some(id) = ctx.pod_ids.allocate(&taken)
        {
            ids.insert(ep.name.clone(), id);
            taken.insert(id);
        }
    }
    ctx.pod_ids.by_name = ids;

    let mut want_eps = BTreeMap::new();
    let mut want_netns = BTreeMap::new();
    let mut want_ports = BTreeMap::new();
    let mut want_cidrs = BTreeMap::new();
    for (ep, cookie) in snap.endpoints.iter().zip(&netns_of) {
        let pod = ctx.pod_ids.by_name.get(&ep.name).copied().unwrap_or(0);
        let flags = EP_MESHED | mode_flags(ep.acceleration.unwrap_or(ctx.default_acceleration));
        if let Some(c) = cookie {
            // Both flags fit: the netns value keeps them in 16 bits.
            want_netns.insert(
                *c,
                MeshedNetns {
                    pod,
                    flags: flags as u16,
                },
            );
        }
        for ip in &ep.ips {
            let key = EndpointKey::from(*ip);
            want_eps.insert(
                key,
                Endpoint {
                    flags,
                    pod,
                    _pad0: 0,
                },
            );
            for (ports, direction) in [
                (&ep.exclude_inbound_ports, DIR_INBOUND),
                (&ep.exclude_outbound_ports, DIR_OUTBOUND),
            ] {
                for port in ports {
                    let k = ExcludedPortKey {
                        addr: key.addr,
                        port: *port,
                        direction,
                        _pad0: 0,
                    };
                    want_ports.insert(k, EXCLUDED);
                }
            }
            for cidr in &ep.exclude_outbound_ip_ranges {
                want_cidrs.insert(ExcludedCidrKey::new(key, cidr.addr, cidr.prefix), EXCLUDED);
            }
        }
    }

    // Removals first, map by map: they make room for what is added. A
    // full map refuses an entry; the rest of the set still applies (an
    // address not in the map simply stays on TCP).
    let (added, removed) = apply(dp, &map::ENDPOINTS, &have_eps, &want_eps, |_, _, e| {
        result.refuse("endpoint", e)
    })?;
    result.added += added;
    result.removed += removed;
    apply(
        dp,
        &map::MESHED_NETNS,
        &have_netns,
        &want_netns,
        |_, _, e| result.refuse("pod network namespace", e),
    )?;
    // An opt-out that cannot be recorded must not be bypassed: take the
    // pod's address out instead.
    let have = present(dp.keys(&map::EXCLUDED_PORTS)?);
    apply(dp, &map::EXCLUDED_PORTS, &have, &want_ports, |dp, k, e| {
        let _ = dp.remove(&map::ENDPOINTS, &EndpointKey { addr: k.addr });
        result.refuse("excluded port (its pod address was withdrawn)", e);
    })?;
    let have = present(dp.keys(&map::EXCLUDED_CIDRS)?);
    apply(dp, &map::EXCLUDED_CIDRS, &have, &want_cidrs, |dp, k, e| {
        let _ = dp.remove(&map::ENDPOINTS, &EndpointKey { addr: k.pod });
        result.refuse("excluded range (its pod address was withdrawn)", e);
    })?;
    // Counters of pods that went away: their series end with them.
    dp.retain(&map::POD_TRAFFIC, |pair| {
        taken.contains(&pair.src) && taken.contains(&pair.dst)
    })?;
    dp.retain(&map::POD_HELD, |key| {
        key.pod == 0 || taken.contains(&key.pod)
    })?;
    if let Ok(rows) = crate::held::read(dp) {
        ctx.held_log.update(&rows, &ctx.pod_ids.names());
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

    #[test]
    fn parses_a_hand_written_pods_file() {
        let pods = parse_pods(
            Path::new("pods.toml"),
            r#"
# reviews-v1 on this node
[[pod]]
name = "default/reviews-v1"
ips = ["10.244.0.7", "fd00:244::7"]
netns = "/var/run/netns/cni-1234"
exclude_inbound_ports = [15090]
exclude_outbound_ports = [3306]
exclude_outbound_ip_ranges = ["10.96.0.0/12", "fd00:96::/64"]

[[pod]]
name = "default/ratings"
ips = ["10.244.0.8"]
pid = 4242
"#,
        )
        .unwrap();
        assert_eq!(pods.len(), 2);
        assert_eq!(
            pods[0].netns_ref(),
            Some(NetnsRef::Path {
                netns: "/var/run/netns/cni-1234".into()
            })
        );
        assert_eq!(
            pods[0].exclude_outbound_ip_ranges[0].to_string(),
            "10.96.0.0/12"
        );
        assert_eq!(pods[1].netns_ref(), Some(NetnsRef::Pid { pid: 4242 }));
        assert!(pods[1].exclude_inbound_ports.is_empty());
    }

    #[test]
    fn pods_file_errors_name_the_problem() {
        let bad = |text: &str| {
            parse_pods(Path::new("p.toml"), text)
                .unwrap_err()
                .to_string()
        };
        assert!(bad("[[pod]]\nips = []\n").contains("at least one address"));
        assert!(bad("[[pod]]\nips = [\"127.0.0.1\"]\n").contains("not a pod address"));
        assert!(
            bad("[[pod]]\nips = [\"10.0.0.1\"]\nexclude_outbound_ip_ranges = [\"10.0.0.0/40\"]\n")
                .contains("prefix length")
        );
        assert!(bad("[[pod]]\nips = [\"10.0.0.1\"]\ncolour = 1\n").contains("colour"));
        assert!(bad("[[pod]]\nips = [\"10.0.0.300\"]\n").contains("p.toml"));
        assert!(
            bad("[[pod]]\nips = [\"10.0.0.1\"]\nnetns = \"/x\"\npid = 1\n").contains("not both")
        );
    }
}
