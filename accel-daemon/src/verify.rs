//! `accel-daemon verify`: the PSH-flag check of accel-verify, with the
//! daemon's own view as the explanation for connections that crossed TCP.

use std::{
    io::IsTerminal,
    net::{IpAddr, SocketAddr},
    path::Path,
    process::ExitCode,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use accel_verify::{ConnKey, Explainer, VerifyArgs};

use crate::{datapath::Datapath, state::DaemonState};

/// Explains, per connection, from the daemon's state file (gate, pods and
/// their opt-outs) and the pinned maps (mode, counters).
struct DaemonExplainer {
    /// A node-level reason that explains every connection, if any.
    node: Option<String>,
    state: Option<DaemonState>,
    counters: Vec<(String, u64)>,
}

impl DaemonExplainer {
    fn load(pin_dir: &Path, state_dir: &Path) -> Self {
        let state = DaemonState::read(state_dir);
        let mut counters = Vec::new();
        let node = match (&state, pin_dir.exists()) {
            (Some(s), _) if !s.accelerated => Some(format!("node not accelerated: {}", s.reason)),
            (_, false) => Some(format!(
                "no datapath pinned at {} (daemon not installed or unloaded)",
                pin_dir.display()
            )),
            (_, true) => match Datapath::open(pin_dir) {
                Ok(dp) if dp.mode().ok() == Some(accel_bpf::abi::MODE_PASSTHROUGH) => {
                    Some("datapath is draining (passthrough)".to_string())
                }
                Ok(dp) => {
                    counters = dp
                        .stats()
                        .map(|s| {
                            s.into_iter()
                                .map(|(k, v)| (k.name().to_string(), v))
                                .collect()
                        })
                        .unwrap_or_default();
                    None
                }
                Err(e) => Some(format!("datapath pins unreadable: {e}")),
            },
        };
        DaemonExplainer {
            node,
            state,
            counters,
        }
    }

    fn counter(&self, name: &str) -> u64 {
        self.counters
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| *v)
            .unwrap_or(0)
    }

    fn takes_part(&self, ip: IpAddr) -> bool {
        let Some(state) = &self.state else {
            return false;
        };
        if ip.is_loopback() || ip == IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 6]) {
            return true;
        }
        state
            .endpoints
            .iter()
            .any(|e| e.parse::<IpAddr>().ok() == Some(ip))
    }

    fn opt_out(&self, a: SocketAddr, b: SocketAddr) -> Option<String> {
        let state = self.state.as_ref()?;
        for pod in &state.pods {
            for (mine, other) in [(a, b), (b, a)] {
                if !pod.ips.contains(&mine.ip()) {
                    continue;
                }
                if pod.exclude_inbound_ports.contains(&mine.port()) {
                    return Some(format!(
                        "{} excludes inbound port {}",
                        pod.name,
                        mine.port()
                    ));
                }
                if pod.exclude_outbound_ports.contains(&other.port()) {
                    return Some(format!(
                        "{} excludes outbound port {}",
                        pod.name,
                        other.port()
                    ));
                }
                if let Some(c) = pod
                    .exclude_outbound_ip_ranges
                    .iter()
                    .find(|c| crate::endpoints::cidr_contains(c, other.ip()))
                {
                    return Some(format!("{} excludes outbound range {c}", pod.name));
                }
            }
        }
        None
    }
}

impl Explainer for DaemonExplainer {
    fn explain(&self, conn: &ConnKey) -> Option<String> {
        if let Some(node) = &self.node {
            return Some(node.clone());
        }
        let (a, b) = (conn.a, conn.b);
        if !self.takes_part(a.ip()) && !self.takes_part(b.ip()) {
            return Some(format!(
                "unmeshed: neither {} nor {} is a meshed endpoint on this node",
                a.ip(),
                b.ip()
            ));
        }
        if let Some(why) = self.opt_out(a, b) {
            return Some(format!("pod opt-out: {why}"));
        }
        let loopback_only = a.ip().is_loopback() && b.ip().is_loopback();
        if loopback_only && self.state.as_ref().is_some_and(|s| s.loopback_meshed_only) {
            return Some(
                "loopback outside a listed pod, or the kernel cannot tell the namespace \
                 (needs bpf_get_netns_cookie in sock_ops, 5.15+)"
                    .to_string(),
            );
        }
        let guarded = [
            (
                "app_blocking_not_recorded",
                "blocking application sockets kept on TCP",
            ),
            (
                "app_blocking_seen_later",
                "application sockets seen blocking later",
            ),
            (
                "app_receives_by_tcp",
                "sidecar sockets sending to mode-auto applications by TCP (the application's \
                 own sends are redirected; annotate the pod app-safe to redirect both ways)",
            ),
        ]
        .iter()
        .filter(|(c, _)| self.counter(c) > 0)
        .map(|(c, what)| format!("{} {what}", self.counter(c)))
        .collect::<Vec<_>>();
        if !guarded.is_empty() {
            return Some(format!(
                "application guard (see `accel-daemon status`, held back): {}",
                guarded.join("; ")
            ));
        }
        let refused: u64 = self
            .counters
            .iter()
            .filter(|(n, _)| n.starts_with("refused"))
            .map(|(_, v)| v)
            .sum();
        let short_lived = self.counter("short_lived_left_on_tcp");
        let short_lived = if short_lived > 0 {
            format!(
                "; {short_lived} connections to destinations of short-lived connections left on \
                 TCP on purpose (`--short-lived-after`)"
            )
        } else {
            String::new()
        };
        Some(format!(
            "an end that takes part was not paired or fell back to TCP: {refused} pairings \
             refused, {} flow-control fallbacks, {} peers gone so far{short_lived} (see \
             `accel-daemon status`)",
            self.counter("flow_reader_behind_to_tcp"),
            self.counter("redirect_failed")
        ))
    }
}

pub fn run(args: &VerifyArgs, pod: Option<&str>, pin_dir: &Path, state_dir: &Path) -> ExitCode {
    let mut args = args.clone();
    if let Some(pod) = pod {
        match crate::verify_pod::resolve(pod, state_dir) {
            Ok(crate::verify_pod::PodNetns::Path(p)) => args.netns = Some(p),
            Ok(crate::verify_pod::PodNetns::Pid(pid)) => args.pid = Some(pid),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let args = &args;
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
