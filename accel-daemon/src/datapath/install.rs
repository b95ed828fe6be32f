//! Installing a fresh datapath: the operator's map sizes and options,
//! loading the flow-control build (or the plain one where allowed),
//! attaching and pinning into a staging directory, the self-test, and the
//! rename into place.

use std::{
    fs,
    path::{Path, PathBuf},
};

use accel_bpf::{DATAPATH_FLOW_OBJ, DATAPATH_OBJ, abi::Config, global, map, prog};
use aya::{
    Btf, EbpfLoader,
    maps::{Array, MapData, SockHash},
    programs::{
        CgroupAttachMode, SkMsg, SockOps,
        links::{FdLink, Link, PinnedLink},
    },
};
use serde::Serialize;

use super::{Datapath, DatapathError, LINK_PIN, map_err, remove_pin_dir};

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

pub(super) fn detach_quietly(link: PinnedLink) {
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
