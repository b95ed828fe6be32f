//! The command line: subcommands and their flags.

use std::{
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
};

use accel_bpf::abi;
use clap::{Args, Parser, Subcommand};

use crate::{datapath::MapSizes, host};

#[derive(Parser)]
#[command(
    name = "accel-daemon",
    version,
    about = "Sidecar acceleration node daemon (eBPF sockmap)"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
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

/// Smallest flow-control budget: one large message must fit (the self-test
/// sends 1 MiB messages, and must see them redirected).
pub const MIN_FLOW_BUDGET: u32 = 1 << 20;

/// `--flow-budget-bytes`: 0 (off) or at least [`MIN_FLOW_BUDGET`].
fn parse_flow_budget(s: &str) -> Result<u32, String> {
    let n: u32 = s
        .parse()
        .map_err(|e| format!("{s:?} is not a byte count from 0 to 4294967295: {e}"))?;
    if n != 0 && n < MIN_FLOW_BUDGET {
        return Err(format!(
            "{n} is below {MIN_FLOW_BUDGET} (1 MiB): a single large message would exceed it, \
             so every large send would go by TCP and the daemon's self-test would fail; \
             use 0 to turn flow control off, or at least {MIN_FLOW_BUDGET}"
        ));
    }
    Ok(n)
}

/// Why `--flow-budget-bytes 0` needs `--allow-no-flow-control`: what an
/// operator accepts by turning flow control off.
pub const NO_FLOW_BUDGET_RISK: &str = "redirected bytes are not bounded: a reader that falls \
     behind holds them until the node's TCP memory limit, and then its senders' send() fails \
     with ENOMEM, which plain TCP never returns";

impl RunArgs {
    /// `--flow-budget-bytes 0` turns flow control off, which changes what
    /// applications can see (ENOMEM under memory pressure instead of a
    /// blocking send): the operator must say so with `--allow-no-flow-control`.
    pub fn check_flow_control_choice(&self) -> Result<(), String> {
        if self.flow_budget_bytes == 0 && !self.allow_no_flow_control {
            return Err(format!(
                "--flow-budget-bytes 0 turns flow control off: {NO_FLOW_BUDGET_RISK}; add \
                 --allow-no-flow-control to accept that, or give a budget of at least \
                 {MIN_FLOW_BUDGET} (the default is 4194304)"
            ));
        }
        Ok(())
    }
}

pub fn default_pin_dir() -> PathBuf {
    Path::new(host::DEFAULT_PIN_ROOT).join(format!("v{}", abi::ABI_VERSION))
}

#[derive(Args)]
pub struct RunArgs {
    /// Versioned directory on bpffs where maps and the sock_ops link are pinned.
    #[arg(long, default_value_os_t = default_pin_dir())]
    pub pin_dir: PathBuf,
    /// cgroup v2 directory to attach sock_ops to [default: root of the cgroup2 mount].
    #[arg(long)]
    pub cgroup: Option<PathBuf>,
    /// Where the daemon records its state for `status`.
    #[arg(long, default_value = "/run/sidecar-accel")]
    pub state_dir: PathBuf,
    /// Address of /healthz, /readyz and /metrics (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:9464")]
    pub metrics_addr: SocketAddr,
    /// Pretend the kernel has this release (for testing the gate).
    #[arg(long)]
    pub kernel_release: Option<String>,
    /// Pretend the kernel has no BTF (for testing the gate).
    #[arg(long)]
    pub pretend_no_btf: bool,
    /// Accelerate even where flow control cannot load (no kernel BTF, or its
    /// build refused by the verifier), and allow --flow-budget-bytes 0.
    /// Redirected bytes are then not bounded by the reader (a slow reader
    /// can exhaust the node's TCP memory, and senders then get ENOMEM);
    /// without the flow-control build an unload cannot prove receive queues
    /// drained either (it waits, then removes the datapath, which can
    /// discard unread bytes). Off: such a node runs unaccelerated and says
    /// why, and a budget of 0 is refused.
    #[arg(long)]
    pub allow_no_flow_control: bool,
    /// Exit non-zero instead of running unaccelerated when a gate fails.
    #[arg(long)]
    pub require_acceleration: bool,
    /// A local non-loopback address that takes part (repeatable).
    #[arg(long = "local-endpoint")]
    pub local_endpoints: Vec<IpAddr>,
    /// File with one local endpoint address per line (# comments); re-read periodically.
    #[arg(long)]
    pub local_endpoints_file: Option<PathBuf>,
    /// TOML file listing the meshed pods on this node (addresses, network
    /// namespace, Istio opt-outs); re-read periodically. With it, loopback
    /// traffic takes part only inside the listed pods. See docs/reference.md.
    #[arg(long)]
    pub pods_file: Option<PathBuf>,
    /// How often to re-read the endpoint source.
    #[arg(long, default_value = "5", value_name = "SECONDS")]
    pub endpoint_sync_secs: u64,
    /// Flow control: redirected bytes a reader may leave unread (at least its
    /// receive buffer, except for a non-blocking writer of large messages
    /// with short TCP phases) before its sender falls back to TCP; at least
    /// 1 MiB, or 0 to turn it off (only with --allow-no-flow-control).
    #[arg(long, default_value_t = 4 * 1024 * 1024, value_parser = parse_flow_budget)]
    pub flow_budget_bytes: u32,
    /// A writer whose messages are all smaller than this, sending to the
    /// sidecar proxy while the proxy's reader is behind, leaves the
    /// sockhash for plain TCP, which coalesces small writes; 0: never.
    #[arg(long, default_value_t = 8192)]
    pub stream_small_bytes: u32,
    /// Connections to a destination stay on plain TCP, all but probes
    /// (one in 16 at most, about 100 a second at most), once this many of
    /// its recorded connections in a row were short (at most 2 sends,
    /// closed within 1 ms), closing about 100 a second or faster: recording
    /// one costs more than it gains. The rule lapses 160 ms after short
    /// connections stop. 0: record every connection;
    /// at most 65535 (the datapath counts a streak that far).
    #[arg(long, default_value_t = 8,
          value_parser = clap::value_parser!(u32)
              .range(0..=i64::from(accel_bpf::abi::SHORT_LIVED_STREAK_MAX)))]
    pub short_lived_after: u32,
    /// How much of a pod takes part when the pod does not say (pods file
    /// `acceleration`, annotation `sidecar-accel.io/accelerate`), and of
    /// loopback in namespaces nobody listed: `auto` (the proxy's sockets,
    /// and the application's only where it cannot tell: non-blocking, and
    /// receiving by TCP), `app-safe` (`auto`, and bytes to the application
    /// are redirected too), `all` (every socket, unguarded) or `proxy-only`.
    #[arg(long, value_enum, default_value_t = PodAcceleration::Auto)]
    pub pod_acceleration: PodAcceleration,
    /// Record the application sockets of `auto` pods even where this
    /// kernel's FIONREAD leaves out bytes received by TCP on sockhash
    /// sockets (known issue I-4; status check "FIONREAD counts TCP bytes").
    /// Their sends stay accelerated, and an application that sizes its
    /// reads with FIONREAD (nginx, Java's available(), .NET's
    /// Socket.Available) is told 0 and can stall. Off: on such a kernel
    /// `auto` pods keep their application sockets on TCP, as `proxy-only`.
    #[arg(long)]
    pub allow_auto_fionread_gap: bool,
    /// Owner uid of the sidecar proxy's sockets, for proxy-only pods
    /// (Istio and ASM run the proxy as 1337).
    #[arg(long, default_value_t = 1337)]
    pub proxy_uid: u32,
    /// Capacity of the sockhash (recorded sockets), 1 to 4194304.
    #[arg(long, default_value_t = MapSizes::default().sockhash,
          value_parser = clap::value_parser!(u32).range(1..=4_194_304))]
    pub sockhash_size: u32,
    /// Capacity of the pairing map (handshakes in flight), 1 to 1048576.
    #[arg(long, default_value_t = MapSizes::default().pairing,
          value_parser = clap::value_parser!(u32).range(1..=1_048_576))]
    pub pairing_size: u32,
    /// Log as JSON lines.
    #[arg(long)]
    pub log_json: bool,
    /// Where the meshed pods come from: `static` (the flags and files above)
    /// or `kubernetes` (a watch of this node's pods; needs --node-name).
    #[arg(long, value_enum, default_value_t = SourceKind::Static)]
    pub endpoint_source: SourceKind,
    /// This node's name, as the downward API gives it (spec.nodeName).
    #[arg(long, env = "NODE_NAME")]
    pub node_name: Option<String>,
    /// kubeconfig for the Kubernetes source [default: $KUBECONFIG or
    /// ~/.kube/config, else the in-cluster service account].
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// The host's /proc: pods' network namespaces are found through it.
    #[arg(long, default_value = "/proc")]
    pub proc_root: PathBuf,
    /// How long an uninstall request waits for accelerated receive queues to drain.
    #[arg(long, default_value = "30", value_name = "SECONDS")]
    pub drain_timeout: u64,
    /// Never mount bpffs: require the host's (in a pod, a mount made by the
    /// daemon would vanish with the container).
    #[arg(long)]
    pub no_mount_bpffs: bool,
    /// Deprecated and ignored: the daemon watches its node object instead of
    /// polling it. Accepted for one release so existing manifests still start.
    #[arg(long, value_name = "SECONDS", hide = true)]
    pub node_poll_secs: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PodAcceleration {
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
pub enum SourceKind {
    Static,
    Kubernetes,
}

#[derive(Args)]
pub struct StatusArgs {
    #[arg(long, default_value_os_t = default_pin_dir())]
    pub pin_dir: PathBuf,
    #[arg(long, default_value = "/run/sidecar-accel")]
    pub state_dir: PathBuf,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct VerifyCmd {
    #[command(flatten)]
    pub capture: accel_verify::VerifyArgs,
    /// Capture inside this meshed pod's network namespace, as the running
    /// daemon found it (from its state dir); what `accel-installer verify`
    /// runs through `kubectl exec`.
    #[arg(long, value_name = "NAMESPACE/NAME", conflicts_with_all = ["netns", "pid"])]
    pub pod: Option<String>,
    /// Pin dir of the datapath to cross-check against.
    #[arg(long, default_value_os_t = default_pin_dir())]
    pub pin_dir: PathBuf,
    /// State dir of the daemon to cross-check against.
    #[arg(long, default_value = "/run/sidecar-accel")]
    pub state_dir: PathBuf,
}

#[derive(Args)]
pub struct UnloadArgs {
    #[arg(long, default_value_os_t = default_pin_dir())]
    pub pin_dir: PathBuf,
    /// The cgroup the datapath was attached to; checked to hold no
    /// attachment of ours afterwards.
    #[arg(long)]
    pub cgroup: Option<PathBuf>,
    /// How long to wait for readers to consume messages already redirected
    /// to them (checked in the kernel, socket by socket).
    #[arg(long, default_value = "30", value_name = "SECONDS")]
    pub drain_timeout: u64,
    /// Remove the datapath even if some sockets still hold unread data.
    #[arg(long)]
    pub force: bool,
}
