//! A pod: its namespace, its processes (apps, sidecars, clients), and the
//! echo client that holds a connection open.

use std::{
    fs,
    io::{BufRead, BufReader, Read},
    net::{Ipv4Addr, Ipv6Addr, SocketAddr},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Stdio},
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

use accel_test_harness::{Capture, pattern, sha256_hex};

use crate::{mesh::*, netns::*, node::*, sockets::*, *};

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
    pub(crate) cgroup: PathBuf,
    pub(crate) procs: Arc<Mutex<Vec<Tracked>>>,
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

    pub(crate) fn install_istio_rules(&self, mesh: &Mesh) {
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

    pub(crate) fn start_sidecar(&self) {
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
    pub fn capture(&self, iface: &str, filter: &str) -> Capture {
        Capture::in_netns(&self.netns, iface, filter)
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
        let want = sha256_hex(&pattern::bytes(1, 0, bytes));
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
    pub(crate) child: Option<Child>,
    pub(crate) stdin: Option<ChildStdin>,
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
