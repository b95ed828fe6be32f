//! Istio's interception as `istio-iptables` installs it, and the haproxy
//! sidecar configuration.

use crate::*;

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

pub(crate) fn port_list(ports: &[u16]) -> String {
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
