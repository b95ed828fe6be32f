//! `accel-daemon run`: check the input, pass the gate, then serve
//! (metrics, endpoint sync, node agent) until told to stop.

use std::{path::Path, time::Duration};

use accel_k8s::kernel::KernelRelease;
use anyhow::{Context, Result, bail};
use tracing::{error, info, warn};

use crate::{
    cli::{RunArgs, SourceKind},
    datapath::Datapath,
    endpoints::{self, EndpointError, EndpointSource, StaticEndpoints},
    gate::{self, Gate},
    held::Announcement,
    host, kubernetes,
    lend::Owner,
    node_agent, server,
    state::{Check, DaemonState, State},
};

pub fn run(args: RunArgs) -> Result<()> {
    // Everything that can be wrong with the input fails here, before
    // anything is attached, with one line that names the fix.
    args.check_flow_control_choice()
        .map_err(anyhow::Error::msg)?;
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
    let mut sync_ctx = endpoints::SyncContext {
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
            None => gate::decide(&args, &kernel, &cgroup, &state)?,
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
        Gate::On {
            mut dp,
            adopted,
            auto_records_apps,
        } => {
            sync_ctx.auto_records_apps = auto_records_apps;
            dp.set_flow_budget(args.flow_budget_bytes)?;
            dp.set_proxy_uid(args.proxy_uid)?;
            dp.set_stream_small_bytes(args.stream_small_bytes)?;
            dp.set_short_lived_after(args.short_lived_after)?;
            dp.set_default_ep_flags(endpoints::mode_flags(
                sync_ctx.default_acceleration,
                sync_ctx.auto_records_apps,
            ))?;
            // The datapath is attached: from here on a problem with the
            // endpoint set is reported, never a reason to exit (and leave
            // an attached datapath without its daemon).
            if let Some(initial) = &initial {
                match endpoints::sync(&mut dp, initial, &mut sync_ctx) {
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
            sync_ctx.default_acceleration,
            sync_ctx.pod_ids.names(),
        );
    }
    state.flush(&args.state_dir)?;
    // Loading parsed the object and the kernel's BTF (tens of MiB, freed
    // since); hand the freed heap back so the daemon's RSS is what it uses.
    // SAFETY: malloc_trim only releases free memory of the glibc allocator.
    unsafe { libc::malloc_trim(0) };

    runtime.block_on(serve(
        args, state, datapath, listener, source, sync_ctx, agent,
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

async fn serve(
    args: RunArgs,
    state: State,
    mut datapath: Owner<Datapath>,
    listener: std::net::TcpListener,
    mut source: Box<dyn EndpointSource>,
    mut sync_ctx: endpoints::SyncContext,
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
            _ = tick.tick() => sync_endpoints(&state, &mut datapath, source.as_mut(), &mut sync_ctx, &mut held),
            _ = news => sync_endpoints(&state, &mut datapath, source.as_mut(), &mut sync_ctx, &mut held),
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
    sync_ctx: &mut endpoints::SyncContext,
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
        match endpoints::sync(dp, &snap, sync_ctx) {
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
    sync_ctx.held_log.announce_into(held);
    state.set_endpoints(
        &snap,
        sync_ctx.default_acceleration,
        sync_ctx.pod_ids.names(),
    );
}
