//! Where a benchmark's processes run: the one placement type of every
//! runner (loopback, mesh, run-local). The client side is the client (or
//! load generator) with, in the sidecar topology, sidecar A; the server side
//! is the server (echo, nginx) with sidecar B.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Placement {
    /// Both sides on CPU 0 (`pinned` in results saved before 2026-12-06).
    #[value(alias = "pinned")]
    #[serde(alias = "pinned")]
    OneCore,
    /// Client side on CPU 0, server side on CPU 1.
    TwoCore,
    /// No affinity: the scheduler places every process.
    Unpinned,
}

impl Placement {
    pub fn name(self) -> &'static str {
        match self {
            Placement::OneCore => "one-core",
            Placement::TwoCore => "two-core",
            Placement::Unpinned => "unpinned",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Placement::OneCore => "one core (client side and server side on CPU 0)",
            Placement::TwoCore => "two cores (client side on CPU 0, server side on CPU 1)",
            Placement::Unpinned => "unpinned (no affinity; the scheduler places every process)",
        }
    }

    /// The CPUs of the client side and of the server side; `None`: no
    /// affinity.
    pub fn cpus(self) -> (Option<usize>, Option<usize>) {
        match self {
            Placement::OneCore => (Some(0), Some(0)),
            Placement::TwoCore => (Some(0), Some(1)),
            Placement::Unpinned => (None, None),
        }
    }

    /// The `taskset -c` lists of the client side and of the server side on
    /// a machine with `ncpu` online CPUs (unpinned: all of them).
    pub fn cpu_lists(self, ncpu: usize) -> (String, String) {
        let all = format!("0-{}", ncpu.max(1) - 1);
        let (c, s) = self.cpus();
        let list = |cpu: Option<usize>| cpu.map_or_else(|| all.clone(), |n| n.to_string());
        (list(c), list(s))
    }

    /// Drops the two-core placement on a machine with fewer than two CPUs,
    /// saying so; removes repeats.
    pub fn usable(placements: &[Placement], ncpu: usize, who: &str) -> Vec<Placement> {
        let mut out: Vec<Placement> = Vec::new();
        for &p in placements {
            if out.contains(&p) {
                continue;
            }
            if p == Placement::TwoCore && ncpu < 2 {
                eprintln!("{who}: only {ncpu} CPU online; skipping the two-core placement");
                continue;
            }
            out.push(p);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn older_mesh_results_read_pinned_as_one_core() {
        let p: Placement = serde_json::from_str("\"pinned\"").expect("parses");
        assert_eq!(p, Placement::OneCore);
        assert_eq!(
            serde_json::to_string(&Placement::TwoCore).expect("serializes"),
            "\"two-core\""
        );
    }

    #[test]
    fn cpu_lists_follow_the_placement() {
        assert_eq!(Placement::OneCore.cpu_lists(4), ("0".into(), "0".into()));
        assert_eq!(Placement::TwoCore.cpu_lists(4), ("0".into(), "1".into()));
        assert_eq!(
            Placement::Unpinned.cpu_lists(4),
            ("0-3".into(), "0-3".into())
        );
    }

    #[test]
    fn one_cpu_machines_skip_two_core() {
        let all = [Placement::OneCore, Placement::TwoCore, Placement::OneCore];
        assert_eq!(Placement::usable(&all, 1, "t"), vec![Placement::OneCore]);
        assert_eq!(
            Placement::usable(&all, 2, "t"),
            vec![Placement::OneCore, Placement::TwoCore]
        );
    }
}
