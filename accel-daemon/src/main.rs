//! `accel-daemon`: the node daemon of sidecar acceleration.
//!
//! `run` puts the sockmap datapath on the node (or adopts the one already
//! pinned), `status` reports it, `unload` removes it without losing data.

mod bpf_sys;
mod datapath;
mod drain;
mod endpoints;
mod held;
mod host;
mod kubernetes;
mod lend;
mod node_agent;
mod probes;
mod report;
mod selftest;
mod server;
mod state;
mod verify;

use std::{
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use accel_bpf::abi;
use accel_k8s::kernel::KernelRelease;
use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use tracing::{error, info, warn};

use crate::{
    datapath::{Datapath, DatapathError, InstallOptions, MapSizes},
    endpoints::{EndpointError, EndpointSource, StaticEndpoints},
    held::Announcement,
    lend::Owner,
    report::{DatapathReport, Status},
    state::{Check, DaemonState, State},
};

#[derive(Parser)]
#[command(
    name = "accel-daemon",
    version,
    about = "Sidecar acceleration node daemon (eBPF sockmap)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Load (or adopt) the datapath and serve health and metrics.
    Run(RunArgs),
    /// Report kernel gates, attachment, maps and counters.
    Status(StatusArgs),
    /// Remove the datapath without losing data in flight.
    Unload(UnloadArgs),
    /// Capture TCP and show, per connection, whether its data bypassed the
    /// stack (no PSH-flagged data segments) or crossed it, and why.
    Verify(VerifyCmd),
    #[command(hide = true)]
    SelfTestWorker {
        #[arg(long)]
        pin_dir: PathBuf,
        /// Create the sockets as this user (the proxy's: trusted by every mode).
        #[arg(long)]
        as_uid: u32,
    },
}

fn default_pin_dir() -> PathBuf {
    Path::new(host::DEFAULT_PIN_ROOT).join(format!("v{}", abi::ABI_VERSION))
}

#[derive(Args)]
struct RunArgs {
    /// Versioned directory on bpffs where maps and the sock_ops link are pinned.
    #[arg(long, default_value_os_t = default_pin_dir())]
    pin_dir: PathBuf,
    /// cgroup v2 directory to attach sock_ops to [default: root of the cgroup2 mount].
    #[arg(long)]
    cgroup: Option<PathBuf>,
    /// Where the daemon records its state for `status`.
    #[arg(long, default_value = "/run/sidecar-accel")]
    state_dir: PathBuf,
    /// Address of /healthz, /readyz and /metrics (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:9464")]
    metrics_addr: SocketAddr,
    /// Pretend the kernel has this release (for testing the gate).
    #[arg(long)]
    kernel_release: Option<String>,
    /// Pretend the kernel has no BTF (for testing the gate).
    #[arg(long)]
    pretend_no_btf: bool,
    /// Accelerate even where flow control cannot load (no kernel BTF, or its
    /// build refused by the verifier). Redirected bytes are then not bounded
    /// by the reader (a slow reader can exhaust the node's TCP memory) and
    /// an unload cannot prove receive queues drained (it waits, then removes
    /// the datapath, which can discard unread bytes). Off: such a node runs
    /// unaccelerated and says why.
    #[arg(long)]
    allow_no_flow_control: bool,
    /// Exit non-zero instead of running unaccelerated when a gate fails.
    #[arg(long)]
    require_acceleration: bool,
    /// A local non-loopback address that takes part (repeatable).
    #[arg(long = "local-endpoint")]
    local_endpoints: Vec<IpAddr>,
    /// File with one local endpoint address per line (# comments); re-read periodically.
    #[arg(long)]
    local_endpoints_file: Option<PathBuf>,
    /// TOML file listing the meshed pods on this node (addresses, network
    /// namespace, Istio opt-outs); re-read periodically. With it, loopback
    /// traffic takes part only inside the listed pods. See docs/reference.md.
    #[arg(long)]
    pods_file: Option<PathBuf>,
    /// How often to re-read the endpoint source.
    #[arg(long, default_value = "5", value_name = "SECONDS")]
    endpoint_sync_secs: u64,
    /// Flow control: redirected bytes a reader may leave unread (at least its
    /// receive buffer) before its sender falls back to TCP; 0 turns it off.
    #[arg(long, default_value_t = 4 * 1024 * 1024)]
    flow_budget_bytes: u32,
    /// How much of a pod takes part when the pod does not say (pods file
    /// `acceleration`, annotation `sidecar-accel.io/accelerate`), and of
    /// loopback in namespaces nobody listed: `auto` (the proxy's sockets,
    /// and the application's only where it cannot tell: non-blocking, and
    /// receiving by TCP), `app-safe` (`auto`, and bytes to the application
    /// are redirected too), `all` (every socket, unguarded) or `proxy-only`.
    #[arg(long, value_enum, default_value_t = PodAcceleration::Auto)]
    pod_acceleration: PodAcceleration,
    /// Owner uid of the sidecar proxy's sockets, for proxy-only pods
    /// (Istio and ASM run the proxy as 1337).
    #[arg(long, default_value_t = 1337)]
    proxy_uid: u32,
    /// Capacity of the sockhash (recorded sockets), 1 to 4194304.
    #[arg(long, default_value_t = MapSizes::default().sockhash,
          value_parser = clap::value_parser!(u32).range(1..=4_194_304))]
    sockhash_size: u32,
    /// Capacity of the pairing map (handshakes in flight), 1 to 1048576.
    #[arg(long, default_value_t = MapSizes::default().pairing,
          value_parser = clap::value_parser!(u32).range(1..=1_048_576))]
    pairing_size: u32,
    /// Log as JSON lines.
    #[arg(long)]
    log_json: bool,
    /// Where the meshed pods come from: `static` (the flags and files above)
    /// or `kubernetes` (a watch of this node's pods; needs --node-name).
    #[arg(long, value_enum, default_value_t = SourceKind::Static)]
    endpoint_source: SourceKind,
    /// This node's name, as the downward API gives it (spec.nodeName).
    #[arg(long, env = "NODE_NAME")]
    node_name: Option<String>,
    /// kubeconfig for the Kubernetes source [default: $KUBECONFIG or
    /// ~/.kube/config, else the in-cluster service account].
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// The host's /proc: pods' network namespaces are found through it.
    #[arg(long, default_value = "/proc")]
    proc_root: PathBuf,
    /// How long an uninstall request waits for accelerated receive queues to drain.
    #[arg(long, default_value = "30", value_name = "SECONDS")]
    drain_timeout: u64,
    /// Never mount bpffs: require the host's (in a pod, a mount made by the
    /// daemon would vanish with the container).
    #[arg(long)]
    no_mount_bpffs: bool,
    /// Deprecated and ignored: the daemon watches its node object instead of
    /// polling it. Accepted for one release so existing manifests still start.
    #[arg(long, value_name = "SECONDS", hide = true)]
    node_poll_secs: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum PodAcceleration {
    Auto,
    AppSafe,
    All,
    ProxyOnly,
}

impl From<PodAcceleration> for accel_k8s::pods_file::Acceleration {
    fn from(p: PodAcceleration) -> Self {
        match p {
            PodAcceleration::Auto => Self::Auto,
            PodAcceleration::AppSafe => Self::AppSafe,
            PodAcceleration::All => Self::All,
            PodAcceleration::ProxyOnly => Self::ProxyOnly,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum SourceKind {
    Static,
    Kubernetes,
}

#[derive(Args)]
struct StatusArgs {
    #[arg(long, default_value_os_t = default_pin_dir())]
    pin_dir: PathBuf,
    #[arg(long, default_value = "/run/sidecar-accel")]
    state_dir: PathBuf,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct VerifyCmd {
    #[command(flatten)]
    capture: accel_verify::VerifyArgs,
    /// Pin dir of the datapath to cross-check against.
    #[arg(long, default_value_os_t = default_pin_dir())]
    pin_dir: PathBuf,
    /// State dir of the daemon to cross-check against.
    #[arg(long, default_value = "/run/sidecar-accel")]
    state_dir: PathBuf,
}

#[derive(Args)]
struct UnloadArgs {
    #[arg(long, default_value_os_t = default_pin_dir())]
    pin_dir: PathBuf,
    /// The cgroup the datapath was attached to; checked to hold no
    /// attachment of ours afterwards.
    #[arg(long)]
    cgroup: Option<PathBuf>,
    /// How long to wait for readers to consume messages already redirected
    /// to them (checked in the kernel, socket by socket).
    #[arg(long, default_value = "30", value_name = "SECONDS")]
    drain_timeout: u64,
    /// Remove the datapath even if some sockets still hold unread data.
    #[arg(long)]
    force: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = matches!(&cli.command, Command::Run(a) if a.log_json);
    init_logging(json);
    let result = match cli.command {
        Command::Run(args) => run(args),
        Command::Status(args) => status(args),
        Command::Unload(args) => unload(args),
        Command::Verify(args) => return verify::run(&args.capture, &args.pin_dir, &args.state_dir),
        Command::SelfTestWorker { pin_dir, as_uid } => {
            selftest::worker(&pin_dir, as_uid).map(|r| {
                println!("{}", serde_json::to_string(&r).unwrap_or_default());
            })
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line for the operator; log pipelines get it as JSON too.
            if json {
                error!("{e:#}");
            }
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(json: bool) {
    let rust_log = std::env::var("RUST_LOG").ok();
    let filter =
        tracing_subscriber::EnvFilter::try_new(kubernetes::log_filter(rust_log.as_deref()))
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(kubernetes::log_filter(None)));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// The outcome of the gates: a live datapath, or the reason there is none.
enum Gate {
    On { dp: Box<Datapath>, adopted: bool },
    Off(String),
}

fn run(args: RunArgs) -> Result<()> {
    // Everything that can be wrong with the input fails here, before
    // anything is attached, with one line that names the fix.
    host::check_privileges()?;
    let running = host::running_kernel()?;
    let (kernel, overridden) = match &args.kernel_release {
        Some(r) => (r.parse::<KernelRelease>()?, true),
        None => (running.clone(), false),
    };
    host::raise_memlock_limit(&running);
    let cgroup = match &args.cgroup {
        Some(c) => c.clone(),
        None => host::cgroup2_mount()?,
    };
    host::check_cgroup2_dir(&cgroup)?;
    // In a pod the bpffs must come from the host (a hostPath): one mounted
    // here would vanish with the container, and the pins with it. That is
    // a node that cannot be accelerated, not a daemon that cannot start.
    let no_bpffs = match host::ensure_bpffs(&args.pin_dir, !args.no_mount_bpffs) {
        Ok(()) => None,
        Err(e @ host::HostError::NoHostBpffs) => Some(e.to_string()),
        Err(e) => return Err(e.into()),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let (mut source, mut agent): (Box<dyn EndpointSource>, Option<node_agent::NodeAgent>) =
        match args.endpoint_source {
            SourceKind::Static => (
                Box::new(StaticEndpoints::new(
                    &args.local_endpoints,
                    args.local_endpoints_file.clone(),
                    args.pods_file.clone(),
                )?),
                None,
            ),
            SourceKind::Kubernetes => {
                if !(args.local_endpoints.is_empty()
                    && args.local_endpoints_file.is_none()
                    && args.pods_file.is_none())
                {
                    bail!(
                        "--endpoint-source=kubernetes takes the pods from the API server: drop --local-endpoint, --local-endpoints-file and --pods-file"
                    );
                }
                let node = args
                    .node_name
                    .clone()
                    .filter(|n| !n.trim().is_empty())
                    .context("--endpoint-source=kubernetes needs --node-name (or NODE_NAME from the downward API: fieldRef spec.nodeName)")?;
                let client = runtime.block_on(kube_client(args.kubeconfig.as_deref()))?;
                let _guard = runtime.enter();
                let source = kubernetes::KubernetesEndpoints::new(
                    client.clone(),
                    &node,
                    &args.proc_root,
                    &cgroup,
                );
                let agent = node_agent::NodeAgent::new(
                    accel_k8s::report::NodeReporter::new(client, &node),
                    args.pin_dir.clone(),
                    Duration::from_secs(args.drain_timeout),
                );
                (Box::new(source), Some(agent))
            }
        };
    // A source with nothing complete yet (no first pod list) leaves the
    // maps as they are: a restarted daemon keeps the last state even while
    // the API server is unreachable.
    let initial = match source.snapshot() {
        Ok(s) => Some(s),
        Err(EndpointError::NotReady(why)) => {
            info!(%why, "endpoints not known yet; the datapath keeps its current state");
            None
        }
        Err(e) => return Err(e.into()),
    };
    let mut cookies = endpoints::SyncContext {
        default_acceleration: args.pod_acceleration.into(),
        ..Default::default()
    };
    let listener = std::net::TcpListener::bind(args.metrics_addr).with_context(|| {
        format!(
            "binding the metrics endpoint {}: choose a free address with --metrics-addr",
            args.metrics_addr
        )
    })?;
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;

    let described = source.describe();
    info!(kernel = %kernel, overridden, cgroup = %cgroup.display(), pin_dir = %args.pin_dir.display(), source = %described, "starting");
    let state = State::new(DaemonState {
        pid: std::process::id(),
        version: env!("CARGO_PKG_VERSION").into(),
        kernel_release: kernel.raw.clone(),
        kernel_release_overridden: overridden,
        cgroup: cgroup.clone(),
        pin_dir: args.pin_dir.clone(),
        metrics_addr: bound.to_string(),
        endpoint_source: described,
        ..Default::default()
    });
    // Before anything is attached: a state dir we cannot write would only
    // fail later, with the datapath already in place.
    state
        .flush(&args.state_dir)
        .with_context(|| format!("--state-dir {}", args.state_dir.display()))?;

    // An uninstall in progress for this node: load nothing.
    let pending_unload = match agent.as_mut() {
        Some(a) => runtime.block_on(a.pending_unload()),
        None => None,
    };
    let gate = match (&pending_unload, agent.as_mut()) {
        (Some(token), Some(a)) => {
            runtime.block_on(a.unload_at_start(token.clone(), &state));
            Gate::Off(state.reason())
        }
        _ => match no_bpffs {
            Some(reason) => {
                state.add_check(Check::new("bpffs", false, reason.clone()));
                Gate::Off(reason)
            }
            None => decide_gate(&args, &kernel, &cgroup, &state)?,
        },
    };
    state.read(|d| {
        for c in &d.checks {
            if c.ok {
                info!(check = %c.name, detail = %c.detail, "check passed");
            } else {
                warn!(check = %c.name, detail = %c.detail, "check failed");
            }
        }
    });
    // The serve loop owns the datapath and lends it to /metrics.
    let mut datapath = Owner::new(None);
    match gate {
        Gate::On { mut dp, adopted } => {
            dp.set_flow_budget(args.flow_budget_bytes)?;
            dp.set_proxy_uid(args.proxy_uid)?;
            dp.set_default_ep_flags(endpoints::mode_flags(args.pod_acceleration.into()))?;
            // The datapath is attached: from here on a problem with the
            // endpoint set is reported, never a reason to exit (and leave
            // an attached datapath without its daemon).
            if let Some(initial) = &initial {
                match endpoints::sync(&mut dp, initial, &mut cookies) {
                    Ok(synced) => {
                        log_unresolved(&synced);
                        info!(
                            added = synced.added,
                            removed = synced.removed,
                            "local endpoints applied"
                        );
                    }
                    Err(e) => {
                        error!(error = %e, "applying local endpoints; retried at the next sync")
                    }
                }
            }
            state.set_accelerating();
            state.set_adopted(adopted);
            datapath.put(*dp);
        }
        Gate::Off(reason) => {
            if args.require_acceleration {
                bail!("acceleration unavailable and --require-acceleration is set: {reason}");
            }
            warn!(%reason, "running unaccelerated: traffic is untouched");
            state.set_unaccelerated(reason);
        }
    }
    if let Some(initial) = &initial {
        state.set_endpoints(
            initial,
            cookies.default_acceleration,
            cookies.pod_ids.names(),
        );
    }
    state.flush(&args.state_dir)?;
    // Loading parsed the object and the kernel's BTF (tens of MiB, freed
    // since); hand the freed heap back so the daemon's RSS is what it uses.
    // SAFETY: malloc_trim only releases free memory of the glibc allocator.
    unsafe { libc::malloc_trim(0) };

    runtime.block_on(serve(
        args, state, datapath, listener, source, cookies, agent,
    ))
}

/// A client from --kubeconfig, or inferred (kube's `Config::infer`:
/// $KUBECONFIG or ~/.kube/config, else the in-cluster service account).
/// Nothing is contacted yet: an API server that is down does not stop the
/// daemon.
async fn kube_client(kubeconfig: Option<&Path>) -> Result<kube::Client> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .with_context(|| format!("using kubeconfig {}", path.display()))?
        }
        None => kube::Config::infer().await.context(
            "no Kubernetes configuration: in a cluster the service account is used; elsewhere pass --kubeconfig",
        )?,
    };
    kube::Client::try_from(config).context("building the Kubernetes client")
}

fn log_unresolved(r: &endpoints::SyncResult) {
    if let Some(first) = &r.first_refusal {
        error!(
            refused = r.refused,
            first = %first,
            "the datapath maps refused entries (full?): those pods stay on TCP; fewer pods per node, or larger maps, fix it"
        );
    }
    for (pod, why) in &r.unresolved {
        warn!(%pod, %why, "pod network namespace not resolved: its loopback traffic stays on TCP");
    }
}

fn decide_gate(
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
        return Ok(Gate::On {
            dp: Box::new(dp),
            adopted: true,
        });
    }

    let opts = InstallOptions {
        pin_dir: &args.pin_dir,
        cgroup,
        sizes: MapSizes {
            sockhash: args.sockhash_size,
            pairing: args.pairing_size,
            ..MapSizes::default()
        },
        have_netns_cookie: probes.has(probes::NETNS_COOKIE_SOCKOPS),
        allow_no_flow_control: args.allow_no_flow_control,
        pretend_no_btf: args.pretend_no_btf,
        config: abi::Config {
            flow_budget: args.flow_budget_bytes,
            proxy_uid: args.proxy_uid,
            default_ep_flags: endpoints::mode_flags(args.pod_acceleration.into()),
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

async fn serve(
    args: RunArgs,
    state: State,
    mut datapath: Owner<Datapath>,
    listener: std::net::TcpListener,
    mut source: Box<dyn EndpointSource>,
    mut cookies: endpoints::SyncContext,
    mut agent: Option<node_agent::NodeAgent>,
) -> Result<()> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let addr = listener.local_addr()?;
    let app = server::router(state.clone(), datapath.lend());
    let http = tokio::spawn(async move { axum::serve(listener, app).await });

    state.set_ready();
    info!(metrics_addr = %addr, accelerated = state.accelerated(), "ready (listening on {addr})");

    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut tick = tokio::time::interval(Duration::from_secs(args.endpoint_sync_secs.max(1)));
    tick.tick().await;
    if args.node_poll_secs.is_some() {
        warn!("--node-poll-secs is deprecated and ignored (the node object is watched); drop it");
    }
    let mut node_wake = agent.as_ref().map(node_agent::NodeAgent::waker);
    let notify = source.notifier();
    state.set_source_health(source.health());
    // Held-back sockets to announce as Events on their pods (Kubernetes
    // source), oldest first, at most [`crate::held::ANNOUNCE_MAX`].
    let mut held: Vec<Announcement> = Vec::new();
    let mut restart = false;
    loop {
        let news = async {
            match &notify {
                Some(n) => n.notified().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = sigterm.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
            _ = tick.tick() => sync_endpoints(&state, &mut datapath, source.as_mut(), &mut cookies, &mut held),
            _ = news => sync_endpoints(&state, &mut datapath, source.as_mut(), &mut cookies, &mut held),
            _ = node_agent::wake(&mut node_wake), if agent.is_some() => {
                if let Some(a) = agent.as_mut()
                    && matches!(a.tick(&state, &mut datapath, &mut held).await, node_agent::Next::Restart)
                {
                    restart = true;
                    break;
                }
            }
        }
        // The one write of the state file: once per turn, if it changed.
        if let Err(e) = state.flush(&args.state_dir) {
            warn!(error = %e, "writing state file");
        }
    }
    // The datapath stays pinned and attached: connections keep their
    // acceleration while the daemon is away (restarts, upgrades).
    if restart {
        info!("exiting for a restart (the uninstall request was withdrawn)");
    } else {
        info!("exiting; the datapath stays in place (use `accel-daemon unload` to remove it)");
    }
    http.abort();
    Ok(())
}

fn sync_endpoints(
    state: &State,
    datapath: &mut Owner<Datapath>,
    source: &mut dyn EndpointSource,
    cookies: &mut endpoints::SyncContext,
    held: &mut Vec<Announcement>,
) {
    state.set_invalid_pods(source.invalid_pods().len() as u64);
    let snap = match source.snapshot() {
        Ok(s) => s,
        Err(EndpointError::NotReady(why)) => {
            tracing::debug!(%why, "endpoints not known yet");
            return;
        }
        Err(e) => {
            // Keep the last good set: a typo in a file must not change traffic.
            warn!(error = %e, "endpoint source failed; keeping the last good set");
            return;
        }
    };
    let mut guard = datapath.get_mut();
    if guard.as_ref().is_some_and(Datapath::removed_on_purpose) {
        // Unloaded or retired by someone else: pinning it again would undo
        // that. Dropping our handles releases it.
        *guard = None;
        drop(guard);
        let reason = "the datapath was removed by `accel-daemon unload` or retired by a newer daemon version; restart the daemon to load it again";
        warn!("{reason}");
        state.set_unaccelerated(reason);
        return;
    }
    if let Some(dp) = guard.as_mut() {
        let problem = match dp.restore_pins() {
            Ok(restored) if !restored.is_empty() => {
                warn!(
                    ?restored,
                    "datapath pins were removed by someone else; pinned them again from the daemon's handles"
                );
                state.count_pins_restored(restored.len() as u64);
                String::new()
            }
            Ok(_) => String::new(),
            Err(e) => {
                error!(error = %e, "datapath pins were removed and cannot be restored");
                format!("pins removed and not restorable: {e}")
            }
        };
        state.set_pin_problem(problem);
        match endpoints::sync(dp, &snap, cookies) {
            Ok(r) => {
                log_unresolved(&r);
                if r.added + r.removed > 0 {
                    info!(
                        added = r.added,
                        removed = r.removed,
                        pods = snap.endpoints.len(),
                        "local endpoints updated"
                    );
                }
            }
            Err(e) => warn!(error = %e, "applying local endpoints"),
        }
    }
    drop(guard);
    cookies.held_log.announce_into(held);
    state.set_endpoints(&snap, cookies.default_acceleration, cookies.pod_ids.names());
}

fn status(args: StatusArgs) -> Result<()> {
    let daemon = DaemonState::read(&args.state_dir);
    let daemon_running = daemon.as_ref().is_some_and(|d| {
        Path::new(&format!("/proc/{}", d.pid)).exists() && d.pid != std::process::id()
    });
    let (datapath, datapath_error) = if !args.pin_dir.exists()
        && daemon_running
        && daemon.as_ref().is_some_and(|d| d.accelerated)
    {
        // The daemon still runs a datapath whose pins are gone.
        let why = daemon
            .as_ref()
            .map(|d| d.pin_problem.clone())
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| {
                "they were removed; the daemon re-pins them at its next sync".into()
            });
        (
            None,
            Some(format!(
                "the running daemon's datapath has no pins at {}: {why}",
                args.pin_dir.display()
            )),
        )
    } else if args.pin_dir.exists() {
        match Datapath::open(&args.pin_dir)
            .map_err(anyhow::Error::from)
            .and_then(|dp| DatapathReport::read(&dp))
        {
            Ok(r) => (Some(r), None),
            Err(e) => (None, Some(format!("{e:#}"))),
        }
    } else {
        (None, None)
    };
    let status = Status {
        daemon_running,
        daemon,
        datapath,
        datapath_error,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        status.print_human();
    }
    Ok(())
}

fn unload(args: UnloadArgs) -> Result<()> {
    host::check_privileges()?;
    host::raise_memlock_limit(&host::running_kernel()?);
    if let Some(cg) = &args.cgroup {
        host::check_cgroup2_dir(cg)?;
    }
    if !args.pin_dir.exists() {
        println!(
            "nothing to unload: {} does not exist",
            args.pin_dir.display()
        );
        return Ok(());
    }
    let dp = match Datapath::open(&args.pin_dir) {
        Ok(dp) => dp,
        Err(e @ DatapathError::Foreign { .. }) => {
            warn!(error = %e, "pins are incomplete or foreign; removing what is there");
            if !datapath::retire_foreign(
                &args.pin_dir,
                Duration::from_secs(args.drain_timeout),
                args.force,
            ) {
                bail!(
                    "sockets still hold unread redirected data; run unload again later or add --force"
                );
            }
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    let program_id = dp.link_program_id();
    let report = dp.unload(Duration::from_secs(args.drain_timeout), args.force)?;
    println!(
        "unloaded {}: sock_ops program {program_id} detached, {} sockets returned to plain TCP; \
         receive queues {} after {:.1}s",
        args.pin_dir.display(),
        report.sockets_released,
        if report.drain_proven {
            "proven empty"
        } else {
            "not inspectable (see the warning above), waited"
        },
        report.drained_for.as_secs_f64()
    );
    Ok(())
}
