//! The kernel's run-time statistics of BPF programs (`--bpf-stats`): on
//! while a [`BpfStats`] lives (`BPF_ENABLE_STATS`: reference-counted by the
//! kernel and off again when the last holder closes, even if this process
//! dies), and read from `accel-daemon status --json` (`.datapath.programs`)
//! into the counters the runners already diff after every run.

use std::{
    collections::BTreeMap,
    os::fd::{FromRawFd, OwnedFd},
};

use anyhow::{Result, bail};

/// Counter-name prefixes of a program's runs and run time (ns).
pub const RUNS: &str = "prog_runs.";
pub const RUN_NS: &str = "prog_run_ns.";

/// Keeps the kernel counting every BPF program's runs and run time. Each
/// run then costs tens of nanoseconds more, on every side of a comparison.
pub struct BpfStats(#[allow(dead_code)] OwnedFd);

impl BpfStats {
    /// On while the result lives when `on` (a runner's `--bpf-stats`).
    pub fn when(on: bool) -> Result<Option<Self>> {
        on.then(Self::enable).transpose()
    }

    fn enable() -> Result<Self> {
        const BPF_ENABLE_STATS: libc::c_long = 32;
        const BPF_STATS_RUN_TIME: u32 = 0;
        // union bpf_attr { struct { __u32 type; } enable_stats; ... }
        let mut attr = BPF_STATS_RUN_TIME;
        // SAFETY: a valid, initialised attr of the size passed.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_ENABLE_STATS,
                &mut attr as *mut u32,
                std::mem::size_of::<u32>(),
            )
        };
        if fd < 0 {
            bail!(
                "--bpf-stats: BPF_ENABLE_STATS failed ({}); it needs root (CAP_SYS_ADMIN) and \
                 Linux 5.8 or later",
                std::io::Error::last_os_error()
            );
        }
        let fd = i32::try_from(fd)?;
        // SAFETY: the kernel just returned this descriptor; nothing else owns it.
        Ok(BpfStats(unsafe { OwnedFd::from_raw_fd(fd) }))
    }
}

/// `.datapath.programs` of a status, as counters: `prog_runs.NAME` and
/// `prog_run_ns.NAME`. Empty for a daemon that does not report them.
pub fn program_counters(status: &serde_json::Value) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for p in status["datapath"]["programs"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let Some(name) = p["name"].as_str() else {
            continue;
        };
        for (prefix, field) in [(RUNS, "runs"), (RUN_NS, "run_time_ns")] {
            if let Some(v) = p[field].as_u64() {
                *out.entry(format!("{prefix}{name}")).or_default() += v;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_become_counters() {
        let status = serde_json::json!({"datapath": {"programs": [
            {"name": "accel_sockops", "id": 7, "runs": 10, "run_time_ns": 1500},
            {"name": "accel_sk_msg", "id": 8, "runs": 4, "run_time_ns": 900},
        ]}});
        let c = program_counters(&status);
        assert_eq!(c["prog_runs.accel_sockops"], 10);
        assert_eq!(c["prog_run_ns.accel_sockops"], 1500);
        assert_eq!(c["prog_run_ns.accel_sk_msg"], 900);
        assert!(program_counters(&serde_json::json!({"datapath": {}})).is_empty());
    }
}
