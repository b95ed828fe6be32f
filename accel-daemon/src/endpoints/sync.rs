//! [`sync`]: brings the endpoint, netns and opt-out maps to exactly one
//! snapshot, with its `apply` and `present` helpers.

use std::collections::{BTreeMap, BTreeSet};

use accel_bpf::{
    abi::{
        DIR_INBOUND, DIR_OUTBOUND, EP_APP_NONBLOCKING_ONLY, EP_APP_SEND_ONLY, EP_MESHED,
        EP_PROXY_ONLY, Endpoint, EndpointKey, ExcludedCidrKey, ExcludedPortKey, MeshedNetns,
    },
    map::{self, Spec},
};
use aya::Pod;

use super::{Acceleration, NetnsCookies, PodIds, Snapshot};
use crate::{
    datapath::{Datapath, DatapathError},
    reconcile::reconcile,
};

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

/// What `sync` keeps between rounds.
#[derive(Default)]
pub struct SyncContext {
    pub cookies: NetnsCookies,
    pub pod_ids: PodIds,
    /// For pods that do not say (`--pod-acceleration`).
    pub default_acceleration: Acceleration,
    /// Whether `auto` may record application sockets on this node (see
    /// [`mode_flags`]); false until the gate has probed the kernel.
    pub auto_records_apps: bool,
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
///
/// `auto_records_apps`: this kernel's FIONREAD counts bytes received by TCP
/// on a sockhash socket (or the operator accepted that it does not). Where
/// it does not, an `auto` application socket, which receives by TCP while in
/// the sockhash, would be told 0 by FIONREAD (I-4): `auto` pods then keep
/// their applications on TCP, as `proxy-only` pods do.
pub fn mode_flags(mode: Acceleration, auto_records_apps: bool) -> u32 {
    match mode {
        Acceleration::Auto if !auto_records_apps => EP_PROXY_ONLY,
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
    dp.set_default_ep_flags(mode_flags(ctx.default_acceleration, ctx.auto_records_apps))?;

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
        let mode = ep.acceleration.unwrap_or(ctx.default_acceleration);
        let flags = EP_MESHED | mode_flags(mode, ctx.auto_records_apps);
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
