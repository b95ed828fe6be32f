//! The pod topology itself (no daemon): a private node namespace with a
//! bridge, pods in their own namespaces, Istio's REDIRECT interception and
//! real sidecars. These tests prove the topology reproduces Istio's three
//! legs faithfully, so datapath tests built on it mean something.

use std::{
    net::{IpAddr, SocketAddr},
    sync::Mutex,
};

use accel_test_harness::{TestEnv, pattern, sha256_hex};
use accel_topology::{
    ECHO_PORT, HTTP_FILE, HTTP_PORT, INBOUND_PORT, Mesh, MeshLegs, Node, OUTBOUND_PORT,
    PASSTHROUGH_V4, PASSTHROUGH_V6, Pod, SIDECAR_UID, SockInfo, netns_list, pid_alive,
};

fn find<'a>(socks: &'a [SockInfo], what: &str, f: impl Fn(&SockInfo) -> bool) -> &'a SockInfo {
    socks
        .iter()
        .find(|s| f(s))
        .unwrap_or_else(|| panic!("no socket for {what}; sockets:\n{socks:#?}"))
}

fn assert_three_legs(a: &Pod, b: &Pod, client_local: SocketAddr, target: SocketAddr) {
    let legs = MeshLegs::find(a, b, client_local, target);
    assert_eq!(legs.app_a.uid, 0, "the app is not the sidecar user");
    assert_eq!(legs.sidecar_a_out.uid, SIDECAR_UID);
    assert_eq!(legs.sidecar_b_out.uid, SIDECAR_UID);
    let passthrough: IpAddr = if target.is_ipv4() {
        PASSTHROUGH_V4.into()
    } else {
        PASSTHROUGH_V6.into()
    };
    assert_eq!(legs.sidecar_b_out.local.ip(), passthrough);
    assert_eq!(legs.sidecar_b_in.local.port(), INBOUND_PORT);
    assert_eq!(legs.sidecar_a_in.local.port(), OUTBOUND_PORT);
    assert!(legs.sidecar_a_in.local.ip().is_loopback());
    assert!(
        legs.app_b.held_by(b.pid_of("echo").expect("echo pid")),
        "leg 3 not accepted by B's echo app: {legs:#?}"
    );
}

#[test]
fn meshed_to_meshed_has_three_legs_carrying_every_byte() {
    let env = TestEnv::new("topo-mm");
    let node = Node::new(&env, "mm");
    let [a, b] = node.meshed_pods(["a", "b"]);
    b.start_echo();

    // The exact Istio rule set is what iptables holds in A.
    let saved = a.nat_rules(false);
    for rule in [
        "-A OUTPUT -j ISTIO_OUTPUT",
        "-A PREROUTING -p tcp -j ISTIO_INBOUND",
        "-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001",
        "-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006",
        "-A ISTIO_OUTPUT -s 127.0.0.6/32 -o lo -j RETURN",
        "-A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN",
        "-A ISTIO_OUTPUT -m owner --gid-owner 1337 -j RETURN",
        "-A ISTIO_OUTPUT -j ISTIO_REDIRECT",
    ] {
        assert!(saved.contains(rule), "missing {rule:?} in\n{saved}");
    }

    let target = b.addr_v4(ECHO_PORT);
    let legs = node.capture_legs(&a, &b, ECHO_PORT);

    const BYTES: usize = 512 * 1024;
    let client = a.echo_client(target, BYTES);
    let r = client.report.clone();
    r.assert_pattern_echoed(BYTES);
    assert_eq!(r.peer, target);
    assert_three_legs(&a, &b, r.local, target);
    // The client really runs in the pod and in the test cgroup.
    assert!(a.pids().contains(&client.pid()));
    let procs = std::fs::read_to_string(env.cgroup.join("cgroup.procs")).unwrap();
    for pid in [client.pid(), b.pid_of("echo").unwrap()]
        .into_iter()
        .chain(a.sidecar_pids())
        .chain(b.sidecar_pids())
    {
        assert!(
            procs.lines().any(|l| l.trim() == pid.to_string()),
            "pid {pid} not in the test cgroup"
        );
    }
    client.finish();

    let (a_lo, bridge, b_lo) = legs.stop();
    eprintln!("PSH segments: A lo {a_lo:?}, bridge {bridge:?}, B lo {b_lo:?}");
    assert!(a_lo.psh_data > 0, "no data on A's lo (leg 1): {a_lo:?}");
    assert!(
        bridge.psh_data > 0,
        "no data on the bridge (leg 2): {bridge:?}"
    );
    assert!(b_lo.psh_data > 0, "no data on B's lo (leg 3): {b_lo:?}");
}

#[test]
fn http_through_both_sidecars_is_byte_exact() {
    let env = TestEnv::new("topo-http");
    let node = Node::new(&env, "http");
    let [a, b] = node.meshed_pods(["a", "b"]);
    let file = pattern::bytes(7, 0, 3 * 1024 * 1024 + 17);
    b.start_nginx(&file);
    let cap_b_lo = b.capture("lo", &format!("tcp port {HTTP_PORT}"));
    let cap_a_lo = a.capture("lo", &format!("tcp port {OUTBOUND_PORT}"));
    let body = a.curl(&format!("http://{}{HTTP_FILE}", b.ipv4));
    assert_eq!(body.len(), file.len());
    assert_eq!(sha256_hex(&body), sha256_hex(&file));
    let (a_lo, b_lo) = (cap_a_lo.stop(), cap_b_lo.stop());
    assert!(
        a_lo.psh_data > 0,
        "HTTP did not go through A's sidecar: {a_lo:?}"
    );
    assert!(
        b_lo.psh_data > 0,
        "HTTP did not go through B's sidecar: {b_lo:?}"
    );
}

#[test]
fn unmeshed_clients_reach_meshed_and_unmeshed_pods() {
    let env = TestEnv::new("topo-um");
    let node = Node::new(&env, "um");
    let u = node.unmeshed_pod("u");
    let u2 = node.unmeshed_pod("u2");
    let b = node.meshed_pod("b", Mesh::default());
    b.start_echo();
    u2.start_echo();

    // Unmeshed -> meshed: inbound goes through B's sidecar (15006, then
    // 127.0.0.6 -> B:8080).
    let c = u.echo_client(b.addr_v4(ECHO_PORT), 100_000);
    assert!(c.report.equal);
    assert!(u.sockets().iter().all(|s| s.local.port() != OUTBOUND_PORT));
    let bs = b.sockets();
    let acc = find(&bs, "B's 15006 socket for U", |s| {
        s.local == b.addr_v4(INBOUND_PORT) && s.peer == c.report.local
    });
    assert!(acc.held_by_any(&b.sidecar_pids()));
    find(&bs, "B's passthrough", |s| {
        s.local.ip() == IpAddr::from(PASSTHROUGH_V4) && s.peer == b.addr_v4(ECHO_PORT)
    });
    c.finish();

    // Unmeshed -> unmeshed: direct, the app sees the client itself.
    let c = u.echo_client(u2.addr_v4(ECHO_PORT), 100_000);
    assert!(c.report.equal);
    let s2 = u2.sockets();
    let acc = find(&s2, "U2's app socket", |s| {
        s.local == u2.addr_v4(ECHO_PORT) && s.peer == c.report.local
    });
    assert!(acc.held_by(u2.pid_of("echo").unwrap()));
    c.finish();

    // Meshed -> unmeshed: only A's sidecar; U2 sees A's pod IP, uid 1337's port.
    let a = node.meshed_pod("a", Mesh::default());
    let c = a.echo_client(u2.addr_v4(ECHO_PORT), 100_000);
    assert!(c.report.equal);
    let up = find(&a.sockets(), "A's upstream to U2", |s| {
        s.uid == SIDECAR_UID && s.peer == u2.addr_v4(ECHO_PORT)
    })
    .clone();
    find(&u2.sockets(), "U2's socket from A's sidecar", |s| {
        s.local == u2.addr_v4(ECHO_PORT) && s.peer == up.local
    });
    c.finish();
}

#[test]
fn ipv6_meshed_pair() {
    let env = TestEnv::new("topo-v6");
    let node = Node::new(&env, "v6");
    let [a, b] = node.meshed_pods(["a", "b"]);
    b.start_echo();
    let file = pattern::bytes(9, 0, 1024 * 1024);
    b.start_nginx(&file);

    let saved = a.nat_rules(true);
    for rule in [
        "-A ISTIO_OUTPUT -s ::6/128 -o lo -j RETURN",
        "-A ISTIO_OUTPUT -d ::1/128 -j RETURN",
        "-A ISTIO_OUTPUT -j ISTIO_REDIRECT",
    ] {
        assert!(saved.contains(rule), "missing {rule:?} in\n{saved}");
    }

    let target = b.addr_v6(ECHO_PORT);
    let cap_a_lo = a.capture("lo", &format!("tcp port {OUTBOUND_PORT}"));
    let cap_eth = a.capture("eth0", &format!("tcp port {ECHO_PORT}"));
    let cap_b_lo = b.capture("lo", &format!("tcp port {ECHO_PORT}"));
    let client = a.echo_client(target, 256 * 1024);
    assert!(client.report.equal, "{:?}", client.report);
    assert_three_legs(&a, &b, client.report.local, target);
    client.finish();
    let (a_lo, eth, b_lo) = (cap_a_lo.stop(), cap_eth.stop(), cap_b_lo.stop());
    eprintln!("IPv6 PSH segments: A lo {a_lo:?}, A eth0 {eth:?}, B lo {b_lo:?}");
    assert!(a_lo.psh_data > 0 && eth.psh_data > 0 && b_lo.psh_data > 0);

    let body = a.curl(&format!("http://[{}]{HTTP_FILE}", b.ipv6));
    assert_eq!(sha256_hex(&body), sha256_hex(&file));
}

#[test]
fn excluded_ports_and_ranges_bypass_the_sidecar() {
    let env = TestEnv::new("topo-excl");
    let node = Node::new(&env, "excl");
    let b = node.meshed_pod("b", Mesh::default());
    b.start_echo();
    let target = b.addr_v4(ECHO_PORT);

    // excludeOutboundPorts=8080: A's app goes straight to B (B's sidecar
    // still intercepts inbound).
    let a = node.meshed_pod("a", Mesh::default().exclude_outbound_port(ECHO_PORT));
    assert!(
        a.nat_rules(false)
            .contains("-A ISTIO_OUTPUT -p tcp -m multiport --dports 8080 -j RETURN")
    );
    let c = a.echo_client(target, 100_000);
    assert!(c.report.equal);
    let a_socks = a.sockets();
    assert!(
        a_socks
            .iter()
            .all(|s| s.local.port() != OUTBOUND_PORT && s.uid != SIDECAR_UID),
        "A's sidecar was involved: {a_socks:#?}"
    );
    find(
        &b.sockets(),
        "B's sidecar accepting A's app directly",
        |s| s.local == b.addr_v4(INBOUND_PORT) && s.peer == c.report.local,
    );
    c.finish();

    // excludeOutboundIPRanges=<B>/32: same bypass, by destination.
    let a2 = node.meshed_pod(
        "a2",
        Mesh::default().exclude_outbound_ip_range(&format!("{}/32", b.ipv4)),
    );
    let c = a2.echo_client(target, 100_000);
    assert!(c.report.equal);
    assert!(a2.sockets().iter().all(|s| s.local.port() != OUTBOUND_PORT));
    c.finish();
    // ... while other destinations still go through A2's sidecar.
    let u = node.unmeshed_pod("u");
    u.start_echo();
    let c = a2.echo_client(u.addr_v4(ECHO_PORT), 1000);
    assert!(
        a2.sockets()
            .iter()
            .any(|s| s.local.port() == OUTBOUND_PORT && s.peer == c.report.local)
    );
    c.finish();

    // excludeInboundPorts=8080 on C: U reaches C's app directly.
    let cpod = node.meshed_pod("c", Mesh::default().exclude_inbound_port(ECHO_PORT));
    cpod.start_echo();
    let c = u.echo_client(cpod.addr_v4(ECHO_PORT), 100_000);
    assert!(c.report.equal);
    let cs = cpod.sockets();
    let acc = find(&cs, "C's app accepting U directly", |s| {
        s.local == cpod.addr_v4(ECHO_PORT) && s.peer == c.report.local
    });
    assert!(acc.held_by(cpod.pid_of("echo").unwrap()));
    assert!(cs.iter().all(|s| s.local.port() != INBOUND_PORT));
    c.finish();
}

#[derive(Default)]
struct Seen {
    namespaces: Vec<String>,
    pids: Vec<u32>,
    prefix: String,
}

fn assert_gone(seen: &Seen, env: &TestEnv) {
    assert!(!seen.namespaces.is_empty() && !seen.pids.is_empty());
    let left: Vec<String> = netns_list()
        .into_iter()
        .filter(|n| n.starts_with(&seen.prefix))
        .collect();
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
    let alive: Vec<u32> = seen
        .pids
        .iter()
        .copied()
        .filter(|p| pid_alive(*p))
        .collect();
    assert!(alive.is_empty(), "processes left behind: {alive:?}");
    let procs = std::fs::read_to_string(env.cgroup.join("cgroup.procs")).unwrap();
    assert!(procs.trim().is_empty(), "test cgroup not empty: {procs}");
    // Everything lived in the pods' namespaces: the host never got a rule.
    for tool in ["iptables-save", "ip6tables-save"] {
        let out = std::process::Command::new(tool).output().expect(tool);
        let s = String::from_utf8_lossy(&out.stdout);
        assert!(!s.contains("ISTIO"), "{tool} on the host shows ISTIO rules");
    }
}

fn busy_node(env: &TestEnv, tag: &str, seen: &Mutex<Seen>) -> Node {
    let node = Node::new(env, tag);
    let [a, b] = node.meshed_pods(["a", "b"]);
    b.start_echo();
    b.start_nginx(b"hello");
    let client = a.echo_client(b.addr_v4(ECHO_PORT), 10_000);
    assert!(client.report.equal);
    let mut s = seen.lock().unwrap();
    s.prefix = node.prefix.clone();
    s.namespaces = node.namespaces();
    s.pids = node.pids();
    assert!(s.pids.contains(&client.pid()));
    // The client is deliberately leaked: teardown must find it anyway.
    std::mem::forget(client);
    node
}

#[test]
fn teardown_leaves_nothing_even_after_a_panic() {
    let env = TestEnv::new("topo-down");

    let seen = Mutex::new(Seen::default());
    let node = busy_node(&env, "down", &seen);
    drop(node);
    assert_gone(&seen.lock().unwrap(), &env);

    let seen = Mutex::new(Seen::default());
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _node = busy_node(&env, "panic", &seen);
        panic!("deliberate panic with a busy node");
    }));
    assert!(r.is_err());
    let seen = seen.into_inner().unwrap_or_else(|e| e.into_inner());
    assert_gone(&seen, &env);
}
