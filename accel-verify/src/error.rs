//! Errors, each worded to tell the operator what to do next.

use std::path::PathBuf;

/// Everything that can stop a verification run.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The interface does not exist in the target namespace.
    #[error(
        "no network interface named {name:?} in {netns}; list interfaces with `ip link` \
         (or `ip netns exec NAME ip link` / `nsenter -t PID -n ip link` for a namespace)"
    )]
    UnknownInterface {
        /// Interface name as given.
        name: String,
        /// Namespace label.
        netns: String,
    },
    /// Interface name too long or containing NUL.
    #[error("invalid interface name {0:?}: must be 1-15 bytes without NUL")]
    BadInterfaceName(String),
    /// The interface's link type cannot be parsed.
    #[error(
        "interface {name:?} has link type ARPHRD {hatype}, which is not supported \
         (supported: loopback, Ethernet/veth/bridge, raw-IP tun); capture on `lo` or the pod's veth"
    )]
    UnsupportedLinkType {
        /// Interface name.
        name: String,
        /// `ARPHRD_*` value.
        hatype: u16,
    },
    /// Opening a packet socket or entering a namespace was refused.
    #[error(
        "permission denied while {what}: packet capture needs root or CAP_NET_RAW \
         (and CAP_SYS_ADMIN to enter another network namespace); re-run with sudo"
    )]
    PermissionDenied {
        /// The operation that failed.
        what: &'static str,
    },
    /// `--netns PATH` does not exist.
    #[error(
        "network namespace {0} does not exist; list named namespaces with `ip netns list` \
         or pass a /proc/PID/ns/net path"
    )]
    NetnsNotFound(PathBuf),
    /// The path exists but is not a network namespace.
    #[error("{0} is not a network namespace file (expected /run/netns/NAME or /proc/PID/ns/net)")]
    NotANetns(PathBuf),
    /// `--pid` names no running process.
    #[error("no process with pid {0}; check the pid with `ps` or `crictl inspect`")]
    NoSuchPid(u32),
    /// Both `--netns` and `--pid` were given.
    #[error("--netns and --pid both select a namespace; give only one of them")]
    NetnsAndPid,
    /// A filter or limit value is invalid.
    #[error("invalid {flag} value {value:?}: {hint}")]
    BadValue {
        /// The flag, e.g. `--port`.
        flag: &'static str,
        /// The offending value.
        value: String,
        /// What would be valid.
        hint: &'static str,
    },
    /// Any other OS error, with the operation that failed.
    #[error("{what} failed: {source}")]
    Io {
        /// The operation that failed.
        what: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The capture thread panicked (a bug; please report it).
    #[error("capture thread panicked; this is a bug in accel-verify, please report it")]
    CaptureThreadPanicked,
    /// Serializing the report failed.
    #[error("could not serialize the report: {0}")]
    Json(#[from] serde_json::Error),
}

impl VerifyError {
    /// Maps an OS error to the operator-facing variant for `what`.
    pub(crate) fn from_io(what: &'static str, source: std::io::Error) -> Self {
        match source.raw_os_error() {
            Some(libc::EPERM) | Some(libc::EACCES) => VerifyError::PermissionDenied { what },
            _ => VerifyError::Io { what, source },
        }
    }
}

/// Result alias for this crate.
pub type Result<T, E = VerifyError> = std::result::Result<T, E>;
