//! The pods file: meshed pods written by hand, for nodes without the
//! Kubernetes source. Parsing lives here, outside the daemon binary, so the
//! fuzzer reaches it.

use std::{net::IpAddr, path::PathBuf};

use serde::{Deserialize, Serialize};

use crate::net::Cidr;

/// Where a pod's network namespace is: a namespace file, or any process in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetnsRef {
    Pid { pid: u32 },
    Path { netns: PathBuf },
}

impl NetnsRef {
    pub fn path(&self) -> PathBuf {
        match self {
            NetnsRef::Pid { pid } => PathBuf::from(format!("/proc/{pid}/ns/net")),
            NetnsRef::Path { netns } => netns.clone(),
        }
    }
}

/// How much of a meshed pod takes part.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Acceleration {
    /// The default: the sidecar proxy's sockets always; the application's
    /// only while the kernel's sockmap receive behaviours cannot reach it.
    /// Its sockets take part only while non-blocking, and only where the
    /// kernel's FIONREAD counts TCP bytes on sockhash sockets (the daemon
    /// probes it, I-4); bytes TO it go by TCP (receive-side splice and
    /// FIONREAD see them), while its own sends to the proxy are redirected.
    #[default]
    Auto,
    /// `auto`, and the pod declares its application safe to receive
    /// redirected bytes (it reads with read/recv, not splice, and does not
    /// size its reads with FIONREAD): bytes to it are
    /// redirected too, unless its socket is blocking.
    AppSafe,
    /// Every socket of the pod, with no guard (the reference add-on's
    /// behaviour): blocking application reads can see EAGAIN, splice
    /// readers lose bytes.
    All,
    /// Only the sidecar proxy's own sockets (sidecar <-> sidecar): the
    /// application's sockets never enter the sockhash, so they behave exactly
    /// as plain TCP (receive-side splice, blocking reads, FIONREAD).
    ProxyOnly,
}

impl Acceleration {
    /// Every mode, as written in annotations, pods files and flags.
    pub const ALL: [Acceleration; 4] = [
        Acceleration::Auto,
        Acceleration::AppSafe,
        Acceleration::All,
        Acceleration::ProxyOnly,
    ];
    /// The accepted values, for error messages.
    pub const ACCEPTED: &str = "auto, app-safe, all, proxy-only";

    pub fn as_str(self) -> &'static str {
        match self {
            Acceleration::Auto => "auto",
            Acceleration::AppSafe => "app-safe",
            Acceleration::All => "all",
            Acceleration::ProxyOnly => "proxy-only",
        }
    }
}

impl std::str::FromStr for Acceleration {
    type Err = String;

    /// Exact names only: a close misspelling is not guessed at.
    fn from_str(s: &str) -> Result<Self, String> {
        Acceleration::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| format!("{s:?} is not a mode (accepted: {})", Acceleration::ACCEPTED))
    }
}

impl std::fmt::Display for Acceleration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One meshed pod (or one plain local address), as the datapath needs it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalEndpoint {
    #[serde(default)]
    pub name: String,
    pub ips: Vec<IpAddr>,
    /// The pod's network namespace file (e.g. /var/run/netns/cni-...): its
    /// loopback traffic (app <-> sidecar) takes part only when it is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<PathBuf>,
    /// Or any process in the pod, whose namespace is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_inbound_ports: Vec<u16>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_outbound_ports: Vec<u16>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_outbound_ip_ranges: Vec<Cidr>,
    /// `"auto"`, `"app-safe"`, `"all"` or `"proxy-only"`; absent: the
    /// daemon's `--pod-acceleration`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acceleration: Option<Acceleration>,
}

impl LocalEndpoint {
    pub fn netns_ref(&self) -> Option<NetnsRef> {
        match (&self.netns, self.pid) {
            (Some(p), _) => Some(NetnsRef::Path { netns: p.clone() }),
            (None, Some(pid)) => Some(NetnsRef::Pid { pid }),
            (None, None) => None,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PodsFile {
    #[serde(default)]
    pod: Vec<LocalEndpoint>,
}

/// Parses and checks a pods file; the error says what is wrong and where.
pub fn parse(text: &str) -> Result<Vec<LocalEndpoint>, String> {
    check_modes(text)?;
    let file: PodsFile = toml::from_str(text).map_err(|e| e.to_string())?;
    for (i, p) in file.pod.iter().enumerate() {
        let who = if p.name.is_empty() {
            format!("pod #{}", i + 1)
        } else {
            p.name.clone()
        };
        if p.ips.is_empty() {
            return Err(format!("{who}: `ips` must list at least one address"));
        }
        if let Some(ip) = p
            .ips
            .iter()
            .find(|ip| ip.is_loopback() || ip.is_unspecified())
        {
            return Err(format!("{who}: {ip} is not a pod address"));
        }
        if p.netns.is_some() && p.pid.is_some() {
            return Err(format!("{who}: give `netns` or `pid`, not both"));
        }
    }
    Ok(file.pod)
}

/// An unknown `acceleration` names its pod and the accepted values (the
/// typed parse below would only give a line and column).
fn check_modes(text: &str) -> Result<(), String> {
    let Ok(value) = toml::from_str::<toml::Table>(text) else {
        return Ok(()); // the typed parse reports it
    };
    let pods = value.get("pod").and_then(|p| p.as_array());
    for (i, pod) in pods.into_iter().flatten().enumerate() {
        let Some(mode) = pod.get("acceleration") else {
            continue;
        };
        let name = pod
            .get("name")
            .and_then(|n| n.as_str())
            .filter(|n| !n.is_empty())
            .map_or_else(|| format!("pod #{}", i + 1), str::to_owned);
        match mode.as_str() {
            Some(m) if m.parse::<Acceleration>().is_ok() => {}
            _ => {
                return Err(format!(
                    "{name}: acceleration = {mode} is not a mode (accepted: {})",
                    Acceleration::ACCEPTED
                ));
            }
        }
    }
    Ok(())
}
