//! The gate: whether this node can be accelerated, and with which
//! datapath (adopted from its pins, or installed and self-tested).

use std::{path::Path, time::Duration};

use accel_bpf::abi;
use accel_k8s::kernel::KernelRelease;
use anyhow::Result;
use tracing::info;

use crate::{
    cli::{NO_FLOW_BUDGET_RISK, RunArgs},
    datapath::{self, Datapath, DatapathError, InstallOptions, MapSizes},
    endpoints, probes, selftest,
    state::{Check, State},
};

/// The outcome of the gates: a live datapath, or the reason there is none.
pub enum Gate {
    On {
        dp: Box<Datapath>,
        adopted: bool,
        /// `auto` pods may record application sockets here
        /// (`endpoints::mode_flags`).
        auto_records_apps: bool,
    },
    Off(String),
}

/// Runs the checks (recorded in `state`) and loads or adopts the datapath
/// where they pass.
pub fn decide(
    args: &RunArgs,
    kernel: &KernelRelease,
    cgroup: &Path,
    state: &State,
) -> Result<Gate> {
    let kernel_ok = kernel.meets_minimum();
    state.add_check(Check::new(
        "kernel >= 5.10",
        kernel_ok,
        if kernel_ok {
            String::new()
        } else {
            format!("running {kernel}")
        },
    ));
    state.add_check(Check::new("cgroup v2", true, cgroup.display().to_string()));
    state.add_check(Check::new(
        "bpffs",
        true,
        args.pin_dir.display().to_string(),
    ));
    if !kernel_ok {
        return Ok(Gate::Off(
            accel_k8s::kernel::gate_reason(kernel).unwrap_or_default(),
        ));
    }
    let probes = probes::run();
    state.add_probes(&probes);
    if let Some(f) = probes.missing_essential() {
        return Ok(Gate::Off(format!("kernel lacks {}: {}", f.name, f.detail)));
    }
    let auto_records_apps = auto_records_apps(args, &probes, state);

    for other in datapath::other_versions(&args.pin_dir) {
        info!(dir = %other.display(), "retiring datapath of another version");
        datapath::retire_foreign(&other, Duration::from_secs(10), false);
    }

    if args.pin_dir.exists() {
        // Adopt: a restart or upgrade must not touch live connections.
        let mut dp = Datapath::open(&args.pin_dir)?;
        if dp.mode()? != abi::MODE_ACCELERATE {
            // An unload that stopped to wait for readers left it draining.
            dp.set_mode(abi::MODE_ACCELERATE)?;
            info!("datapath was in passthrough (interrupted unload); accelerating again");
        }
        info!(pin_dir = %args.pin_dir.display(), "adopted the pinned datapath");
        state.add_check(Check::new("datapath", true, "adopted existing pins"));
        if args.flow_budget_bytes == 0 {
            state.add_check(flow_budget_off());
        }
        return Ok(Gate::On {
            dp: Box::new(dp),
            adopted: true,
            auto_records_apps,
        });
    }

    let opts = InstallOptions {
        pin_dir: &args.pin_dir,
        cgroup,
        sizes: MapSizes {
            sockhash: args.sockhash_size,
            pairing: args.pairing_size,
        },
        have_netns_cookie: probes.has(probes::NETNS_COOKIE_SOCKOPS),
        allow_no_flow_control: args.allow_no_flow_control,
        pretend_no_btf: args.pretend_no_btf,
        config: abi::Config {
            flow_budget: args.flow_budget_bytes,
            proxy_uid: args.proxy_uid,
            stream_small_bytes: args.stream_small_bytes,
            short_lived_after: args.short_lived_after,
            default_ep_flags: endpoints::mode_flags(
                args.pod_acceleration.into(),
                auto_records_apps,
            ),
            ..abi::Config::default()
        },
    };
    let installed = datapath::install(&opts, |staged| {
        let report = selftest::run(cgroup, staged, args.proxy_uid).map_err(|e| format!("{e:#}"))?;
        info!(families = ?report.families, bytes = report.redirected_bytes, "self-test passed: loopback redirect verified byte for byte");
        Ok(())
    });
    match installed {
        Ok((dp, variant)) => {
            state.add_check(Check::new("self-test", true, "loopback redirect verified"));
            match variant {
                datapath::Variant::FlowControl if args.flow_budget_bytes == 0 => {
                    state.add_check(flow_budget_off())
                }
                datapath::Variant::FlowControl => state.add_check(Check::new(
                    "flow control",
                    true,
                    "slow readers bounded by their receive buffer",
                )),
                datapath::Variant::Plain { why } => state.add_check(Check::new(
                    "flow control",
                    false,
                    format!(
                        "unavailable, redirected bytes are not bounded; proxy-only pods stay \
                         on TCP (their proxy's sockets cannot be told apart): {why}"
                    ),
                )),
            }
            info!(pin_dir = %args.pin_dir.display(), cgroup = %cgroup.display(), "datapath attached and pinned");
            Ok(Gate::On {
                dp: Box::new(dp),
                adopted: false,
                auto_records_apps,
            })
        }
        Err(e @ DatapathError::NoFlowControl(_)) => {
            state.add_check(Check::new("flow control", false, e.to_string()));
            Ok(Gate::Off(e.to_string()))
        }
        Err(e @ (DatapathError::SelfTest(_) | DatapathError::Load(_))) => {
            state.add_check(Check::new("self-test", false, e.to_string()));
            Ok(Gate::Off(e.to_string()))
        }
        Err(e) => Err(e.into()),
    }
}

/// The failed check of a datapath whose flow control the operator turned off.
fn flow_budget_off() -> Check {
    Check::new(
        "flow control",
        false,
        format!(
            "off (--flow-budget-bytes 0, accepted with --allow-no-flow-control): \
             {NO_FLOW_BUDGET_RISK}"
        ),
    )
}

/// Whether `auto` may record application sockets: where this kernel's
/// FIONREAD leaves out bytes received by TCP on sockhash sockets, only if
/// the operator accepted that (`--allow-auto-fionread-gap`). Recorded in
/// `state` as a check (logged with the others), with what it means for
/// applications.
fn auto_records_apps(args: &RunArgs, probes: &probes::ProbeReport, state: &State) -> bool {
    const CHECK: &str = "application sockets of auto pods";
    if probes.has(probes::FIONREAD_COUNTS_TCP) {
        state.add_check(Check::new(CHECK, true, "recorded while non-blocking"));
        return true;
    }
    let (recorded, detail) = if args.allow_auto_fionread_gap {
        (
            true,
            "recorded although FIONREAD leaves out the bytes they receive by TCP (I-4, \
             --allow-auto-fionread-gap): an application that sizes its reads with FIONREAD \
             can stall",
        )
    } else {
        (
            false,
            "on TCP, as in proxy-only pods: this kernel's FIONREAD leaves out bytes received \
             by TCP on sockhash sockets (I-4); the sidecar hop is still accelerated \
             (--allow-auto-fionread-gap records them anyway)",
        )
    };
    state.add_check(Check::new(CHECK, false, detail));
    recorded
}
