//! Sockets as `ss` reports them, and the three legs of a meshed connection.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use accel_test_harness::{Capture, CaptureCounts};

use crate::{pod::*, *};

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
    pub(crate) fn parse(line: &str) -> Option<SockInfo> {
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

pub(crate) fn parse_ss_addr(s: &str) -> Option<SocketAddr> {
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

pub(crate) fn find_sock(socks: &[SockInfo], what: &str, f: impl Fn(&SockInfo) -> bool) -> SockInfo {
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
    pub(crate) app_a_lo: Capture,
    pub(crate) bridge: Capture,
    pub(crate) b_lo: Capture,
}

impl LegCaptures {
    /// Stops the three captures: the counts of legs 1, 2 and 3.
    pub fn stop(self) -> (CaptureCounts, CaptureCounts, CaptureCounts) {
        (self.app_a_lo.stop(), self.bridge.stop(), self.b_lo.stop())
    }
}
