//! What the benchmarks need of this machine: its online CPUs, its cgroup v2
//! mount and the accel-daemon binary.

use std::path::PathBuf;

use anyhow::{Context, Result, ensure};

/// Where cgroup v2 is mounted.
pub(crate) fn cgroup2_mount() -> Result<PathBuf> {
    accel_test_harness::find_cgroup2_mount()
        .context("no cgroup v2 mount on this machine (needed to place the traffic)")
}

/// The accel-daemon binary: `arg`, or `accel-daemon` next to this
/// executable; an error that says how to build it when it is missing.
pub(crate) fn locate_daemon(arg: &Option<PathBuf>) -> Result<PathBuf> {
    let path = match arg {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .context("locating own executable")?
            .parent()
            .context("executable has no parent dir")?
            .join("accel-daemon"),
    };
    ensure!(
        path.is_file(),
        "accel-daemon binary not found at {}; build it next to accel-bench with \
         `cargo build --release --workspace --bins` or pass --daemon-bin PATH",
        path.display()
    );
    Ok(path)
}

/// The CPUs this process may run on (1 if the affinity cannot be read).
pub(crate) fn online_cpus() -> usize {
    nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0))
        .map(|set| {
            (0..nix::sched::CpuSet::count())
                .filter(|&i| set.is_set(i).unwrap_or(false))
                .count()
        })
        .unwrap_or(1)
}
