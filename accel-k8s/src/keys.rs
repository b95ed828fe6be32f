//! Names the daemon, the installer and users share: labels, annotations and
//! the field manager. One place, so a rename cannot leave one side behind.

/// The product's name: field manager for server-side apply, `app.kubernetes.io/name`,
/// event reporting component.
pub const PRODUCT: &str = "sidecar-accel";

/// Field manager of the installer's server-side applies and of the daemon's
/// node status patches (`fieldManager` on the merge patch).
pub const FIELD_MANAGER: &str = PRODUCT;

/// Default namespace of the add-on.
pub const DEFAULT_NAMESPACE: &str = "sidecar-accel-system";

/// Name of the node daemon's DaemonSet (and its container).
pub const DAEMONSET: &str = "accel-daemon";

/// The node daemon's executable, on `PATH` in its image (the image's
/// entrypoint: the DaemonSet passes only args). `accel-installer verify`
/// runs `accel-daemon verify` in the daemon's container through pods/exec.
pub const DAEMON_BINARY: &str = "accel-daemon";

/// Node label: `"true"` when the node's daemon accelerates, `"false"` when it
/// runs unaccelerated (the reason is in [`NODE_STATUS_ANNOTATION`]). Absent:
/// no daemon has reported on this node. A label, so `kubectl get nodes -L` and
/// node selectors can use it.
pub const ACCELERATED_LABEL: &str = "sidecar-accel.io/accelerated";

/// Node annotation: the daemon's report as JSON ([`crate::node::NodeStatus`]).
pub const NODE_STATUS_ANNOTATION: &str = "sidecar-accel.io/status";

/// Node annotation the installer sets to ask the node's daemon to drain and
/// detach the datapath (`accel-installer uninstall`). Its value is a token
/// the daemon echoes in its status once the datapath is gone.
pub const UNLOAD_REQUEST_ANNOTATION: &str = "sidecar-accel.io/unload-requested";

/// Pod annotation: `"false"` keeps a meshed pod's traffic on TCP (per-pod
/// opt-out); a mode (`"auto"`, `"app-safe"`, `"all"`, `"proxy-only"`)
/// chooses what of the pod takes part. `"true"` or absent: the daemon's
/// `--pod-acceleration` (see `mesh::classify`).
pub const POD_OPT_OUT_ANNOTATION: &str = "sidecar-accel.io/accelerate";

/// Istio's per-pod interception opt-outs, honoured as they are written for Istio.
pub const ISTIO_EXCLUDE_INBOUND_PORTS: &str = "traffic.sidecar.istio.io/excludeInboundPorts";
pub const ISTIO_EXCLUDE_OUTBOUND_PORTS: &str = "traffic.sidecar.istio.io/excludeOutboundPorts";
pub const ISTIO_EXCLUDE_OUTBOUND_IP_RANGES: &str =
    "traffic.sidecar.istio.io/excludeOutboundIPRanges";

/// Set by Istio's (and ASM's) injector on every injected pod.
pub const ISTIO_SIDECAR_STATUS: &str = "sidecar.istio.io/status";

/// The sidecar container's name in Istio and ASM.
pub const ISTIO_PROXY_CONTAINER: &str = "istio-proxy";
