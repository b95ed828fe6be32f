//! The datapath on the node: install (load, attach, pin), adopt existing
//! pins after a restart, report, and remove without losing queued data.
//!
//! Pin layout under the versioned pin dir: one file per map (named as in
//! the object) plus `link_sockops`, the sock_ops cgroup link. The sk_msg
//! program is attached to the sockhash itself and lives as long as the map.

use std::{
    fs,
    os::fd::{AsFd, BorrowedFd},
    path::{Path, PathBuf},
    thread,
    time::{Duration, Instant},
};

use accel_bpf::{
    DATAPATH_FLOW_OBJ, DATAPATH_OBJ,
    abi::{self, Config, Stat},
    global,
    map::{self, Cleanup, MapDef, Spec},
    prog,
};
use aya::{
    Btf, EbpfLoader, Pod,
    maps::{Array, MapData, MapInfo, MapType, SockHash},
    programs::{
        CgroupAttachMode, SkMsg, SockOps,
        links::{FdLink, Link, LinkType, PinnedLink},
        loaded_programs,
    },
};
use serde::Serialize;
use thiserror::Error;

use crate::bpf_sys;

pub const LINK_PIN: &str = "link_sockops";

#[derive(Debug, Error)]
pub enum DatapathError {
    #[error("loading the datapath into the kernel failed: {0}")]
    Load(String),
    #[error("attaching sock_ops to cgroup {cgroup}: {detail}")]
    Attach { cgroup: PathBuf, detail: String },
    #[error("pinning under {dir}: {detail}")]
    Pin { dir: PathBuf, detail: String },
    #[error(
        "pin dir {dir} holds something that is not a datapath of ABI v{abi}: {detail}. \
         Remove it with `accel-daemon unload --pin-dir {dir}` (or delete the directory) and start again"
    )]
    Foreign {
        dir: PathBuf,
        abi: u32,
        detail: String,
    },
    #[error("self-test failed: {0}")]
    SelfTest(String),
    #[error(
        "flow control cannot load on this kernel ({0}); without it redirected bytes are \
         not bounded by the reader and an unload cannot prove receive queues drained, so \
         this node runs unaccelerated. Use a kernel with BTF (CONFIG_DEBUG_INFO_BTF), or \
         accept both risks with --allow-no-flow-control"
    )]
    NoFlowControl(String),
    #[error("{0}")]
    Map(String),
}

fn map_err(e: impl std::fmt::Display) -> DatapathError {
    DatapathError::Map(e.to_string())
}

/// Capacities set by the operator (the rest are fixed in the map table).
#[derive(Clone, Copy, Debug, Serialize)]
pub struct MapSizes {
    pub sockhash: u32,
    pub pairing: u32,
}

impl Default for MapSizes {
    fn default() -> Self {
        MapSizes {
            sockhash: map::SOCKHASH.max_entries,
            pairing: map::PAIRING.max_entries,
        }
    }
}

impl MapSizes {
    /// What `m` is sized to at load time, where the operator decides.
    fn of(&self, m: &map::MapDef) -> Option<u32> {
        match m.capacity {
            map::Capacity::SockhashSize => Some(self.sockhash),
            map::Capacity::PairingSize => Some(self.pairing),
            map::Capacity::Fixed | map::Capacity::PerSocket => None,
        }
    }
}

/// Staging directory next to the pin dir: everything is pinned there first
/// and renamed into place in one step, so nobody ever sees half a datapath.
fn staging_dir(pin_dir: &Path) -> PathBuf {
    let name = pin_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "datapath".into());
    // bpffs refuses names containing a dot.
    pin_dir.with_file_name(format!("{name}-staging-{}", std::process::id()))
}

pub struct InstallOptions<'a> {
    pub pin_dir: &'a Path,
    pub cgroup: &'a Path,
    pub sizes: MapSizes,
    pub have_netns_cookie: bool,
    /// Load the build without flow control where the flow-control one
    /// cannot load, instead of refusing.
    pub allow_no_flow_control: bool,
    /// Behave as if the kernel had no BTF (tests of the refusal).
    pub pretend_no_btf: bool,
    /// The config slot as it must be before sock_ops sees its first
    /// socket: the node's mode and proxy uid apply from the first
    /// connection on, never a looser default.
    pub config: Config,
}

/// Which build of the datapath runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Variant {
    /// With flow control for slow readers (needs kernel BTF).
    FlowControl,
    /// Without: redirected bytes are not bounded by the reader's buffer.
    Plain { why: String },
}

fn fresh_dir(dir: &Path) -> Result<(), DatapathError> {
    remove_pin_dir(dir);
    if let Some(parent) = dir.parent() {
        fs::create_dir_all(parent).map_err(|e| DatapathError::Pin {
            dir: parent.into(),
            detail: e.to_string(),
        })?;
    }
    fs::create_dir(dir).map_err(|e| DatapathError::Pin {
        dir: dir.into(),
        detail: e.to_string(),
    })
}

/// Loads, attaches and pins a fresh datapath, the flow-control build when
/// the kernel allows it. `self_test` runs against the staged pins with
/// sock_ops already attached; if it fails nothing stays attached or pinned.
pub fn install(
    opts: &InstallOptions<'_>,
    self_test: impl FnOnce(&Path) -> Result<(), String>,
) -> Result<(Datapath, Variant), DatapathError> {
    let staging = staging_dir(opts.pin_dir);
    fresh_dir(&staging)?;
    // Without flow control the datapath has the defects this product exists
    // to avoid (unbounded queues, no drain proof): only on request.
    let plain_or_refuse = |why: String| {
        if !opts.allow_no_flow_control {
            return Err(DatapathError::NoFlowControl(why));
        }
        tracing::warn!(%why, "--allow-no-flow-control: loading the datapath without flow control");
        fresh_dir(&staging)?;
        stage(opts, &staging, DATAPATH_OBJ, None).map(|l| (l, Variant::Plain { why }))
    };
    let btf = if opts.pretend_no_btf {
        Err("--pretend-no-btf".to_string())
    } else {
        Btf::from_sys_fs().map_err(|e| e.to_string())
    };
    let staged = match btf {
        Ok(btf) => match stage(opts, &staging, DATAPATH_FLOW_OBJ, Some(&btf)) {
            Ok(link) => Ok((link, Variant::FlowControl)),
            Err(DatapathError::Load(why)) => {
                plain_or_refuse(format!("the flow-control build was refused: {why}"))
            }
            Err(e) => Err(e),
        },
        Err(e) => plain_or_refuse(format!("no kernel BTF: {e}")),
    };
    let mut variant = None;
    let result = staged.and_then(|(link, v)| {
        variant = Some(v);
        if let Err(e) = self_test(&staging) {
            detach_quietly(link);
            return Err(DatapathError::SelfTest(e));
        }
        drop(link); // the pin keeps it attached
        fs::rename(&staging, opts.pin_dir).map_err(|e| DatapathError::Pin {
            dir: opts.pin_dir.into(),
            detail: format!("renaming the staged pins into place: {e}"),
        })
    });
    if let Err(e) = result {
        remove_pin_dir(&staging);
        return Err(e);
    }
    let variant = variant.ok_or_else(|| map_err("no datapath variant staged"))?;
    Ok((Datapath::open(opts.pin_dir)?, variant))
}

fn detach_quietly(link: PinnedLink) {
    match link.unpin() {
        Ok(fd_link) => {
            if let Some(id) = fd_link.info().ok().map(|i| i.id())
                && let Err(e) = crate::bpf_sys::link_detach_by_id(id)
            {
                tracing::warn!(error = %e, "detaching sock_ops link for every holder");
            }
            if let Err(e) = fd_link.detach() {
                tracing::warn!(error = %e, "detaching sock_ops link");
            }
        }
        Err(e) => tracing::warn!(error = %e, "unpinning sock_ops link"),
    }
}

/// Load, attach sk_msg, pin maps, attach and pin sock_ops, all into `dir`.
fn stage(
    opts: &InstallOptions<'_>,
    dir: &Path,
    object: &[u8],
    btf: Option<&Btf>,
) -> Result<PinnedLink, DatapathError> {
    let have_netns = u32::from(opts.have_netns_cookie);
    let mut loader = EbpfLoader::new();
    loader.btf(btf);
    for m in map::ALL {
        if let Some(n) = opts.sizes.of(m) {
            loader.map_max_entries(m.name, n);
        }
    }
    let mut ebpf = loader
        .override_global(global::HAVE_NETNS_COOKIE, &have_netns, true)
        .load(object)
        .map_err(|e| DatapathError::Load(error_chain(&e)))?;

    {
        let m = ebpf
            .map_mut(map::CONFIG.name)
            .ok_or_else(|| DatapathError::Load("config map missing from object".into()))?;
        let mut config: Array<&mut MapData, Config> = Array::try_from(m).map_err(map_err)?;
        config.set(0, opts.config, 0).map_err(map_err)?;
    }
    let sockhash_fd = {
        let m = ebpf
            .map(map::SOCKHASH.name)
            .ok_or_else(|| DatapathError::Load("sockhash missing from object".into()))?;
        let hash: SockHash<&MapData, u64> = SockHash::try_from(m).map_err(map_err)?;
        hash.fd().try_clone().map_err(map_err)?
    };
    let sk_msg: &mut SkMsg = ebpf
        .program_mut(prog::SK_MSG)
        .ok_or_else(|| DatapathError::Load("sk_msg program missing".into()))?
        .try_into()
        .map_err(|e| DatapathError::Load(format!("{e:#}")))?;
    sk_msg
        .load()
        .map_err(|e| DatapathError::Load(verifier_error(&e)))?;
    let id = sk_msg.attach(&sockhash_fd).map_err(|e| {
        DatapathError::Load(format!(
            "attaching sk_msg to the sockhash: {}",
            error_chain(&e)
        ))
    })?;
    // The attachment belongs to the map from now on; dropping aya's handle
    // would detach it, so let the handle go without running its destructor.
    let sk_msg_link = sk_msg.take_link(id).map_err(map_err)?;
    std::mem::forget(sk_msg_link);

    for name in map::ALL.iter().map(|m| m.name) {
        let m = ebpf
            .map(name)
            .ok_or_else(|| DatapathError::Load(format!("map {name} missing from object")))?;
        m.pin(dir.join(name)).map_err(|e| DatapathError::Pin {
            dir: dir.into(),
            detail: format!("{name}: {e}"),
        })?;
    }

    let sock_ops: &mut SockOps = ebpf
        .program_mut(prog::SOCKOPS)
        .ok_or_else(|| DatapathError::Load("sock_ops program missing".into()))?
        .try_into()
        .map_err(|e| DatapathError::Load(format!("{e:#}")))?;
    sock_ops
        .load()
        .map_err(|e| DatapathError::Load(verifier_error(&e)))?;
    let cgroup = fs::File::open(opts.cgroup).map_err(|e| DatapathError::Attach {
        cgroup: opts.cgroup.into(),
        detail: e.to_string(),
    })?;
    // A cgroup bpf_link is always multi-attach (other tools' sock_ops keep
    // running); the kernel rejects an explicit ALLOW_MULTI flag on links.
    let id = sock_ops
        .attach(&cgroup, CgroupAttachMode::Single)
        .map_err(|e| DatapathError::Attach {
            cgroup: opts.cgroup.into(),
            detail: error_chain(&e),
        })?;
    let link = sock_ops.take_link(id).map_err(map_err)?;
    let fd_link: FdLink = link.try_into().map_err(|e| DatapathError::Attach {
        cgroup: opts.cgroup.into(),
        detail: format!("kernel did not give a bpf_link (needs 5.7+): {e}"),
    })?;
    fd_link
        .pin(dir.join(LINK_PIN))
        .map_err(|e| DatapathError::Pin {
            dir: dir.into(),
            detail: format!("{LINK_PIN}: {e}"),
        })
}

/// aya's errors keep the errno in their source; operators need both.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        out.push_str(": ");
        out.push_str(&s.to_string());
        src = s.source();
    }
    out
}

fn verifier_error(e: &aya::programs::ProgramError) -> String {
    // The verifier log is long; the last lines say what it refused.
    let full = error_chain(e);
    let lines: Vec<&str> = full.lines().collect();
    let tail = lines.len().saturating_sub(6);
    lines[tail..].join(" | ")
}

/// Removes a pin directory and everything pinned in it.
pub fn remove_pin_dir(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if let Err(e) = fs::remove_file(entry.path()) {
                tracing::warn!(path = %entry.path().display(), error = %e, "removing pin");
            }
        }
    }
    let _ = fs::remove_dir(dir);
}

/// Handles to a live datapath, opened from its pins.
pub struct Datapath {
    pub pin_dir: PathBuf,
    /// Every map of [`map::ALL`], in its order, with what the kernel says
    /// of it; also what `restore_pins` pins again.
    maps: Vec<(&'static MapDef, MapData, MapInfo)>,
    link: Option<PinnedLink>,
    /// A reference to the link if re-pinning it failed: it keeps sock_ops
    /// attached while the daemon runs.
    link_unpinned: Option<std::os::fd::OwnedFd>,
    link_program_id: u32,
}

#[derive(Clone, Debug, Serialize)]
pub struct MapUsage {
    pub name: &'static str,
    pub entries: Option<u64>,
    pub capacity: u32,
}

impl Datapath {
    /// Opens and validates an existing pinned datapath (adoption).
    pub fn open(pin_dir: &Path) -> Result<Self, DatapathError> {
        let foreign = |detail: String| DatapathError::Foreign {
            dir: pin_dir.into(),
            abi: abi::ABI_VERSION,
            detail,
        };
        // Type, key and value size of every map: checked because the kernel
        // happily hands back any map at a pin path.
        let mut maps = Vec::new();
        for def in map::ALL {
            let (name, ty, key, value) = (def.name, def.kind, def.key_size, def.value_size);
            let path = pin_dir.join(name);
            let data =
                MapData::from_pin(&path).map_err(|e| foreign(format!("map pin {name}: {e}")))?;
            let info = data
                .info()
                .map_err(|e| foreign(format!("map {name}: {e}")))?;
            let got_ty = info
                .map_type()
                .map_err(|e| foreign(format!("map {name}: {e}")))?;
            if got_ty != ty || info.key_size() != key || info.value_size() != value {
                return Err(foreign(format!(
                    "map {name} is {got_ty:?} key {} value {}, expected {ty:?} key {key} value {value}",
                    info.key_size(),
                    info.value_size()
                )));
            }
            maps.push((def, data, info));
        }
        let link = PinnedLink::from_pin(pin_dir.join(LINK_PIN))
            .map_err(|e| foreign(format!("link pin {LINK_PIN}: {e}")))?;
        let info = FdLink::from(link).info();
        // from(link) consumed the pinned handle; reopen (cheap) to keep one.
        let link = PinnedLink::from_pin(pin_dir.join(LINK_PIN))
            .map_err(|e| foreign(format!("link pin {LINK_PIN}: {e}")))?;
        let info = info.map_err(|e| foreign(format!("link {LINK_PIN}: {e}")))?;
        match info.link_type() {
            Ok(LinkType::Cgroup) => {}
            other => {
                return Err(foreign(format!(
                    "link {LINK_PIN} is {other:?}, expected a cgroup link"
                )));
            }
        }
        let prog_name = loaded_programs()
            .flatten()
            .find(|p| p.id() == info.program_id())
            .and_then(|p| p.name_as_str().map(str::to_owned))
            .unwrap_or_default();
        if !prog::SOCKOPS.starts_with(&prog_name) || prog_name.is_empty() {
            return Err(foreign(format!(
                "link {LINK_PIN} runs program {prog_name:?}, expected {}",
                prog::SOCKOPS
            )));
        }

        Ok(Datapath {
            pin_dir: pin_dir.into(),
            maps,
            link: Some(link),
            link_unpinned: None,
            link_program_id: info.program_id(),
        })
    }

    pub fn link_program_id(&self) -> u32 {
        self.link_program_id
    }

    fn link_program_link_id(&self, link: &FdLink) -> Result<u32, DatapathError> {
        link.info()
            .map(|i| i.id())
            .map_err(|e| map_err(format!("reading the sock_ops link: {e}")))
    }

    /// Someone removed this datapath on purpose: `accel-daemon unload`, or
    /// a daemon of a newer version retiring it. Both switch it to
    /// passthrough before unpinning; lost pins with the datapath still
    /// accelerating are an accident, which `restore_pins` repairs.
    pub fn removed_on_purpose(&self) -> bool {
        !self.pin_dir.join(LINK_PIN).exists()
            && self.mode().is_ok_and(|m| m == abi::MODE_PASSTHROUGH)
    }

    /// The open map of `m`, by its row of the table.
    fn fd(&self, m: &MapDef) -> Result<BorrowedFd<'_>, DatapathError> {
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

    fn config(&self) -> Result<Config, DatapathError> {
        bpf_sys::map_lookup(self.fd(&map::CONFIG)?, &0u32)
            .map_err(|e| elem_err("reading", &map::CONFIG, e))?
            .ok_or_else(|| map_err(format!("{} has no slot 0", map::CONFIG.name)))
    }

    /// Changes the config slot, writing it only when `change` changed it.
    fn change_config(&mut self, change: impl FnOnce(&mut Config)) -> Result<(), DatapathError> {
        let old = self.config()?;
        let mut new = old;
        change(&mut new);
        if new != old {
            self.insert(&map::CONFIG, 0, new)?;
        }
        Ok(())
    }

    pub fn mode(&self) -> Result<u32, DatapathError> {
        Ok(self.config()?.mode)
    }

    pub fn set_mode(&mut self, mode: u32) -> Result<(), DatapathError> {
        self.change_config(|c| c.mode = mode)
    }

    /// Flow control budget in bytes (0 turns flow control off).
    pub fn set_flow_budget(&mut self, bytes: u32) -> Result<(), DatapathError> {
        self.change_config(|c| c.flow_budget = bytes)
    }

    /// Loopback takes part only in the namespaces of meshed pods (a node)
    /// or in every namespace (a standalone host).
    pub fn set_loopback_meshed_only(&mut self, on: bool) -> Result<(), DatapathError> {
        self.change_config(|c| {
            if on {
                c.flags |= abi::CFG_LOOPBACK_MESHED_ONLY;
            } else {
                c.flags &= !abi::CFG_LOOPBACK_MESHED_ONLY;
            }
        })
    }

    /// Writers whose messages are all under this size, to a proxy whose
    /// reader is behind, leave for TCP (0: never).
    pub fn set_stream_small_bytes(&mut self, bytes: u32) -> Result<(), DatapathError> {
        self.change_config(|c| c.stream_small_bytes = bytes)
    }

    /// Owner uid of the sidecar proxy's sockets (proxy-only pods).
    pub fn set_proxy_uid(&mut self, uid: u32) -> Result<(), DatapathError> {
        self.change_config(|c| c.proxy_uid = uid)
    }

    /// `EP_*` flags of loopback in namespaces no pod source listed: the
    /// node's `--pod-acceleration` on a host without a pod source.
    pub fn set_default_ep_flags(&mut self, flags: u32) -> Result<(), DatapathError> {
        self.change_config(|c| c.default_ep_flags = flags)
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
            })
            .collect()
    }

    /// Pins again whatever someone removed (a pin file, the directory, or
    /// the whole bpffs mount) from the handles this daemon holds: without
    /// the pins, the datapath would go away when the daemon exits. Returns
    /// the names re-pinned.
    pub fn restore_pins(&mut self) -> Result<Vec<String>, DatapathError> {
        let link_path = self.pin_dir.join(LINK_PIN);
        let missing: Vec<&str> = self
            .maps
            .iter()
            .map(|(def, ..)| def.name)
            .filter(|n| !self.pin_dir.join(n).exists())
            .collect();
        let link_missing = !link_path.exists();
        if missing.is_empty() && !link_missing {
            return Ok(Vec::new());
        }
        crate::host::ensure_bpffs(&self.pin_dir, true).map_err(|e| map_err(e.to_string()))?;
        fs::create_dir_all(&self.pin_dir).map_err(|e| DatapathError::Pin {
            dir: self.pin_dir.clone(),
            detail: e.to_string(),
        })?;
        let mut restored = Vec::new();
        for (def, data, _) in &self.maps {
            let name = def.name;
            if missing.contains(&name) {
                data.pin(self.pin_dir.join(name))
                    .map_err(|e| DatapathError::Pin {
                        dir: self.pin_dir.clone(),
                        detail: format!("{name}: {e}"),
                    })?;
                restored.push(name.to_string());
            }
        }
        if link_missing {
            // Not PinnedLink::unpin(): that closes the link when the file is
            // already gone, which would detach sock_ops.
            let Some(pinned) = self.link.take() else {
                return Err(map_err(format!(
                    "{LINK_PIN} could not be pinned earlier; the link stays attached while the daemon runs"
                )));
            };
            let fd_link = FdLink::from(pinned);
            // FdLink::pin consumes the link and closes it on failure, which
            // would detach sock_ops: hold a second reference meanwhile.
            let keep = fd_link
                .info()
                .ok()
                .and_then(|i| crate::bpf_sys::link_fd_by_id(i.id()).ok());
            match fd_link.pin(&link_path) {
                Ok(pinned) => {
                    self.link = Some(pinned);
                    restored.push(LINK_PIN.to_string());
                }
                Err(e) => {
                    self.link_unpinned = keep;
                    return Err(DatapathError::Pin {
                        dir: self.pin_dir.clone(),
                        detail: format!(
                            "{LINK_PIN}: {e} (the link stays attached while the daemon runs)"
                        ),
                    });
                }
            }
        }
        Ok(restored)
    }

    /// Each sockhash with its pin, for the drain check.
    fn sockhashes(&self) -> Vec<(BorrowedFd<'_>, PathBuf)> {
        self.drained()
            .map(|(def, fd)| (fd, self.pin_dir.join(def.name)))
            .collect()
    }

    /// The maps drained before unload (the sockhashes), open.
    fn drained(&self) -> impl Iterator<Item = (&'static MapDef, BorrowedFd<'_>)> {
        self.maps
            .iter()
            .filter(|(def, ..)| def.cleanup == Cleanup::Drain)
            .map(|(def, data, _)| (*def, data.fd().as_fd()))
    }

    /// Stops recording and redirecting, waits until every receive queue the
    /// datapath filled has been read, then detaches and unpins. Sockets keep
    /// working over TCP. If readers do not catch up within `timeout`, the
    /// datapath is left attached in passthrough (nothing new is accelerated,
    /// nothing is lost) and an error says so, unless `force` is set.
    pub fn unload(mut self, timeout: Duration, force: bool) -> Result<UnloadReport, DatapathError> {
        // 1. Passthrough: sock_ops records nothing new; sk_msg switches every
        //    socket to TCP at its next send (order-safe, see datapath.bpf.c).
        self.set_mode(abi::MODE_PASSTHROUGH)?;
        // 2. Drain: removing a socket from the sockhash frees what is still
        //    queued on it, so wait until the drain check sees no queue.
        let start = Instant::now();
        let outcome = wait_for_empty_queues(&self.sockhashes(), timeout);
        let drain_proven = matches!(outcome, Drained::Proven);
        match outcome {
            Drained::Proven => {}
            Drained::Unproven(why) => {
                tracing::warn!(%why, "cannot inspect receive queues; waited {timeout:?} instead");
            }
            Drained::Pending(n) if force => {
                tracing::warn!(
                    sockets = n,
                    "--force: removing the datapath with unread data queued"
                );
            }
            Drained::Pending(n) => {
                return Err(DatapathError::Map(format!(
                    "{n} sockets still hold redirected data their applications have not read \
                     after {timeout:?}; nothing was lost: the datapath is in passthrough (no new \
                     acceleration) and stays pinned. Run unload again later, or add --force to \
                     remove it now and discard that data"
                )));
            }
        }
        // 3. Detach sock_ops.
        let link = self
            .link
            .take()
            .ok_or_else(|| map_err("sock_ops link already released"))?;
        let fd_link = link
            .unpin()
            .map_err(|e| map_err(format!("unpinning {LINK_PIN}: {e}")))?;
        // Detach for every holder, not only our fd: a daemon still running
        // holds the link too.
        crate::bpf_sys::link_detach_by_id(self.link_program_link_id(&fd_link)?)
            .map_err(|e| map_err(format!("detaching sock_ops: {e}")))?;
        fd_link
            .detach()
            .map_err(|e| map_err(format!("detaching sock_ops: {e}")))?;
        let sockets_left = self
            .drained()
            .filter_map(|(def, fd)| count_keys(fd, def.key_size))
            .sum();
        // 4. Unpin: the last reference to the maps goes with the pins.
        let dir = self.pin_dir.clone();
        drop(self);
        remove_pin_dir(&dir);
        if dir.exists() {
            return Err(map_err(format!(
                "{} still exists after unload: remove it by hand",
                dir.display()
            )));
        }
        Ok(UnloadReport {
            drained_for: start.elapsed(),
            sockets_released: sockets_left,
            drain_proven,
        })
    }
}

enum Drained {
    /// The drain check saw every ingress queue empty, twice in a row.
    Proven,
    /// The check could not run (no kernel BTF, or neither an iterator nor
    /// the per-socket probe loads); waited the timeout instead.
    Unproven(String),
    /// Sockets with unread data after the timeout.
    Pending(usize),
}

/// Loads the drain check for the sockhashes (open fd, pin) and polls it
/// (see [`crate::drain::poll`]).
fn wait_for_empty_queues(
    sockhashes: &[(std::os::fd::BorrowedFd<'_>, PathBuf)],
    timeout: Duration,
) -> Drained {
    use crate::drain::{DrainCheck, Scope, Verdict, poll};
    let pins: Vec<_> = sockhashes
        .iter()
        .map(|(fd, pin)| (*fd, pin.as_path()))
        .collect();
    let check = match DrainCheck::load(&pins) {
        Ok(c) => c,
        Err(e) => {
            thread::sleep(timeout.min(Duration::from_secs(5)));
            return Drained::Unproven(e.to_string());
        }
    };
    match poll(
        |scope: Scope<'_>| check.pending(scope),
        timeout,
        Duration::from_millis(50),
    ) {
        Ok(Verdict::Empty) => Drained::Proven,
        Ok(Verdict::Pending(n)) => Drained::Pending(n),
        Err(e) => Drained::Unproven(e.to_string()),
    }
}

#[derive(Debug)]
pub struct UnloadReport {
    pub drained_for: Duration,
    pub sockets_released: u64,
    /// The drain check proved every receive queue empty before unpinning.
    pub drain_proven: bool,
}

/// A map operation that failed, naming the map; a full map says so and
/// what the operator can do about it.
fn elem_err(what: &str, m: &MapDef, e: std::io::Error) -> DatapathError {
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
fn count_keys(fd: BorrowedFd<'_>, key_size: u32) -> Option<u64> {
    bpf_sys::map_count(fd, key_size).ok()
}

/// Datapaths of other ABI versions next to ours (e.g. `../v0` when we are
/// `v1`), found so an upgrade can retire them cleanly.
pub fn other_versions(pin_dir: &Path) -> Vec<PathBuf> {
    let Some(root) = pin_dir.parent() else {
        return Vec::new();
    };
    let Ok(entries) = fs::read_dir(root) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p != pin_dir
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with('v') && n[1..].parse::<u32>().is_ok())
                && p.join(LINK_PIN).exists()
        })
        .collect()
}

/// Retires a datapath of another ABI version: passthrough if its config
/// map looks like ours, wait for its receive queues like `unload` does,
/// detach its link, unpin. Returns false (and leaves it in place, in
/// passthrough) when readers did not catch up: it is retried at the next
/// start rather than losing their data.
pub fn retire_foreign(dir: &Path, timeout: Duration, force: bool) -> bool {
    use std::os::fd::AsFd;
    // Its config may be of another size: `mode` is the first field in
    // every ABI version, so only that is written.
    let config_path = dir.join(map::CONFIG.name);
    if let Ok(data) = MapData::from_pin(&config_path)
        && let Ok(info) = data.info()
        && info.map_type().ok() == Some(MapType::Array)
        && let Err(e) = crate::bpf_sys::array_slot0_set_first_u32(
            &data.fd().as_fd(),
            info.value_size(),
            abi::MODE_PASSTHROUGH,
        )
    {
        tracing::warn!(dir = %dir.display(), error = %e, "could not switch the old datapath to passthrough");
    }
    // Older versions have only some of our sockhashes.
    let sockhashes: Vec<(MapData, PathBuf)> = map::drained()
        .map(|m| dir.join(m.name))
        .filter_map(|pin| MapData::from_pin(&pin).ok().map(|data| (data, pin)))
        .filter(|(data, _)| data.info().and_then(|i| i.map_type()).ok() == Some(MapType::SockHash))
        .collect();
    let borrowed: Vec<_> = sockhashes
        .iter()
        .map(|(data, pin)| (data.fd().as_fd(), pin.clone()))
        .collect();
    if !borrowed.is_empty()
        && let Drained::Pending(n) = wait_for_empty_queues(&borrowed, timeout)
        && !force
    {
        tracing::warn!(
            dir = %dir.display(),
            sockets = n,
            "old datapath keeps sockets with unread data: left in passthrough, retried at next start"
        );
        return false;
    }
    if let Ok(link) = PinnedLink::from_pin(dir.join(LINK_PIN)) {
        detach_quietly(link);
    }
    remove_pin_dir(dir);
    tracing::info!(dir = %dir.display(), "retired datapath");
    true
}
