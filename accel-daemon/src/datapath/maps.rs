//! Map access on a live datapath: generic reads and writes of any map of
//! the table, the per-map readers (pod traffic, counters, usage), and the
//! errors that name the map.

use std::os::fd::{AsFd, BorrowedFd};

use accel_bpf::{
    abi::{self, Stat},
    map::{self, MapDef, Spec},
};
use aya::Pod;
use serde::Serialize;

use super::{Datapath, DatapathError, map_err};
use crate::bpf_sys;

#[derive(Clone, Debug, Serialize)]
pub struct MapUsage {
    pub name: &'static str,
    pub entries: Option<u64>,
    pub capacity: u32,
    /// A hint map (LRU hash): its entries outlive the sockets that wrote
    /// them, and eviction bounds it.
    pub hint: bool,
}

impl Datapath {
    /// The open map of `m`, by its row of the table.
    pub(super) fn fd(&self, m: &MapDef) -> Result<BorrowedFd<'_>, DatapathError> {
        self.maps
            .iter()
            .find(|(def, ..)| def.name == m.name)
            .map(|(_, data, _)| data.fd().as_fd())
            .ok_or_else(|| map_err(format!("{} is not open", m.name)))
    }

    /// Every entry of a keyed map (hash, LRU hash, LPM trie); an entry
    /// deleted between listing its key and reading it is left out.
    pub fn entries<K: Pod, V: Pod>(&self, m: &Spec<K, V>) -> Result<Vec<(K, V)>, DatapathError> {
        let fd = self.fd(m)?;
        let mut out = Vec::new();
        for k in self.keys(m)? {
            if let Some(v) = bpf_sys::map_lookup(fd, &k).map_err(|e| elem_err("reading", m, e))? {
                out.push((k, v));
            }
        }
        Ok(out)
    }

    /// Every key of a keyed map.
    pub fn keys<K: Pod, V: Pod>(&self, m: &Spec<K, V>) -> Result<Vec<K>, DatapathError> {
        bpf_sys::map_keys(self.fd(m)?).map_err(|e| elem_err("listing", m, e))
    }

    /// Each CPU's values of a per-CPU map, summed with `add`.
    pub fn sum_per_cpu<K: Pod, V: Pod>(
        &self,
        m: &Spec<K, V>,
        keys: impl IntoIterator<Item = K>,
        add: impl Fn(V, V) -> V,
    ) -> Result<Vec<(K, V)>, DatapathError> {
        let fd = self.fd(m)?;
        let cpus =
            aya::util::nr_cpus().map_err(|(what, e)| map_err(format!("reading {what}: {e}")))?;
        let mut out = Vec::new();
        for k in keys {
            let per_cpu = bpf_sys::map_lookup_per_cpu::<K, V>(fd, &k, cpus)
                .map_err(|e| elem_err("reading", m, e))?;
            if let Some(sum) = per_cpu.and_then(|v| v.into_iter().reduce(&add)) {
                out.push((k, sum));
            }
        }
        Ok(out)
    }

    /// Creates or replaces the entry at `key`.
    pub fn insert<K: Pod, V: Pod>(
        &mut self,
        m: &Spec<K, V>,
        key: K,
        value: V,
    ) -> Result<(), DatapathError> {
        bpf_sys::map_update(self.fd(m)?, &key, &value).map_err(|e| elem_err("writing", m, e))
    }

    /// Deletes the entry at `key`, if there is one.
    pub fn remove<K: Pod, V: Pod>(&mut self, m: &Spec<K, V>, key: &K) -> Result<(), DatapathError> {
        bpf_sys::map_delete(self.fd(m)?, key).map_err(|e| elem_err("deleting from", m, e))
    }

    /// Deletes every entry whose key `keep` refuses.
    pub fn retain<K: Pod, V: Pod>(
        &mut self,
        m: &Spec<K, V>,
        keep: impl Fn(&K) -> bool,
    ) -> Result<(), DatapathError> {
        for k in self.keys(m)? {
            if !keep(&k) {
                self.remove(m, &k)?;
            }
        }
        Ok(())
    }

    /// Redirected traffic per pod pair, summed over CPUs.
    pub fn pod_traffic(&self) -> Result<Vec<(abi::PodPair, abi::PodTraffic)>, DatapathError> {
        self.sum_per_cpu(&map::POD_TRAFFIC, self.keys(&map::POD_TRAFFIC)?, |a, b| {
            abi::PodTraffic {
                msgs: a.msgs + b.msgs,
                bytes: a.bytes + b.bytes,
            }
        })
    }

    /// Counters summed over CPUs, in [`Stat::ALL`] order.
    pub fn stats(&self) -> Result<Vec<(Stat, u64)>, DatapathError> {
        // Every slot of an array exists: one sum per counter, in order.
        let sums = self.sum_per_cpu(&map::STATS, Stat::ALL.map(|s| s as u32), |a, b| a + b)?;
        Ok(Stat::ALL
            .into_iter()
            .zip(sums.into_iter().map(|(_, n)| n))
            .collect())
    }

    /// Entries (where the table counts them) and capacity of every map.
    pub fn usage(&self) -> Vec<MapUsage> {
        self.maps
            .iter()
            .map(|(def, data, info)| MapUsage {
                name: def.name,
                entries: def
                    .counted
                    .then(|| count_keys(data.fd().as_fd(), def.key_size))
                    .flatten(),
                capacity: info.max_entries(),
                hint: matches!(def.kind, map::MapType::LruHash),
            })
            .collect()
    }
}

/// A map operation that failed, naming the map; a full map says so and
/// what the operator can do about it.
pub(super) fn elem_err(what: &str, m: &MapDef, e: std::io::Error) -> DatapathError {
    let full = matches!(
        e.raw_os_error(),
        Some(libc::E2BIG | libc::ENOSPC | libc::ENOMEM)
    );
    let hint = match m.capacity {
        map::Capacity::SockhashSize if full => ": the map is full (raise --sockhash-size)",
        map::Capacity::PairingSize if full => ": the map is full (raise --pairing-size)",
        _ if full => ": the map is full",
        _ => "",
    };
    map_err(format!("{what} {}: {e}{hint}", m.name))
}

/// Entries of a map of any key type, `None` where it cannot be read.
pub(super) fn count_keys(fd: BorrowedFd<'_>, key_size: u32) -> Option<u64> {
    bpf_sys::map_count(fd, key_size).ok()
}
