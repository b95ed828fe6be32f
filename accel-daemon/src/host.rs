//! Facts about the host the datapath needs: cgroup v2, bpffs, privileges.

use accel_bpf::host::{BPF_FS_MAGIC, CGROUP2_SUPER_MAGIC, parse_cgroup2_mount};
use accel_k8s::kernel::KernelRelease;
use std::{
    fs,
    path::{Path, PathBuf},
};

use nix::sys::statfs::statfs;
use thiserror::Error;

/// Where the datapath is pinned by default; versioned so an old daemon never
/// adopts maps of a different layout.
pub const DEFAULT_PIN_ROOT: &str = "/sys/fs/bpf/sidecar-accel";
pub const BPFFS_MOUNT: &str = "/sys/fs/bpf";

#[derive(Debug, Error)]
pub enum HostError {
    #[error(
        "no cgroup v2 mount found in /proc/self/mountinfo: mount one (mount -t cgroup2 none /sys/fs/cgroup/unified) or pass --cgroup"
    )]
    NoCgroup2,
    #[error(
        "--cgroup {0}: not a cgroup v2 directory (pick a directory under the cgroup2 mount, see `mount -t cgroup2`)"
    )]
    NotCgroup2(PathBuf),
    #[error(
        "--pin-dir {0}: not on a BPF filesystem (mount one with `mount -t bpf bpf {BPFFS_MOUNT}`, or choose a directory under it)"
    )]
    NotBpffs(PathBuf),
    #[error(
        "cannot mount bpffs at {BPFFS_MOUNT}: {0} (mount it yourself: `mount -t bpf bpf {BPFFS_MOUNT}`)"
    )]
    MountBpffs(nix::Error),
    #[error(
        "no bpffs at {BPFFS_MOUNT} from the host: a mount made here would stay in this container and the pins would vanish with it; mount bpffs on the node (`mount -t bpf bpf {BPFFS_MOUNT}`, or systemd's sys-fs-bpf.mount) and restart the daemon"
    )]
    NoHostBpffs,
    #[error(
        "insufficient privileges: {0}. Run as root, or grant CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON and CAP_SYS_ADMIN (the DaemonSet does)"
    )]
    Privileges(String),
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Finds the cgroup v2 mount (unified or hybrid layout) from mountinfo.
pub fn cgroup2_mount() -> Result<PathBuf, HostError> {
    let path = Path::new("/proc/self/mountinfo");
    let text = fs::read_to_string(path).map_err(|source| HostError::Io {
        path: path.into(),
        source,
    })?;
    parse_cgroup2_mount(&text).ok_or(HostError::NoCgroup2)
}

pub fn check_cgroup2_dir(path: &Path) -> Result<(), HostError> {
    match statfs(path) {
        Ok(st) if st.filesystem_type().0 == CGROUP2_SUPER_MAGIC && path.is_dir() => Ok(()),
        _ => Err(HostError::NotCgroup2(path.into())),
    }
}

pub fn is_bpffs(path: &Path) -> bool {
    statfs(path).is_ok_and(|st| st.filesystem_type().0 == BPF_FS_MAGIC)
}

/// Makes sure /sys/fs/bpf is a bpffs when the pin dir lives under it (mounts
/// it if absent, as a node agent must on hosts that do not), then checks
/// that the pin dir's nearest existing ancestor is on bpffs.
pub fn ensure_bpffs(pin_dir: &Path, may_mount: bool) -> Result<(), HostError> {
    let default_mount = Path::new(BPFFS_MOUNT);
    if pin_dir.starts_with(default_mount) && !is_bpffs(default_mount) {
        if !may_mount {
            return Err(HostError::NoHostBpffs);
        }
        nix::mount::mount(
            Some("bpf"),
            default_mount,
            Some("bpf"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .map_err(HostError::MountBpffs)?;
        tracing::info!(mount = BPFFS_MOUNT, "mounted bpffs");
    }
    let mut probe = pin_dir.to_path_buf();
    while !probe.exists() {
        if !probe.pop() {
            return Err(HostError::NotBpffs(pin_dir.into()));
        }
    }
    if is_bpffs(&probe) {
        Ok(())
    } else {
        Err(HostError::NotBpffs(pin_dir.into()))
    }
}

/// Capabilities the daemon needs, by bit number (linux/capability.h).
const NEEDED_CAPS: &[(u32, &str)] = &[
    (12, "CAP_NET_ADMIN"),
    (21, "CAP_SYS_ADMIN"),
    (38, "CAP_PERFMON"),
    (39, "CAP_BPF"),
];

pub fn check_privileges() -> Result<(), HostError> {
    let path = Path::new("/proc/self/status");
    let status = fs::read_to_string(path).map_err(|source| HostError::Io {
        path: path.into(),
        source,
    })?;
    let cap_eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    // CAP_SYS_ADMIN implies BPF/PERFMON on kernels that predate them.
    let has = |bit: u32| cap_eff & (1u64 << bit) != 0;
    let missing: Vec<&str> = NEEDED_CAPS
        .iter()
        .filter(|(bit, _)| !has(*bit) && !((*bit == 38 || *bit == 39) && has(21)))
        .map(|(_, name)| *name)
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(HostError::Privileges(format!(
            "missing {}",
            missing.join(", ")
        )))
    }
}

/// Kernels before 5.11 charge BPF maps and programs to RLIMIT_MEMLOCK, whose
/// default (64 KiB or 8 MiB) is far below what the sockhash needs. Newer
/// kernels ignore it, so a failure only matters (and is only reported) there.
/// The running kernel's release (`uname -r`).
pub fn running_kernel() -> anyhow::Result<KernelRelease> {
    let uts = nix::sys::utsname::uname()?;
    Ok(uts.release().to_string_lossy().parse()?)
}

pub fn raise_memlock_limit(kernel: &KernelRelease) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    const INFINITY: u64 = libc::RLIM_INFINITY;
    if setrlimit(Resource::RLIMIT_MEMLOCK, INFINITY, INFINITY).is_ok() {
        return;
    }
    // Without CAP_SYS_RESOURCE the soft limit can still rise to the hard one.
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_MEMLOCK) {
        let _ = setrlimit(Resource::RLIMIT_MEMLOCK, hard, hard);
    }
    if (kernel.major, kernel.minor) < (5, 11) {
        tracing::warn!(
            "cannot lift RLIMIT_MEMLOCK (needs CAP_SYS_RESOURCE); kernel {kernel} charges BPF maps to it and may refuse them"
        );
    }
}
