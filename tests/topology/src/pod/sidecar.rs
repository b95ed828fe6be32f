//! A meshed pod's Istio interception (iptables rules, the `::6` address)
//! and its sidecar: haproxy for IPv4, `accel-pod proxy` for IPv6.

use std::{fs, process::Stdio};

use super::Pod;
use crate::{
    INBOUND_PORT, OUTBOUND_PORT, SIDECAR_GID, SIDECAR_UID,
    mesh::{Mesh, haproxy_config, istio_rules},
    netns::ip,
    pod_bin,
};

impl Pod {
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
}
