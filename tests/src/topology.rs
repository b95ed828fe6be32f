//! A one-node "cluster" of pods with Istio-style sidecars, for end-to-end
//! tests of the datapath against real sidecar traffic.
//!
//! Nothing here touches the host network namespace. A private *node*
//! namespace holds a Linux bridge (`br0`, 10.244.0.1/24 and fd00:244::1/64);
//! every pod is its own namespace, connected to that bridge by a veth pair
//! (pod side `eth0`, 10.244.0.N/24 and fd00:244::N/64, default routes via
//! the bridge). Every pod process (apps, sidecars, clients) runs inside the
//! test's cgroup, so a datapath attached to [`TestEnv::cgroup`] sees all of
//! them and nothing else.
//!
//! A *meshed* pod gets Istio's interception exactly as `istio-iptables`
//! installs it in REDIRECT mode (see [`istio_rules`]), and a sidecar running
//! as uid/gid 1337:
//!
//! - IPv4: Debian's haproxy, TCP mode, outbound listener 15001 forwarding to
//!   the original destination (`server s 0.0.0.0:0`, haproxy reads
//!   `SO_ORIGINAL_DST`), inbound listener 15006 forwarding to the original
//!   destination from source 127.0.0.6 (Istio's inbound passthrough).
//! - IPv6: haproxy (2.6, Debian bookworm) only reads `SO_ORIGINAL_DST` for
//!   AF_INET sockets, so it cannot forward redirected IPv6 connections; the
//!   same two listeners for IPv6 (`[::]:15001`, `[::]:15006`, `IPV6_V6ONLY`)
//!   are served by `accel-pod proxy`, a tiny Rust proxy that reads
//!   `IP6T_SO_ORIGINAL_DST` and connects from `::6` for inbound, as Envoy
//!   does. Both run as uid/gid 1337 in the pod, like the two halves of one
//!   Envoy.
//!
//! Everything is torn down in [`Node`]'s Drop, also while unwinding from a
//! panic: tracked processes are killed and reaped, then every process still
//! in one of our namespaces (`ip netns pids`) is killed, then the namespaces
//! are deleted (with them the veths, the bridge and all iptables state).

use std::{
    ffi::CString,
    fs,
    io::{self, BufRead, BufReader, Read, Write},
    mem,
    net::{
        IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, TcpListener, TcpStream,
    },
    os::{
        fd::FromRawFd,
        unix::{ffi::OsStrExt, process::CommandExt},
    },
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Output, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU8, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use crate::{CaptureCounts, SEQ, TestEnv, require_root};

/// Istio's proxy uid and gid (`istio-proxy`), numeric: no passwd entry needed.
pub const SIDECAR_UID: u32 = 1337;
pub const SIDECAR_GID: u32 = 1337;
/// Envoy's outbound capture port (`ISTIO_REDIRECT`).
pub const OUTBOUND_PORT: u16 = 15001;
/// Envoy's inbound capture port (`ISTIO_IN_REDIRECT`).
pub const INBOUND_PORT: u16 = 15006;
/// HBONE tunnel port, always excluded by istio-iptables.
pub const TUNNEL_PORT: u16 = 15008;
/// The source of Istio's inbound passthrough connections.
pub const PASSTHROUGH_V4: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 6);
pub const PASSTHROUGH_V6: Ipv6Addr = Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 6);
/// The pods' echo app and nginx.
pub const ECHO_PORT: u16 = 8080;
pub const HTTP_PORT: u16 = 80;
/// Path nginx serves the generated file under.
pub const HTTP_FILE: &str = "/file";
/// First of the source ports tests bind on purpose. They sit below the
/// kernel's ephemeral range (32768-60999) because the sidecar's own
/// outgoing connections take their ports from that range without
/// SO_REUSEADDR, and a bind() to a port the proxy holds fails with
/// EADDRINUSE (a CI run lost the NAT-remap test to exactly that).
pub const BOUND_SOURCE_PORTS: u16 = 20000;

pub const BRIDGE: &str = "br0";
pub const GATEWAY_V4: Ipv4Addr = Ipv4Addr::new(10, 244, 0, 1);
pub const GATEWAY_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x244, 0, 0, 0, 0, 0, 1);

const WAIT: Duration = Duration::from_secs(15);

/// The pod workload binary (echo server/client, IPv6 sidecar proxy), built
/// on first use; `ACCEL_POD_BIN` names another one.
pub fn pod_bin() -> PathBuf {
    crate::workspace_bin("accel-tests", "accel-pod", "ACCEL_POD_BIN")
}

// ---------------------------------------------------------------------------
// Istio interception rules
// ---------------------------------------------------------------------------

/// Sidecar interception options, with the semantics of Istio's pod
/// annotations (`traffic.sidecar.istio.io/...`). Inbound and outbound
/// capture are always `*` (Istio's default).
#[derive(Clone, Debug)]
pub struct Mesh {
    /// `excludeInboundPorts`, after the injector's own 15090,15021,15020.
    pub exclude_inbound_ports: Vec<u16>,
    /// `excludeOutboundPorts`.
    pub exclude_outbound_ports: Vec<u16>,
    /// `excludeOutboundIPRanges` (CIDRs, either family).
    pub exclude_outbound_ip_ranges: Vec<String>,
}

impl Default for Mesh {
    /// What the sidecar injector passes to istio-iptables for a pod without
    /// annotations: `-p 15001 -z 15006 -u 1337 -m REDIRECT -i '*' -x ''
    /// -b '*' -d 15090,15021,15020`.
    fn default() -> Self {
        Mesh {
            exclude_inbound_ports: vec![15090, 15021, 15020],
            exclude_outbound_ports: Vec::new(),
            exclude_outbound_ip_ranges: Vec::new(),
        }
    }
}

impl Mesh {
    pub fn exclude_inbound_port(mut self, port: u16) -> Self {
        self.exclude_inbound_ports.push(port);
        self
    }
    pub fn exclude_outbound_port(mut self, port: u16) -> Self {
        self.exclude_outbound_ports.push(port);
        self
    }
    pub fn exclude_outbound_ip_range(mut self, cidr: &str) -> Self {
        self.exclude_outbound_ip_ranges.push(cidr.to_string());
        self
    }
}

fn port_list(ports: &[u16]) -> String {
    ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// The nat table istio-iptables (Istio 1.2x, REDIRECT mode) installs in a
/// pod, in `iptables-restore` form. For IPv4, with the default [`Mesh`]:
///
/// ```text
/// *nat
/// :ISTIO_INBOUND - [0:0]
/// :ISTIO_REDIRECT - [0:0]
/// :ISTIO_IN_REDIRECT - [0:0]
/// :ISTIO_OUTPUT - [0:0]
/// -A ISTIO_INBOUND -p tcp --dport 15008 -j RETURN
/// -A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001
/// -A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006
/// -A PREROUTING -p tcp -j ISTIO_INBOUND
/// -A ISTIO_INBOUND -p tcp -m multiport --dports 15090,15021,15020 -j RETURN
/// -A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT
/// -A OUTPUT -j ISTIO_OUTPUT
/// [-A ISTIO_OUTPUT -p tcp -m multiport --dports <excludeOutboundPorts> -j RETURN]
/// [-A ISTIO_OUTPUT -p udp -m multiport --dports <excludeOutboundPorts> -j RETURN]
/// -A ISTIO_OUTPUT -o lo -s 127.0.0.6/32 -j RETURN
/// -A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp ! --dport 15008 -m owner --uid-owner 1337 -j ISTIO_IN_REDIRECT
/// -A ISTIO_OUTPUT -o lo -m owner ! --uid-owner 1337 -j RETURN
/// -A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN
/// -A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp ! --dport 15008 -m owner --gid-owner 1337 -j ISTIO_IN_REDIRECT
/// -A ISTIO_OUTPUT -o lo -m owner ! --gid-owner 1337 -j RETURN
/// -A ISTIO_OUTPUT -m owner --gid-owner 1337 -j RETURN
/// -A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN
/// [-A ISTIO_OUTPUT -d <excludeOutboundIPRanges> -j RETURN]
/// -A ISTIO_OUTPUT -j ISTIO_REDIRECT
/// COMMIT
/// ```
///
/// This is the order of istio-iptables' golden files
/// (`tools/istio-iptables/pkg/capture/testdata/*.golden`: inbound
/// wildcard + exclusions, outbound-ports-exclude, ip-range). IPv6 mirrors it
/// with `ip6tables`, `::6/128` for 127.0.0.6/32 and `::1/128` for
/// 127.0.0.1/32; istio-iptables also adds `::6/128` to `lo` for IPv6.
/// The user's excluded inbound ports are appended to the injector's list.
pub fn istio_rules(mesh: &Mesh, ipv6: bool) -> String {
    let (passthrough, localhost) = if ipv6 {
        ("::6/128", "::1/128")
    } else {
        ("127.0.0.6/32", "127.0.0.1/32")
    };
    let uid = SIDECAR_UID;
    let gid = SIDECAR_GID;
    let mut r = vec![
        "*nat".to_string(),
        ":ISTIO_INBOUND - [0:0]".into(),
        ":ISTIO_REDIRECT - [0:0]".into(),
        ":ISTIO_IN_REDIRECT - [0:0]".into(),
        ":ISTIO_OUTPUT - [0:0]".into(),
        format!("-A ISTIO_INBOUND -p tcp --dport {TUNNEL_PORT} -j RETURN"),
        format!("-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports {OUTBOUND_PORT}"),
        format!("-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports {INBOUND_PORT}"),
        "-A PREROUTING -p tcp -j ISTIO_INBOUND".into(),
    ];
    if !mesh.exclude_inbound_ports.is_empty() {
        r.push(format!(
            "-A ISTIO_INBOUND -p tcp -m multiport --dports {} -j RETURN",
            port_list(&mesh.exclude_inbound_ports)
        ));
    }
    r.push("-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT".into());
    r.push("-A OUTPUT -j ISTIO_OUTPUT".into());
    if !mesh.exclude_outbound_ports.is_empty() {
        let ports = port_list(&mesh.exclude_outbound_ports);
        r.push(format!(
            "-A ISTIO_OUTPUT -p tcp -m multiport --dports {ports} -j RETURN"
        ));
        r.push(format!(
            "-A ISTIO_OUTPUT -p udp -m multiport --dports {ports} -j RETURN"
        ));
    }
    r.push(format!("-A ISTIO_OUTPUT -o lo -s {passthrough} -j RETURN"));
    for (kind, id) in [("uid", uid), ("gid", gid)] {
        r.push(format!(
            "-A ISTIO_OUTPUT -o lo ! -d {localhost} -p tcp ! --dport {TUNNEL_PORT} \
             -m owner --{kind}-owner {id} -j ISTIO_IN_REDIRECT"
        ));
        r.push(format!(
            "-A ISTIO_OUTPUT -o lo -m owner ! --{kind}-owner {id} -j RETURN"
        ));
        r.push(format!(
            "-A ISTIO_OUTPUT -m owner --{kind}-owner {id} -j RETURN"
        ));
    }
    r.push(format!("-A ISTIO_OUTPUT -d {localhost} -j RETURN"));
    for cidr in &mesh.exclude_outbound_ip_ranges {
        if cidr.contains(':') == ipv6 {
            r.push(format!("-A ISTIO_OUTPUT -d {cidr} -j RETURN"));
        }
    }
    r.push("-A ISTIO_OUTPUT -j ISTIO_REDIRECT".into());
    r.push("COMMIT".into());
    let mut s = r.join("\n");
    s.push('\n');
    s
}

/// The sidecar's haproxy configuration (IPv4 listeners only, see the module
/// docs). TCP mode, no health checks, long timeouts.
pub fn haproxy_config() -> String {
    format!(
        "global
    maxconn 4096
    nbthread 1

defaults
    mode tcp
    timeout connect 10s
    timeout client 1h
    timeout server 1h
    timeout client-fin 1h
    timeout server-fin 1h

# Envoy's virtualOutbound: everything ISTIO_REDIRECT sends here goes to the
# original destination (address 0.0.0.0 and port 0: haproxy takes both from
# SO_ORIGINAL_DST of the accepted socket).
frontend outbound
    bind 0.0.0.0:{OUTBOUND_PORT}
    default_backend outbound_original_dst

backend outbound_original_dst
    server s 0.0.0.0:0

# Envoy's virtualInbound: inbound passthrough to the app on the original
# destination, from 127.0.0.6.
frontend inbound
    bind 0.0.0.0:{INBOUND_PORT}
    default_backend inbound_passthrough

backend inbound_passthrough
    server s 0.0.0.0:0 source {PASSTHROUGH_V4}
"
    )
}

// ---------------------------------------------------------------------------
// Commands inside a namespace and the cgroup
// ---------------------------------------------------------------------------

/// `program`, made to enter the network namespace at `netns_path`, then the
/// cgroup (if any), then to drop to `creds` (uid, gid) (if any), all between
/// fork and exec. Only async-signal-safe calls happen in the child; no guard
/// has to outlive the spawn.
pub fn netns_command(
    netns_path: &Path,
    cgroup: Option<&Path>,
    creds: Option<(u32, u32)>,
    program: impl AsRef<std::ffi::OsStr>,
) -> Command {
    let ns = CString::new(netns_path.as_os_str().as_bytes()).expect("netns path");
    let procs = cgroup
        .map(|c| CString::new(c.join("cgroup.procs").as_os_str().as_bytes()).expect("cgroup"));
    let mut cmd = Command::new(program);
    // SAFETY: open/setns/write/close/setgroups/setgid/setuid are
    // async-signal-safe; the strings were allocated before fork.
    unsafe {
        cmd.pre_exec(move || {
            let fd = libc::open(ns.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            let r = libc::setns(fd, libc::CLONE_NEWNET);
            libc::close(fd);
            if r != 0 {
                return Err(io::Error::last_os_error());
            }
            if let Some(p) = &procs {
                let fd = libc::open(p.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    return Err(io::Error::last_os_error());
                }
                let w = libc::write(fd, b"0".as_ptr().cast(), 1);
                libc::close(fd);
                if w != 1 {
                    return Err(io::Error::last_os_error());
                }
            }
            if let Some((uid, gid)) = creds
                && (libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setgid(gid) != 0
                    || libc::setuid(uid) != 0)
            {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("FAILING LOUDLY: cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({:?}): {}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn ip(args: &[&str]) {
    run_ok(Command::new("ip").args(args));
}

fn netns_path(name: &str) -> PathBuf {
    Path::new("/run/netns").join(name)
}

/// PIDs of every process whose network namespace is `name`.
pub fn netns_pids(name: &str) -> Vec<u32> {
    Command::new("ip")
        .args(["netns", "pids", name])
        .stderr(Stdio::null())
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `pid` is a live (non-zombie) process.
pub fn pid_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s
            .rsplit_once(") ")
            .map(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X'))
            .unwrap_or(false),
        Err(_) => false,
    }
}

/// Names of all named network namespaces (`ip netns list`).
pub fn netns_list() -> Vec<String> {
    Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------
// Node
// ---------------------------------------------------------------------------

struct Tracked {
    pod: String,
    role: String,
    child: Child,
}

/// The private node namespace with its bridge, and the pods on it.
pub struct Node {
    /// Prefix of every namespace this node created (`atopo-<pid>-<seq>-<tag>`).
    pub prefix: String,
    /// The node namespace (holds `br0` and the host ends of the veths).
    pub netns: String,
    /// Per-node scratch dir (configs, logs, served files).
    pub dir: PathBuf,
    cgroup: PathBuf,
    next_host: AtomicU8,
    namespaces: Mutex<Vec<String>>,
    procs: Arc<Mutex<Vec<Tracked>>>,
}

impl Node {
    /// A node whose pod processes all run inside `env`'s cgroup.
    pub fn new(env: &TestEnv, tag: &str) -> Self {
        require_root();
        let prefix = format!(
            "atopo-{}-{}-{tag}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let dir = std::env::temp_dir().join(&prefix);
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("node dir");
        let node = Node {
            netns: format!("{prefix}-node"),
            prefix,
            dir,
            cgroup: env.cgroup.clone(),
            next_host: AtomicU8::new(2),
            namespaces: Mutex::new(Vec::new()),
            procs: Arc::new(Mutex::new(Vec::new())),
        };
        // Registered before creation: a failure below still tears it down.
        node.namespaces.lock().unwrap().push(node.netns.clone());
        let n = node.netns.as_str();
        ip(&["netns", "add", n]);
        node.sysctl(n, "net.ipv6.conf.all.accept_dad", "0");
        node.sysctl(n, "net.ipv6.conf.default.accept_dad", "0");
        ip(&["-n", n, "link", "set", "lo", "up"]);
        ip(&[
            "-n",
            n,
            "link",
            "add",
            BRIDGE,
            "type",
            "bridge",
            "forward_delay",
            "0",
            "stp_state",
            "0",
            "mcast_snooping",
            "0",
        ]);
        ip(&["-n", n, "addr", "add", "10.244.0.1/24", "dev", BRIDGE]);
        ip(&[
            "-n",
            n,
            "addr",
            "add",
            "fd00:244::1/64",
            "dev",
            BRIDGE,
            "nodad",
        ]);
        ip(&["-n", n, "link", "set", BRIDGE, "up"]);
        node
    }

    fn sysctl(&self, netns: &str, key: &str, value: &str) {
        run_ok(
            netns_command(&netns_path(netns), None, None, "sysctl")
                .args(["-qw", &format!("{key}={value}")]),
        );
    }

    /// A meshed pod: Istio interception and a running sidecar.
    pub fn meshed_pod(&self, name: &str, mesh: Mesh) -> Pod {
        let pod = self.pod(name, Some(mesh));
        pod.start_sidecar();
        pod
    }

    /// Meshed pods with Istio's default interception, created in order.
    pub fn meshed_pods<const N: usize>(&self, names: [&str; N]) -> [Pod; N] {
        names.map(|name| self.meshed_pod(name, Mesh::default()))
    }

    /// A pod without rules or sidecar.
    pub fn unmeshed_pod(&self, name: &str) -> Pod {
        self.pod(name, None)
    }

    fn pod(&self, name: &str, mesh: Option<Mesh>) -> Pod {
        let host = self.next_host.fetch_add(1, Ordering::Relaxed);
        assert!(host < 250, "too many pods on one node");
        let netns = format!("{}-{name}", self.prefix);
        let dir = self.dir.join(name);
        fs::create_dir_all(&dir).expect("pod dir");
        let pod = Pod {
            name: name.to_string(),
            netns_path: netns_path(&netns),
            netns,
            node_netns: self.netns.clone(),
            ipv4: Ipv4Addr::new(10, 244, 0, host),
            ipv6: Ipv6Addr::new(0xfd00, 0x244, 0, 0, 0, 0, 0, host as u16),
            host_veth: format!("veth{host}"),
            mesh,
            dir,
            cgroup: self.cgroup.clone(),
            procs: self.procs.clone(),
        };
        self.namespaces.lock().unwrap().push(pod.netns.clone());
        let (p, n) = (pod.netns.as_str(), self.netns.as_str());
        ip(&["netns", "add", p]);
        self.sysctl(p, "net.ipv6.conf.all.accept_dad", "0");
        self.sysctl(p, "net.ipv6.conf.default.accept_dad", "0");
        ip(&["-n", p, "link", "set", "lo", "up"]);
        ip(&[
            "-n",
            n,
            "link",
            "add",
            &pod.host_veth,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            p,
        ]);
        ip(&["-n", n, "link", "set", &pod.host_veth, "master", BRIDGE]);
        ip(&["-n", n, "link", "set", &pod.host_veth, "up"]);
        ip(&[
            "-n",
            p,
            "addr",
            "add",
            &format!("{}/24", pod.ipv4),
            "dev",
            "eth0",
        ]);
        ip(&[
            "-n",
            p,
            "addr",
            "add",
            &format!("{}/64", pod.ipv6),
            "dev",
            "eth0",
            "nodad",
        ]);
        ip(&["-n", p, "link", "set", "eth0", "up"]);
        ip(&["-n", p, "route", "add", "default", "via", "10.244.0.1"]);
        ip(&[
            "-n",
            p,
            "-6",
            "route",
            "add",
            "default",
            "via",
            "fd00:244::1",
        ]);
        if let Some(mesh) = &pod.mesh {
            pod.install_istio_rules(mesh);
        }
        pod
    }

    /// tcpdump on an interface of the node namespace (`br0`, a pod's
    /// [`Pod::host_veth`]).
    pub fn capture(&self, iface: &str, filter: &str) -> NsCapture {
        NsCapture::start(&self.netns, iface, filter)
    }

    /// tcpdump on each of the three legs (see [`MeshLegs`]) of connections
    /// from meshed pod `a` to `port` of meshed pod `b`.
    pub fn capture_legs(&self, a: &Pod, b: &Pod, port: u16) -> LegCaptures {
        LegCaptures {
            app_a_lo: a.capture("lo", &format!("tcp port {OUTBOUND_PORT}")),
            bridge: self.capture(&a.host_veth, &format!("tcp port {port}")),
            b_lo: b.capture("lo", &format!("tcp port {port}")),
        }
    }

    /// Every namespace this node created (node first).
    pub fn namespaces(&self) -> Vec<String> {
        self.namespaces
            .lock()
            .map(|n| n.clone())
            .unwrap_or_default()
    }

    /// PIDs of every process in any of this node's namespaces.
    pub fn pids(&self) -> Vec<u32> {
        self.namespaces()
            .iter()
            .flat_map(|n| netns_pids(n))
            .collect()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let mut procs = match self.procs.lock() {
            Ok(mut p) => mem::take(&mut *p),
            Err(e) => mem::take(&mut *e.into_inner()),
        };
        for t in &mut procs {
            let _ = t.child.kill();
        }
        for t in &mut procs {
            let _ = t.child.wait();
        }
        let names = match self.namespaces.lock() {
            Ok(n) => n.clone(),
            Err(e) => e.into_inner().clone(),
        };
        // Whatever else runs in our namespaces was started by this test.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let pids: Vec<u32> = names.iter().flat_map(|n| netns_pids(n)).collect();
            let alive: Vec<u32> = pids.into_iter().filter(|p| pid_alive(*p)).collect();
            if alive.is_empty() || Instant::now() > deadline {
                break;
            }
            for pid in alive {
                // SAFETY: plain kill(2) on a process in our own namespace.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
            thread::sleep(Duration::from_millis(20));
        }
        // Pods first (their veths go with them), then the node (the bridge).
        for n in names.iter().rev() {
            let _ = Command::new("ip")
                .args(["netns", "delete", n])
                .stderr(Stdio::null())
                .status();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

// ---------------------------------------------------------------------------
// Pod
// ---------------------------------------------------------------------------

/// One pod: its own namespace on the node's bridge.
#[derive(Clone)]
pub struct Pod {
    pub name: String,
    pub netns: String,
    pub netns_path: PathBuf,
    pub node_netns: String,
    pub ipv4: Ipv4Addr,
    pub ipv6: Ipv6Addr,
    /// The veth end in the node namespace, on `br0`.
    pub host_veth: String,
    /// `Some` for a meshed pod.
    pub mesh: Option<Mesh>,
    pub dir: PathBuf,
    cgroup: PathBuf,
    procs: Arc<Mutex<Vec<Tracked>>>,
}

impl Pod {
    pub fn is_meshed(&self) -> bool {
        self.mesh.is_some()
    }

    pub fn addr_v4(&self, port: u16) -> SocketAddr {
        SocketAddr::new(self.ipv4.into(), port)
    }

    pub fn addr_v6(&self, port: u16) -> SocketAddr {
        SocketAddr::new(self.ipv6.into(), port)
    }

    /// A workload command: runs in this pod's namespace and in the test's
    /// cgroup (as root, like a pod's app container with uid 0 != 1337).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        netns_command(&self.netns_path, Some(&self.cgroup), None, program)
    }

    /// A workload command running as `uid`/`gid` (e.g. the sidecar's 1337).
    pub fn command_as(&self, program: impl AsRef<std::ffi::OsStr>, uid: u32, gid: u32) -> Command {
        netns_command(
            &self.netns_path,
            Some(&self.cgroup),
            Some((uid, gid)),
            program,
        )
    }

    /// An admin command (ss, iptables): in the pod's namespace, NOT in the
    /// test cgroup.
    pub fn admin(&self, program: &str) -> Command {
        netns_command(&self.netns_path, None, None, program)
    }

    /// Runs an admin command, asserting success; returns stdout.
    pub fn admin_ok(&self, program: &str, args: &[&str]) -> String {
        let out = run_ok(self.admin(program).args(args));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Spawns `cmd` and tracks it under `role`: killed and reaped when the
    /// node is dropped. Returns its PID (the program's own: no wrapper).
    pub fn spawn(&self, role: &str, cmd: &mut Command) -> u32 {
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("FAILING LOUDLY: cannot spawn {role} ({cmd:?}): {e}"));
        let pid = child.id();
        self.procs.lock().unwrap().push(Tracked {
            pod: self.name.clone(),
            role: role.to_string(),
            child,
        });
        pid
    }

    /// PID of the tracked process started under `role` (`sidecar-haproxy`,
    /// `sidecar-proxy6`, `echo`, `nginx`), for `--pid` style checks.
    pub fn pid_of(&self, role: &str) -> Option<u32> {
        self.procs.lock().ok().and_then(|p| {
            p.iter()
                .find(|t| t.pod == self.name && t.role == role)
                .map(|t| t.child.id())
        })
    }

    /// Panics with the log if the tracked process `role` has exited.
    pub fn assert_running(&self, role: &str, log: &Path) {
        let mut procs = self.procs.lock().unwrap();
        if let Some(t) = procs
            .iter_mut()
            .find(|t| t.pod == self.name && t.role == role)
            && let Ok(Some(st)) = t.child.try_wait()
        {
            panic!(
                "{role} in pod {} exited ({st}); log:\n{}",
                self.name,
                fs::read_to_string(log).unwrap_or_default()
            );
        }
    }

    /// Every process in this pod's namespace.
    pub fn pids(&self) -> Vec<u32> {
        netns_pids(&self.netns)
    }

    fn install_istio_rules(&self, mesh: &Mesh) {
        for (tool, v6) in [("iptables-restore", false), ("ip6tables-restore", true)] {
            let rules = istio_rules(mesh, v6);
            let file = self.dir.join(if v6 { "rules.v6" } else { "rules.v4" });
            fs::write(&file, &rules).expect("write rules");
            let out = self
                .admin(tool)
                .arg(&file)
                .stdin(Stdio::null())
                .output()
                .expect("FAILING LOUDLY: iptables is needed (apt-get install iptables)");
            assert!(
                out.status.success(),
                "{tool} in pod {} failed: {}\n{rules}",
                self.name,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        // istio-iptables: `ip -6 addr add ::6/128 dev lo` (inbound passthrough
        // source for IPv6).
        ip(&[
            "-n",
            &self.netns,
            "-6",
            "addr",
            "add",
            "::6/128",
            "dev",
            "lo",
        ]);
    }

    /// `iptables-save -t nat` (or ip6tables-save) in the pod.
    pub fn nat_rules(&self, ipv6: bool) -> String {
        let tool = if ipv6 {
            "ip6tables-save"
        } else {
            "iptables-save"
        };
        self.admin_ok(tool, &["-t", "nat"])
    }

    fn start_sidecar(&self) {
        let cfg = self.dir.join("haproxy.cfg");
        fs::write(&cfg, haproxy_config()).expect("write haproxy.cfg");
        let log = self.dir.join("haproxy.log");
        let logf = fs::File::create(&log).expect("haproxy log");
        // Started as 1337, as Envoy is: its listeners, and so the sockets
        // it accepts, belong to the proxy's user (proxy-only pods tell the
        // proxy's sockets apart by that owner).
        let mut cmd = self.command_as("haproxy", SIDECAR_UID, SIDECAR_GID);
        cmd.arg("-db")
            .arg("-f")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(logf.try_clone().expect("dup"))
            .stderr(logf);
        self.spawn("sidecar-haproxy", &mut cmd);

        let log6 = self.dir.join("proxy6.log");
        let logf = fs::File::create(&log6).expect("proxy log");
        let mut cmd = self.command_as(pod_bin(), SIDECAR_UID, SIDECAR_GID);
        cmd.args([
            "proxy",
            "--outbound",
            &format!("[::]:{OUTBOUND_PORT}"),
            "--inbound",
            &format!("[::]:{INBOUND_PORT}"),
        ])
        .stdin(Stdio::null())
        .stdout(logf.try_clone().expect("dup"))
        .stderr(logf);
        self.spawn("sidecar-proxy6", &mut cmd);

        let ok = self.wait_listening_quiet(OUTBOUND_PORT, 2)
            && self.wait_listening_quiet(INBOUND_PORT, 2);
        self.assert_running("sidecar-haproxy", &log);
        self.assert_running("sidecar-proxy6", &log6);
        assert!(
            ok,
            "sidecar of pod {} never listened on {OUTBOUND_PORT}/{INBOUND_PORT} (v4 and v6); \
             haproxy log:\n{}\nproxy6 log:\n{}",
            self.name,
            fs::read_to_string(&log).unwrap_or_default(),
            fs::read_to_string(&log6).unwrap_or_default()
        );
    }

    /// PIDs of the sidecar's processes (haproxy, IPv6 proxy).
    pub fn sidecar_pids(&self) -> Vec<u32> {
        ["sidecar-haproxy", "sidecar-proxy6"]
            .iter()
            .filter_map(|r| self.pid_of(r))
            .collect()
    }

    /// The echo app on 0.0.0.0:8080 and [::]:8080. Returns its PID.
    pub fn start_echo(&self) -> u32 {
        self.start_echo_with(self.command(pod_bin()))
    }

    /// [`Pod::start_echo`] running as `uid`/`gid`, as most application
    /// images do (not root, not the sidecar's 1337).
    pub fn start_echo_as(&self, uid: u32, gid: u32) -> u32 {
        self.start_echo_with(self.command_as(pod_bin(), uid, gid))
    }

    fn start_echo_with(&self, mut cmd: Command) -> u32 {
        let log = self.dir.join("echo.log");
        let logf = fs::File::create(&log).expect("echo log");
        cmd.args([
            "echo",
            "--listen",
            &format!("0.0.0.0:{ECHO_PORT}"),
            "--listen",
            &format!("[::]:{ECHO_PORT}"),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(logf);
        let pid = self.spawn("echo", &mut cmd);
        let ok = self.wait_listening_quiet(ECHO_PORT, 2);
        self.assert_running("echo", &log);
        assert!(ok, "echo app of pod {} never listened", self.name);
        pid
    }

    /// nginx serving `content` at [`HTTP_FILE`] on port 80 (v4 and v6),
    /// `daemon off`, one process, its own config/pid/temp dirs. Returns its PID.
    pub fn start_nginx(&self, content: &[u8]) -> u32 {
        self.start_nginx_with(content, true)
    }

    /// [`Pod::start_nginx`] choosing `sendfile on|off` (sendfile sends
    /// through splice, not sendmsg: it matters to an sk_msg datapath).
    pub fn start_nginx_with(&self, content: &[u8], sendfile: bool) -> u32 {
        self.start_nginx_files(&[(HTTP_FILE, content)], sendfile)
    }

    /// nginx on port 80 serving each `(path, content)`. Keep-alive
    /// connections are never closed by a request count, so a load generator
    /// keeps its connections for the whole run.
    pub fn start_nginx_files(&self, files: &[(&str, &[u8])], sendfile: bool) -> u32 {
        let sendfile = if sendfile { "on" } else { "off" };
        let d = self.dir.join("nginx");
        let www = d.join("www");
        fs::create_dir_all(&www).expect("nginx dirs");
        fs::create_dir_all(d.join("tmp")).expect("nginx tmp");
        for (path, content) in files {
            fs::write(www.join(path.trim_start_matches('/')), content).expect("write file");
        }
        let dd = d.display();
        let conf = format!(
            "daemon off;
master_process off;
worker_processes 1;
pid {dd}/nginx.pid;
error_log {dd}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile {sendfile};
    keepalive_timeout 60s;
    keepalive_requests 100000000;
    default_type application/octet-stream;
    client_body_temp_path {dd}/tmp/body;
    proxy_temp_path {dd}/tmp/proxy;
    fastcgi_temp_path {dd}/tmp/fastcgi;
    uwsgi_temp_path {dd}/tmp/uwsgi;
    scgi_temp_path {dd}/tmp/scgi;
    server {{
        listen 0.0.0.0:{HTTP_PORT};
        listen [::]:{HTTP_PORT} ipv6only=on;
        root {dd}/www;
    }}
}}
"
        );
        let conf_path = d.join("nginx.conf");
        fs::write(&conf_path, conf).expect("write nginx.conf");
        let log = d.join("error.log");
        let logf = fs::File::create(d.join("stderr.log")).expect("nginx stderr");
        let mut cmd = self.command("nginx");
        cmd.arg("-p")
            .arg(&d)
            .arg("-c")
            .arg(&conf_path)
            .arg("-e")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(logf);
        let pid = self.spawn("nginx", &mut cmd);
        let ok = self.wait_listening_quiet(HTTP_PORT, 2);
        self.assert_running("nginx", &d.join("stderr.log"));
        assert!(
            ok,
            "nginx of pod {} never listened; log:\n{}",
            self.name,
            fs::read_to_string(&log).unwrap_or_default()
        );
        pid
    }

    fn listeners(&self, port: u16) -> usize {
        let out = self
            .admin("ss")
            .args(["-Hltn", &format!("sport = :{port}")])
            .stderr(Stdio::null())
            .output();
        out.map(|o| String::from_utf8_lossy(&o.stdout).lines().count())
            .unwrap_or(0)
    }

    fn wait_listening_quiet(&self, port: u16, at_least: usize) -> bool {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if self.listeners(port) >= at_least {
                return true;
            }
            thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Waits (bounded) until `at_least` sockets listen on `port` in the pod.
    pub fn wait_listening(&self, port: u16, at_least: usize) {
        assert!(
            self.wait_listening_quiet(port, at_least),
            "nothing listening on port {port} in pod {} after {WAIT:?}",
            self.name
        );
    }

    /// Non-listening TCP sockets in the pod (`ss -tnpe`).
    pub fn sockets(&self) -> Vec<SockInfo> {
        let out = self.admin_ok("ss", &["-Htnpe"]);
        out.lines().filter_map(SockInfo::parse).collect()
    }

    /// The source ports of this pod's own connections (from its pod IP) as
    /// its sidecar's outbound listener accepted them: where netfilter
    /// remapped a clashing source port, the remapped one.
    pub fn ports_at_outbound_sidecar(&self) -> Vec<u16> {
        self.sockets()
            .iter()
            .filter(|s| s.local.port() == OUTBOUND_PORT && s.peer.ip() == self.ipv4)
            .map(|s| s.peer.port())
            .collect()
    }

    /// tcpdump on an interface of this pod (`lo`, `eth0`).
    pub fn capture(&self, iface: &str, filter: &str) -> NsCapture {
        NsCapture::start(&self.netns, iface, filter)
    }

    /// Starts the echo client to `target` (pattern of `bytes` bytes, echoed
    /// and compared), holding the connection open until [`EchoClient::finish`].
    pub fn echo_client(&self, target: SocketAddr, bytes: usize) -> EchoClient {
        let mut cmd = self.command(pod_bin());
        cmd.args([
            "client",
            "--connect",
            &target.to_string(),
            "--bytes",
            &bytes.to_string(),
            "--hold",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        EchoClient::start(cmd)
    }

    /// curl in the pod (in the cgroup); returns the body, asserting success.
    pub fn curl(&self, url: &str) -> Vec<u8> {
        let out = self
            .command("curl")
            .args(["-sS", "-g", "--fail", "--max-time", "20", "-o", "-", url])
            .stdin(Stdio::null())
            .output()
            .expect("FAILING LOUDLY: curl is needed (apt-get install curl)");
        assert!(
            out.status.success(),
            "curl {url} from pod {} failed ({:?}): {}",
            self.name,
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }
}

// ---------------------------------------------------------------------------
// ss
// ---------------------------------------------------------------------------

/// One line of `ss -tnpe`.
#[derive(Clone, Debug)]
pub struct SockInfo {
    pub state: String,
    pub local: SocketAddr,
    pub peer: SocketAddr,
    /// Socket owner uid (ss omits uid 0).
    pub uid: u32,
    /// (command, pid) of every process holding the socket.
    pub users: Vec<(String, u32)>,
}

impl SockInfo {
    fn parse(line: &str) -> Option<SockInfo> {
        let mut it = line.split_whitespace();
        let state = it.next()?.to_string();
        let _recvq = it.next()?;
        let _sendq = it.next()?;
        let local = parse_ss_addr(it.next()?)?;
        let peer = parse_ss_addr(it.next()?)?;
        let mut uid = 0;
        let mut users = Vec::new();
        for tok in it {
            if let Some(u) = tok.strip_prefix("uid:") {
                uid = u.parse().unwrap_or(0);
            } else if let Some(u) = tok.strip_prefix("users:(") {
                for entry in u.split("),(") {
                    let entry = entry.trim_matches(|c| c == '(' || c == ')');
                    let mut parts = entry.split(',');
                    let name = parts.next().unwrap_or("").trim_matches('"').to_string();
                    let pid = parts
                        .find_map(|p| p.strip_prefix("pid="))
                        .and_then(|p| p.parse().ok())
                        .unwrap_or(0);
                    users.push((name, pid));
                }
            }
        }
        Some(SockInfo {
            state,
            local,
            peer,
            uid,
            users,
        })
    }

    pub fn held_by(&self, pid: u32) -> bool {
        self.users.iter().any(|(_, p)| *p == pid)
    }

    pub fn held_by_any(&self, pids: &[u32]) -> bool {
        pids.iter().any(|p| self.held_by(*p))
    }
}

fn parse_ss_addr(s: &str) -> Option<SocketAddr> {
    let s = s.replace("%lo", "").replace("%eth0", "");
    let sa: SocketAddr = s.parse().ok()?;
    // v4-mapped v6 (dual-stack sockets): report as plain IPv4.
    if let SocketAddr::V6(v6) = sa
        && let Some(v4) = v6.ip().to_ipv4_mapped()
    {
        return Some(SocketAddr::new(v4.into(), v6.port()));
    }
    Some(sa)
}

// ---------------------------------------------------------------------------
// The three legs of a meshed connection
// ---------------------------------------------------------------------------

/// The six sockets of one meshed A -> meshed B connection (found by `ss` in
/// both pods while the client holds it open):
///
/// 1. app -> A's sidecar: `app_a` (A_IP:p1 -> B:port, NAT is invisible to
///    it) and `sidecar_a_in` (127.0.0.1:15001 / [::1]:15001 <- A_IP:p1);
/// 2. A's sidecar (uid 1337) -> B: `sidecar_a_out` (A_IP:p2 -> B:port) and
///    `sidecar_b_in` (B:15006 <- A_IP:p2);
/// 3. B's sidecar -> B's app: `sidecar_b_out` (127.0.0.6:p3 / [::6]:p3 ->
///    B:port) and `app_b` (B:port <- passthrough:p3).
#[derive(Clone, Debug)]
pub struct MeshLegs {
    pub app_a: SockInfo,
    pub sidecar_a_in: SockInfo,
    pub sidecar_a_out: SockInfo,
    pub sidecar_b_in: SockInfo,
    pub sidecar_b_out: SockInfo,
    pub app_b: SockInfo,
}

fn find_sock(socks: &[SockInfo], what: &str, f: impl Fn(&SockInfo) -> bool) -> SockInfo {
    socks
        .iter()
        .find(|s| f(s))
        .cloned()
        .unwrap_or_else(|| panic!("no socket for {what}; sockets:\n{socks:#?}"))
}

impl MeshLegs {
    /// Finds the legs of the connection the app in `a` made from
    /// `client_local` to `target` (B's pod IP and app port); panics with
    /// both pods' sockets if any leg is missing or held by the wrong process.
    pub fn find(a: &Pod, b: &Pod, client_local: SocketAddr, target: SocketAddr) -> MeshLegs {
        let (localhost, passthrough): (IpAddr, IpAddr) = if target.is_ipv4() {
            (Ipv4Addr::LOCALHOST.into(), PASSTHROUGH_V4.into())
        } else {
            (Ipv6Addr::LOCALHOST.into(), PASSTHROUGH_V6.into())
        };
        let a_socks = a.sockets();
        let b_socks = b.sockets();
        let a_sidecar = a.sidecar_pids();
        let b_sidecar = b.sidecar_pids();
        let app_a = find_sock(&a_socks, "app socket in A", |s| {
            s.local == client_local && s.peer == target && !s.held_by_any(&a_sidecar)
        });
        let sidecar_a_in = find_sock(&a_socks, "A's sidecar side of leg 1", |s| {
            s.local == SocketAddr::new(localhost, OUTBOUND_PORT)
                && s.peer == client_local
                && s.held_by_any(&a_sidecar)
        });
        let sidecar_a_out = find_sock(&a_socks, "A's sidecar upstream (leg 2)", |s| {
            s.peer == target
                && s.uid == SIDECAR_UID
                && s.local.ip() == client_local.ip()
                && s.held_by_any(&a_sidecar)
        });
        let sidecar_b_in = find_sock(&b_socks, "B's sidecar side of leg 2", |s| {
            s.local == SocketAddr::new(target.ip(), INBOUND_PORT)
                && s.peer == sidecar_a_out.local
                && s.held_by_any(&b_sidecar)
        });
        let sidecar_b_out = find_sock(&b_socks, "B's passthrough (leg 3)", |s| {
            s.local.ip() == passthrough && s.peer == target && s.held_by_any(&b_sidecar)
        });
        let app_b = find_sock(&b_socks, "B's app side of leg 3", |s| {
            s.local == target && s.peer == sidecar_b_out.local && !s.held_by_any(&b_sidecar)
        });
        MeshLegs {
            app_a,
            sidecar_a_in,
            sidecar_a_out,
            sidecar_b_in,
            sidecar_b_out,
            app_b,
        }
    }
}

/// The captures of [`Node::capture_legs`]: leg 1 on A's loopback (the app
/// to A's sidecar at 15001), leg 2 on A's veth in the node (sidecar to
/// sidecar), leg 3 on B's loopback (B's sidecar to B's app).
pub struct LegCaptures {
    app_a_lo: NsCapture,
    bridge: NsCapture,
    b_lo: NsCapture,
}

impl LegCaptures {
    /// Stops the three captures: the counts of legs 1, 2 and 3.
    pub fn stop(self) -> (CaptureCounts, CaptureCounts, CaptureCounts) {
        (self.app_a_lo.stop(), self.bridge.stop(), self.b_lo.stop())
    }
}

// ---------------------------------------------------------------------------
// tcpdump inside a namespace
// ---------------------------------------------------------------------------

/// tcpdump on one interface of one namespace
/// (`ip netns exec NS tcpdump -i IF --immediate-mode -B 65536 -U -w FILE filter`).
pub struct NsCapture {
    child: Option<Child>,
    file: PathBuf,
}

impl NsCapture {
    pub fn start(netns: &str, iface: &str, filter: &str) -> Self {
        let file = std::env::temp_dir().join(format!(
            "atopo-cap-{}-{}.pcap",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let child = crate::start_tcpdump(Some(netns), iface, filter, &file);
        NsCapture {
            child: Some(child),
            file,
        }
    }

    /// Stops the capture; counts all TCP packets and PSH-flagged ones.
    pub fn stop(mut self) -> CaptureCounts {
        crate::stop_tcpdump(self.child.take(), &self.file)
    }
}

impl Drop for NsCapture {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = fs::remove_file(&self.file);
    }
}

// ---------------------------------------------------------------------------
// Echo client handle
// ---------------------------------------------------------------------------

/// What `accel-pod client` reports once every byte came back.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
pub struct EchoReport {
    pub local: SocketAddr,
    pub peer: SocketAddr,
    pub bytes: u64,
    pub sent_sha256: String,
    pub received_sha256: String,
    pub equal: bool,
    pub pid: u32,
}

impl EchoReport {
    /// The client's pattern (its default seed, 1) of `bytes` bytes went out
    /// and came back intact.
    pub fn assert_pattern_echoed(&self, bytes: usize) {
        let want = sha256_hex(&pattern(1, bytes));
        assert!(self.equal, "the echo differs from what was sent: {self:?}");
        assert_eq!(self.bytes, bytes as u64, "{self:?}");
        assert_eq!(self.sent_sha256, want, "not the pattern sent: {self:?}");
        assert_eq!(
            self.received_sha256, want,
            "not the pattern echoed: {self:?}"
        );
    }
}

/// A running echo client holding its connection open.
pub struct EchoClient {
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    pub report: EchoReport,
}

impl EchoClient {
    fn start(mut cmd: Command) -> Self {
        let mut child = cmd.spawn().expect("spawn accel-pod client");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout");
        let mut stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default();
        let report = match serde_json::from_str::<EchoReport>(line.trim()) {
            Ok(r) => r,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                let mut err = String::new();
                let _ = stderr.read_to_string(&mut err);
                panic!("echo client failed: stdout {line:?}, stderr {err}");
            }
        };
        EchoClient {
            child: Some(child),
            stdin,
            report,
        }
    }

    pub fn pid(&self) -> u32 {
        self.report.pid
    }

    /// Lets the client close its connection and exit; asserts it succeeded.
    pub fn finish(mut self) {
        drop(self.stdin.take());
        let mut c = self.child.take().expect("child");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(st)) = c.try_wait() {
                assert!(st.success(), "echo client exited with {st}");
                return;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                panic!("echo client did not exit after its stdin closed");
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for EchoClient {
    fn drop(&mut self) {
        drop(self.stdin.take());
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The echo pattern: distinct per seed and position.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    (0..len as u64)
        .map(|i| {
            let x =
                i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seed.wrapping_mul(0xBF58_476D_1CE4_E5B9);
            (x >> 29) as u8 ^ (i as u8)
        })
        .collect()
}

pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

// ---------------------------------------------------------------------------
// Socket helpers for accel-pod (listeners, original destination, source bind)
// ---------------------------------------------------------------------------

/// Socket plumbing std does not offer, used by the `accel-pod` binary.
pub mod sock {
    use super::*;

    const SO_ORIGINAL_DST: libc::c_int = 80;
    const IP6T_SO_ORIGINAL_DST: libc::c_int = 80;

    fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(r)
        }
    }

    pub fn to_raw(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
        // SAFETY: all-zero is a valid sockaddr_storage.
        let mut ss: libc::sockaddr_storage = unsafe { mem::zeroed() };
        let len = match addr {
            SocketAddr::V4(a) => {
                let sin = libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: a.port().to_be(),
                    sin_addr: libc::in_addr {
                        s_addr: u32::from_ne_bytes(a.ip().octets()),
                    },
                    sin_zero: [0; 8],
                };
                // SAFETY: sockaddr_storage is larger than sockaddr_in.
                unsafe { std::ptr::write((&mut ss as *mut libc::sockaddr_storage).cast(), sin) };
                mem::size_of::<libc::sockaddr_in>()
            }
            SocketAddr::V6(a) => {
                let sin6 = libc::sockaddr_in6 {
                    sin6_family: libc::AF_INET6 as libc::sa_family_t,
                    sin6_port: a.port().to_be(),
                    sin6_flowinfo: 0,
                    sin6_addr: libc::in6_addr {
                        s6_addr: a.ip().octets(),
                    },
                    sin6_scope_id: a.scope_id(),
                };
                // SAFETY: sockaddr_storage is larger than sockaddr_in6.
                unsafe { std::ptr::write((&mut ss as *mut libc::sockaddr_storage).cast(), sin6) };
                mem::size_of::<libc::sockaddr_in6>()
            }
        };
        (ss, len as libc::socklen_t)
    }

    fn from_raw(ss: &libc::sockaddr_storage) -> io::Result<SocketAddr> {
        match ss.ss_family as libc::c_int {
            libc::AF_INET => {
                // SAFETY: family says sockaddr_in.
                let sin: libc::sockaddr_in =
                    unsafe { std::ptr::read((ss as *const libc::sockaddr_storage).cast()) };
                Ok(SocketAddr::V4(SocketAddrV4::new(
                    Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes()),
                    u16::from_be(sin.sin_port),
                )))
            }
            libc::AF_INET6 => {
                // SAFETY: family says sockaddr_in6.
                let sin6: libc::sockaddr_in6 =
                    unsafe { std::ptr::read((ss as *const libc::sockaddr_storage).cast()) };
                Ok(SocketAddr::V6(SocketAddrV6::new(
                    Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                    u16::from_be(sin6.sin6_port),
                    0,
                    sin6.sin6_scope_id,
                )))
            }
            f => Err(io::Error::other(format!("unexpected address family {f}"))),
        }
    }

    fn socket(addr: &SocketAddr) -> io::Result<libc::c_int> {
        let family = if addr.is_ipv4() {
            libc::AF_INET
        } else {
            libc::AF_INET6
        };
        // SAFETY: plain socket(2).
        cvt(unsafe { libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) })
    }

    fn setopt(
        fd: libc::c_int,
        level: libc::c_int,
        opt: libc::c_int,
        v: libc::c_int,
    ) -> io::Result<()> {
        // SAFETY: setsockopt with an int option.
        cvt(unsafe {
            libc::setsockopt(
                fd,
                level,
                opt,
                (&v as *const libc::c_int).cast(),
                mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        })
        .map(drop)
    }

    /// A listener with SO_REUSEADDR and, for IPv6, IPV6_V6ONLY (so the same
    /// port can be held by another process for IPv4).
    pub fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
        let fd = socket(&addr)?;
        // SAFETY: fd is ours; TcpListener closes it on drop (also on error below).
        let l = unsafe { TcpListener::from_raw_fd(fd) };
        setopt(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
        if addr.is_ipv6() {
            setopt(fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 1)?;
        }
        let (ss, len) = to_raw(addr);
        // SAFETY: valid sockaddr of length len.
        cvt(unsafe { libc::bind(fd, (&ss as *const libc::sockaddr_storage).cast(), len) })?;
        // SAFETY: plain listen(2).
        cvt(unsafe { libc::listen(fd, 1024) })?;
        Ok(l)
    }

    /// The destination before NAT (REDIRECT) of an accepted connection:
    /// `SO_ORIGINAL_DST` for IPv4, `IP6T_SO_ORIGINAL_DST` for IPv6.
    pub fn original_dst(s: &TcpStream) -> io::Result<SocketAddr> {
        use std::os::fd::AsRawFd;
        let (level, opt) = if s.local_addr()?.is_ipv4() {
            (libc::SOL_IP, SO_ORIGINAL_DST)
        } else {
            (libc::SOL_IPV6, IP6T_SO_ORIGINAL_DST)
        };
        // SAFETY: all-zero is a valid sockaddr_storage.
        let mut ss: libc::sockaddr_storage = unsafe { mem::zeroed() };
        let mut len = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        // SAFETY: getsockopt into a buffer of len bytes.
        cvt(unsafe {
            libc::getsockopt(
                s.as_raw_fd(),
                level,
                opt,
                (&mut ss as *mut libc::sockaddr_storage).cast(),
                &mut len,
            )
        })?;
        from_raw(&ss)
    }

    /// connect(2) to `dst` from `src` (port chosen by the kernel).
    pub fn connect_from(src: IpAddr, dst: SocketAddr) -> io::Result<TcpStream> {
        let fd = socket(&dst)?;
        // SAFETY: fd is ours; TcpStream closes it on drop.
        let s = unsafe { TcpStream::from_raw_fd(fd) };
        let (ss, len) = to_raw(SocketAddr::new(src, 0));
        // SAFETY: valid sockaddr.
        cvt(unsafe { libc::bind(fd, (&ss as *const libc::sockaddr_storage).cast(), len) })?;
        let (ss, len) = to_raw(dst);
        // SAFETY: valid sockaddr; blocking connect.
        cvt(unsafe { libc::connect(fd, (&ss as *const libc::sockaddr_storage).cast(), len) })?;
        Ok(s)
    }

    /// connect(2) to `dst` from exactly `src` (address AND port), with
    /// SO_REUSEADDR so several sockets can share that source at once.
    pub fn connect_reusing(src: SocketAddr, dst: SocketAddr) -> io::Result<TcpStream> {
        let fd = socket(&dst)?;
        // SAFETY: fd is ours; TcpStream closes it on drop.
        let s = unsafe { TcpStream::from_raw_fd(fd) };
        setopt(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
        let (ss, len) = to_raw(src);
        // SAFETY: valid sockaddr.
        cvt(unsafe { libc::bind(fd, (&ss as *const libc::sockaddr_storage).cast(), len) })?;
        let (ss, len) = to_raw(dst);
        // SAFETY: valid sockaddr; blocking connect.
        cvt(unsafe { libc::connect(fd, (&ss as *const libc::sockaddr_storage).cast(), len) })?;
        Ok(s)
    }

    /// Drops to `uid`/`gid` with no supplementary groups.
    pub fn drop_privileges(uid: u32, gid: u32) -> io::Result<()> {
        // SAFETY: plain credential syscalls.
        unsafe {
            cvt(libc::setgroups(0, std::ptr::null()))?;
            cvt(libc::setgid(gid))?;
            cvt(libc::setuid(uid))?;
        }
        Ok(())
    }

    /// Copies both ways until both sides are done, propagating half-closes.
    pub fn splice_both(a: TcpStream, b: TcpStream) {
        let (a2, b2) = match (a.try_clone(), b.try_clone()) {
            (Ok(a2), Ok(b2)) => (a2, b2),
            _ => return,
        };
        let t = thread::spawn(move || copy_half(a2, b2));
        copy_half(b, a);
        let _ = t.join();
    }

    fn copy_half(mut from: TcpStream, mut to: TcpStream) {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(std::net::Shutdown::Write);
    }
}

/// The pods file (docs/reference.md, "Pods file") an operator would write for `pods`,
/// each with extra TOML lines such as opt-outs; removed on drop.
pub struct PodsFile {
    pub path: PathBuf,
}

impl PodsFile {
    pub fn write(env: &crate::TestEnv, pods: &[(&Pod, &str)]) -> std::io::Result<Self> {
        let mut text = String::from("# meshed pods on this node\n");
        for (pod, extra) in pods {
            text += &format!(
                "[[pod]]\nname = \"default/{}\"\nips = [\"{}\", \"{}\"]\nnetns = \"{}\"\n{extra}\n",
                pod.name,
                pod.ipv4,
                pod.ipv6,
                pod.netns_path.display()
            );
        }
        let path = env.state_dir.with_extension("pods.toml");
        fs::write(&path, text)?;
        Ok(PodsFile { path })
    }

    /// The `--pods-file` argument.
    pub fn arg(&self) -> String {
        self.path.display().to_string()
    }
}

impl Drop for PodsFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}
