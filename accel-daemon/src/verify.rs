//! `accel-daemon verify`: the PSH-flag check of accel-verify, with the
//! daemon's own view as the explanation for connections that crossed TCP.

use std::{
    io::IsTerminal,
    path::Path,
    process::ExitCode,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use accel_verify::{ConnKey, Explainer, VerifyArgs};

use crate::{datapath::Datapath, report::DaemonState};

/// Explains from the daemon's state file and the pinned maps. Socket-level
/// detail (which exact socket was refused) needs the Kubernetes endpoint
/// source and the pairing counters; the node-level reason is the one an
/// operator acts on first.
struct DaemonExplainer {
    reason: String,
}

impl DaemonExplainer {
    fn load(pin_dir: &Path, state_dir: &Path) -> Self {
        let state = DaemonState::read(state_dir);
        let reason = match (&state, pin_dir.exists()) {
            (Some(s), _) if !s.accelerated => format!("node not accelerated: {}", s.reason),
            (_, false) => format!(
                "no datapath pinned at {} (daemon not installed or unloaded)",
                pin_dir.display()
            ),
            (_, true) => match Datapath::open(pin_dir) {
                Ok(dp) if dp.mode().ok() == Some(accel_bpf::abi::MODE_PASSTHROUGH) => {
                    "datapath is draining (passthrough)".to_string()
                }
                Ok(dp) => {
                    let refused: u64 = dp
                        .stats()
                        .map(|s| {
                            s.iter()
                                .filter(|(stat, _)| stat.name().starts_with("refused"))
                                .map(|(_, v)| v)
                                .sum()
                        })
                        .unwrap_or(0);
                    format!(
                        "not recorded by sock_ops: established before the daemon, an endpoint \
                         that does not take part, or a refused pairing ({refused} refused so far, \
                         see `accel-daemon status`)"
                    )
                }
                Err(e) => format!("datapath pins unreadable: {e}"),
            },
        };
        DaemonExplainer { reason }
    }
}

impl Explainer for DaemonExplainer {
    fn explain(&self, _conn: &ConnKey) -> Option<String> {
        Some(self.reason.clone())
    }
}

pub fn run(args: &VerifyArgs, pin_dir: &Path, state_dir: &Path) -> ExitCode {
    let explainer = DaemonExplainer::load(pin_dir, state_dir);
    let cancel = Arc::new(AtomicBool::new(false));
    let flag = cancel.clone();
    // Ctrl-C ends the capture early; the report covers what was seen.
    if let Err(e) = ctrlc_flag(flag) {
        tracing::warn!(error = %e, "cannot install Ctrl-C handler");
    }
    let progress: Option<accel_verify::capture::ProgressFn> =
        std::io::stderr().is_terminal().then(|| {
            Box::new(|p: &accel_verify::capture::Progress| {
                eprint!(
                    "\r capturing: {} packets, {} connections, {:.1}s ",
                    p.packets,
                    p.connections,
                    p.elapsed.as_secs_f64()
                );
            }) as accel_verify::capture::ProgressFn
        });
    match accel_verify::run_with(args, Some(&explainer), cancel, progress) {
        Ok((report, code)) => {
            if std::io::stderr().is_terminal() {
                eprintln!();
            }
            if args.json {
                match report.to_json() {
                    Ok(j) => println!("{j}"),
                    Err(e) => {
                        eprintln!("error: encoding JSON: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            } else {
                print!("{}", report.render_table());
            }
            ExitCode::from(u8::try_from(code).unwrap_or(1))
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn ctrlc_flag(flag: Arc<AtomicBool>) -> std::io::Result<()> {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, sigaction};
    static FLAG: std::sync::OnceLock<Arc<AtomicBool>> = std::sync::OnceLock::new();
    let _ = FLAG.set(flag);
    extern "C" fn on_sigint(_: libc::c_int) {
        if let Some(f) = FLAG.get() {
            f.store(true, Ordering::Relaxed);
        }
    }
    let action = SigAction::new(
        SigHandler::Handler(on_sigint),
        SaFlags::empty(),
        SigSet::empty(),
    );
    // SAFETY: the handler only stores to an atomic.
    unsafe { sigaction(nix::sys::signal::Signal::SIGINT, &action) }
        .map(|_| ())
        .map_err(std::io::Error::from)
}
