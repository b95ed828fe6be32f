//! `accel-installer`: preflight, install, status, uninstall, render and verify for the
//! sidecar acceleration add-on, one or several clusters (kubeconfig contexts)
//! per run. A library so tests drive it in-process; `main.rs` is a thin shell.

pub mod chart;
pub mod cluster;
mod exec;
mod install;
pub mod manifests;
mod nodes;
mod preflight;
pub mod source;
mod status;
mod ui;
mod uninstall;
pub mod verify;
pub mod version;

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use accel_k8s::keys;
pub use ui::Ui;

/// Exit codes (also in README.md).
pub mod exit {
    /// Done.
    pub const OK: i32 = 0;
    /// An error: unreachable API server, unknown context, forbidden, a failed call.
    pub const ERROR: i32 = 1;
    /// The command line is wrong.
    pub const USAGE: i32 = 2;
    /// The cluster is not in the state the command needs: preflight found no
    /// eligible node, the rollout did not finish in time, or uninstall stopped
    /// because a node refused or did not answer.
    pub const NOT_DONE: i32 = 3;
}

#[derive(Parser, Debug)]
#[command(
    name = "accel-installer",
    version,
    about = "Install, inspect and remove the sidecar acceleration add-on (eBPF) in Kubernetes clusters"
)]
pub struct Cli {
    /// Kubeconfig file (default: $KUBECONFIG, then ~/.kube/config, then in-cluster).
    #[arg(long, global = true, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context; repeat for several clusters (default: the current context).
    #[arg(long = "context", global = true, value_name = "NAME")]
    pub contexts: Vec<String>,
    /// Namespace of the add-on.
    #[arg(long, short = 'n', global = true, default_value = keys::DEFAULT_NAMESPACE)]
    pub namespace: String,
    /// Daemon image (default: the image in manifests/base/kustomization.yaml, a placeholder
    /// registry until the project publishes one). Its tag must be this installer's version.
    #[arg(long, global = true)]
    pub image: Option<String>,
    /// Render or install an image whose tag is not this installer's version.
    #[arg(long, global = true)]
    pub allow_version_mismatch: bool,
    /// How long install waits for the rollout (default 300s) and uninstall for the nodes to
    /// unload (default 120s). Examples: 90, 90s, 5m.
    #[arg(long, global = true, value_parser = parse_duration, value_name = "DURATION")]
    pub timeout: Option<Duration>,
    /// How often waits poll the API server.
    #[arg(long, global = true, hide = true, value_parser = parse_duration, default_value = "1s")]
    pub poll_interval: Duration,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Which nodes can be accelerated (kernel, OS image, virtual nodes) and which mesh control
    /// plane runs.
    Preflight,
    /// Apply the add-on (server-side apply), wait for the rollout, show which nodes accelerate.
    Install(InstallArgs),
    /// Per node: accelerated or not and why; DaemonSet image and rollout.
    Status,
    /// Drain and unload the datapath on every node, then delete the add-on.
    Uninstall(UninstallArgs),
    /// Print the manifests with the chosen image, namespace and options (multi-document YAML).
    Render(RenderArgs),
    /// Prove acceleration for one pod without a shell on its node: run the node daemon's
    /// `verify` in the pod's network namespace through the API (pods/exec) and print its
    /// per-connection table.
    Verify(VerifyArgs),
}

#[derive(Args, Debug, Clone)]
pub struct DaemonOptions {
    /// The daemon's log filter (RUST_LOG), e.g. info or debug.
    #[arg(long, value_name = "FILTER")]
    pub log_level: Option<String>,
    /// Scrape with a PodMonitor instead of a ServiceMonitor.
    #[arg(long)]
    pub pod_monitor: bool,
}

#[derive(Args, Debug)]
pub struct InstallArgs {
    #[command(flatten)]
    pub daemon: DaemonOptions,
    #[command(flatten)]
    pub chart: source::ChartArgs,
    /// Do not apply the Prometheus Operator monitor even when its API exists.
    #[arg(long)]
    pub no_monitoring: bool,
}

#[derive(Args, Debug)]
pub struct UninstallArgs {
    /// Delete the add-on even when nodes refuse to unload or do not answer (their pinned
    /// datapath then stays until `accel-daemon unload` runs on them).
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct RenderArgs {
    #[command(flatten)]
    pub daemon: DaemonOptions,
    #[command(flatten)]
    pub chart: source::ChartArgs,
    /// Include the Prometheus Operator monitor (needs the monitoring.coreos.com CRDs).
    #[arg(long)]
    pub observability: bool,
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// The pod whose connections to check.
    #[arg(value_name = "NAMESPACE/POD", value_parser = verify::parse_pod)]
    pub pod: verify::PodRef,
    /// Only connections with this port on either side.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,
    /// How long to capture (the daemon's default: 5s). Examples: 10, 10s, 1500ms, 1m.
    #[arg(long, value_parser = parse_capture, value_name = "DURATION")]
    pub duration: Option<Duration>,
}

/// A capture time: a duration above zero.
fn parse_capture(s: &str) -> Result<Duration, String> {
    match parse_duration(s)? {
        d if d.is_zero() => Err(format!("{s:?}: capture for longer than zero (e.g. 5s)")),
        d => Ok(d),
    }
}

/// `90`, `90s`, `1500ms`, `5m`.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (e.g. 90, 90s, 5m)"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => n
            .checked_mul(60)
            .map(Duration::from_secs)
            .ok_or_else(|| format!("{s:?} is too long")),
        _ => Err(format!("unknown unit {unit:?} in {s:?} (ms, s or m)")),
    }
}

impl Cli {
    fn image(&self) -> String {
        self.image.clone().unwrap_or_else(manifests::default_image)
    }
}

impl RenderArgs {
    fn objects(&self, cli: &Cli) -> anyhow::Result<Vec<serde_json::Value>> {
        let monitor = self.observability.then_some(true);
        source::objects(cli, &self.daemon, &self.chart, monitor)
    }
}

impl InstallArgs {
    /// Kustomize: the monitor unless --no-monitoring. A chart: its values
    /// decide, unless --no-monitoring or --pod-monitor says.
    fn objects(&self, cli: &Cli) -> anyhow::Result<Vec<serde_json::Value>> {
        let monitor = match (self.no_monitoring, self.chart.chart.is_some()) {
            (true, _) => Some(false),
            (false, false) => Some(true),
            (false, true) => self.daemon.pod_monitor.then_some(true),
        };
        source::objects(cli, &self.daemon, &self.chart, monitor)
    }
}

/// Runs the installer with `args` (program name first); returns the exit code.
/// `tty`: whether `out` is a terminal (progress redraws in place).
pub fn run<I, T>(args: I, out: &mut dyn Write, err: &mut dyn Write, tty: bool) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
            let text = e.render().to_string();
            let _ = if e.use_stderr() {
                write!(err, "{text}")
            } else {
                write!(out, "{text}")
            };
            return code;
        }
    };
    if let Command::Render(args) = &cli.command {
        let text = args.objects(&cli).and_then(|o| Ok(manifests::to_yaml(&o)?));
        return match text {
            Ok(text) => {
                let _ = write!(out, "{text}");
                exit::OK
            }
            Err(e) => {
                let _ = writeln!(err, "error: {e:#}");
                exit::ERROR
            }
        };
    }
    // Bad input fails before any cluster is contacted.
    let objects = match &cli.command {
        Command::Install(args) => match args.objects(&cli) {
            Ok(o) => o,
            Err(e) => {
                let _ = writeln!(err, "error: {e:#}");
                return exit::ERROR;
            }
        },
        _ => Vec::new(),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = writeln!(err, "error: cannot start the async runtime: {e}");
            return exit::ERROR;
        }
    };
    runtime.block_on(run_clusters(&cli, &objects, out, err, tty))
}

/// The command once per context, each under its own header.
async fn run_clusters(
    cli: &Cli,
    objects: &[serde_json::Value],
    out: &mut dyn Write,
    err: &mut dyn Write,
    tty: bool,
) -> i32 {
    let targets: Vec<Option<&str>> = if cli.contexts.is_empty() {
        vec![None]
    } else {
        cli.contexts.iter().map(|c| Some(c.as_str())).collect()
    };
    let several = targets.len() > 1;
    let mut worst = exit::OK;
    let mut failed = Vec::new();
    for (i, target) in targets.iter().enumerate() {
        let mut ui = Ui::new(out, tty);
        if several && i > 0 {
            ui.blank();
        }
        let outcome = match cluster::connect(cli.kubeconfig.as_deref(), *target).await {
            Ok(cluster) => {
                ui.line(format!(
                    "=== context {} ({}) ===",
                    cluster.context, cluster.url
                ));
                run_one(cli, objects, &cluster, &mut ui).await
            }
            Err(e) => {
                ui.line(format!("=== context {} ===", target.unwrap_or("(current)")));
                Err(e)
            }
        };
        ui.end_progress();
        let code = match outcome {
            Ok(code) => code,
            Err(e) => {
                // Errors are built as single lines; keep it that way if a cause slipped in.
                let text = format!("{e:#}").replace('\n', " ");
                let _ = writeln!(err, "error: {text}");
                exit::ERROR
            }
        };
        if code != exit::OK {
            failed.push(target.unwrap_or("(current)").to_string());
        }
        worst = worst.max(code);
    }
    if several && !failed.is_empty() {
        let _ = writeln!(err, "failed in context(s): {}", failed.join(", "));
    }
    worst
}

async fn run_one(
    cli: &Cli,
    objects: &[serde_json::Value],
    cluster: &cluster::Cluster,
    ui: &mut Ui<'_>,
) -> anyhow::Result<i32> {
    match &cli.command {
        Command::Preflight => preflight::run(cluster, ui).await,
        Command::Install(_) => {
            let timeout = cli.timeout.unwrap_or(Duration::from_secs(300));
            let target = install::Target {
                objects,
                namespace: &cli.namespace,
                timeout,
                poll: cli.poll_interval,
            };
            install::run(cluster, ui, &target).await
        }
        Command::Status => status::run(cluster, ui, &cli.namespace).await,
        Command::Uninstall(args) => {
            let timeout = cli.timeout.unwrap_or(Duration::from_secs(120));
            let opts = uninstall::Options {
                namespace: cli.namespace.clone(),
                timeout,
                poll: cli.poll_interval,
                force: args.force,
            };
            uninstall::run(cluster, ui, &opts).await
        }
        Command::Render(_) => Ok(exit::OK),
        Command::Verify(args) => {
            let opts = verify::Options {
                pod: &args.pod,
                namespace: &cli.namespace,
                port: args.port,
                duration: args.duration,
            };
            verify::run(cluster, ui, &opts).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5h").is_err());
        assert!(parse_duration("18446744073709551615m").is_err());
    }
}
