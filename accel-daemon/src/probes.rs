//! Probes for what the datapath needs, by loading one tiny program per
//! capability. The kernel release alone does not say: distributions
//! backport features, and some kernels are built without them.

use accel_bpf::PROBES_OBJ;
use aya::{
    Ebpf,
    programs::{Program, SkMsg, SockOps},
};
use serde::Serialize;

mod fionread;
pub use fionread::FIONREAD_COUNTS_TCP;

#[derive(Clone, Debug, Serialize)]
pub struct Feature {
    pub name: &'static str,
    /// The datapath cannot run without it.
    pub essential: bool,
    pub available: bool,
    pub detail: String,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct ProbeReport {
    pub features: Vec<Feature>,
}

impl ProbeReport {
    pub fn has(&self, name: &str) -> bool {
        self.features.iter().any(|f| f.name == name && f.available)
    }

    /// The first essential feature that is missing, if any.
    pub fn missing_essential(&self) -> Option<&Feature> {
        self.features.iter().find(|f| f.essential && !f.available)
    }
}

pub const NETNS_COOKIE_SOCKOPS: &str = "sock_ops: bpf_get_netns_cookie";

/// (program, feature name, essential)
const PROGRAM_PROBES: &[(&str, &str, bool)] = &[
    (
        "probe_sockops_sockhash_update",
        "sock_ops: bpf_sock_hash_update",
        true,
    ),
    ("probe_sockops_sk_storage", "sock_ops: socket storage", true),
    (
        "probe_sockops_hdr_opt",
        "sock_ops: TCP header options (5.10)",
        true,
    ),
    ("probe_sockops_netns_cookie", NETNS_COOKIE_SOCKOPS, false),
    (
        "probe_sk_msg_redirect_hash",
        "sk_msg: bpf_msg_redirect_hash",
        true,
    ),
    ("probe_sk_msg_sk_storage", "sk_msg: socket storage", true),
    (
        "probe_sk_msg_netns_cookie",
        "sk_msg: bpf_get_netns_cookie",
        false,
    ),
];

pub fn run() -> ProbeReport {
    let mut report = ProbeReport::default();
    let mut ebpf = match Ebpf::load(PROBES_OBJ) {
        Ok(e) => e,
        Err(e) => {
            // Map creation failed: SOCKHASH or SK_STORAGE is missing.
            report.features.push(Feature {
                name: "maps: SOCKHASH and SK_STORAGE",
                essential: true,
                available: false,
                detail: format!("{e:#}"),
            });
            return report;
        }
    };
    report.features.push(Feature {
        name: "maps: SOCKHASH and SK_STORAGE",
        essential: true,
        available: true,
        detail: String::new(),
    });
    report.features.push(fionread::probe(&ebpf));
    for (prog, name, essential) in PROGRAM_PROBES {
        let result = match ebpf.program_mut(prog) {
            Some(Program::SockOps(p)) => SockOps::load(p).map_err(|e| format!("{e:#}")),
            Some(Program::SkMsg(p)) => SkMsg::load(p).map_err(|e| format!("{e:#}")),
            Some(_) => Err("unexpected program type in probe object".to_string()),
            None => Err(format!("probe program {prog} missing from the object")),
        };
        report.features.push(Feature {
            name,
            essential: *essential,
            available: result.is_ok(),
            detail: result.err().map(|d| first_line(&d)).unwrap_or_default(),
        });
    }
    report
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().to_string()
}
