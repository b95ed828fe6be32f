//! The private node namespace with its bridge, and the pods on it.

use std::{
    fs, mem,
    net::{Ipv4Addr, Ipv6Addr},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU8, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use accel_test_harness::{Capture, TestEnv, require_root};

use crate::{mesh::*, netns::*, pod::*, sockets::*, *};

pub(crate) struct Tracked {
    pub(crate) pod: String,
    pub(crate) role: String,
    pub(crate) child: Child,
}

/// The private node namespace with its bridge, and the pods on it.
pub struct Node {
    /// Prefix of every namespace this node created (`atopo-<pid>-<seq>-<tag>`).
    pub prefix: String,
    /// The node namespace (holds `br0` and the host ends of the veths).
    pub netns: String,
    /// Per-node scratch dir (configs, logs, served files).
    pub dir: PathBuf,
    pub(crate) cgroup: PathBuf,
    pub(crate) next_host: AtomicU8,
    pub(crate) namespaces: Mutex<Vec<String>>,
    pub(crate) procs: Arc<Mutex<Vec<Tracked>>>,
}

impl Node {
    /// A node whose pod processes all run inside `env`'s cgroup.
    pub fn new(env: &TestEnv, tag: &str) -> Self {
        require_root();
        let prefix = format!(
            "atopo-{}-{}-{tag}",
            std::process::id(),
            accel_test_harness::next_seq()
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
        node.add_netns(&node.netns);
        let n = node.netns.as_str();
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

    /// Creates the network namespace `netns` with IPv6 DAD off and `lo` up.
    /// It is registered before creation: a failure below still tears it down.
    fn add_netns(&self, netns: &str) {
        self.namespaces.lock().unwrap().push(netns.to_string());
        ip(&["netns", "add", netns]);
        self.sysctl(netns, "net.ipv6.conf.all.accept_dad", "0");
        self.sysctl(netns, "net.ipv6.conf.default.accept_dad", "0");
        ip(&["-n", netns, "link", "set", "lo", "up"]);
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
        self.add_netns(&pod.netns);
        let (p, n) = (pod.netns.as_str(), self.netns.as_str());
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
    pub fn capture(&self, iface: &str, filter: &str) -> Capture {
        Capture::in_netns(&self.netns, iface, filter)
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
