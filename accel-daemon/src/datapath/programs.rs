//! The datapath's programs as the kernel counts them: runs and run time.
//! The kernel counts only while its BPF statistics are on (the sysctl
//! `kernel.bpf_stats_enabled`, or a process holding `BPF_ENABLE_STATS`, as
//! `accel-bench --bpf-stats` does), which costs every BPF program on the
//! node tens of nanoseconds a run; off, both figures stay where they were.

use accel_bpf::{map, prog};
use aya::programs::loaded_programs;
use serde::Serialize;

use super::Datapath;

#[derive(Clone, Debug, Serialize)]
pub struct ProgramRuns {
    pub name: String,
    pub id: u32,
    /// Runs counted since the program was loaded.
    pub runs: u64,
    /// Their total run time, in nanoseconds.
    pub run_time_ns: u64,
}

impl Datapath {
    /// The sock_ops program of the cgroup link, and the sk_msg program
    /// attached to this datapath's sockhash (found by the map it uses).
    pub fn program_runs(&self) -> Vec<ProgramRuns> {
        let sockhash = self
            .maps
            .iter()
            .find(|(def, ..)| def.name == map::SOCKHASH.def.name)
            .map(|(_, _, info)| info.id());
        loaded_programs()
            .flatten()
            .filter(|p| {
                p.id() == self.link_program_id
                    || (p
                        .name_as_str()
                        .is_some_and(|n| !n.is_empty() && prog::SK_MSG.starts_with(n))
                        && sockhash.is_some_and(|id| {
                            p.map_ids().ok().flatten().is_some_and(|m| m.contains(&id))
                        }))
            })
            .map(|p| ProgramRuns {
                name: p.name_as_str().unwrap_or_default().to_owned(),
                id: p.id(),
                runs: p.run_count(),
                run_time_ns: u64::try_from(p.run_time().as_nanos()).unwrap_or(u64::MAX),
            })
            .collect()
    }
}
