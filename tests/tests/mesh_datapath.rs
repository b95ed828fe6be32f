//! The Istio sidecar datapath on the pod topology: the real daemon, pods
//! with Istio's interception and real sidecars, every leg checked.

use accel_test_harness::{TestEnv, counter_of, pattern, sha256_hex};
use accel_topology::{BOUND_SOURCE_PORTS, ECHO_PORT, Mesh, Node, OUTBOUND_PORT, PodsFile};

#[path = "common/mesh_datapath.rs"]
mod mesh_datapath_support;

use mesh_datapath_support::*;

#[test]
fn meshed_echo_is_accelerated_on_all_three_legs() {
    let env = TestEnv::new("mesh-echo");
    let node = Node::new(&env, "me");
    let [a, b] = node.meshed_pods(["a", "b"]);
    b.start_echo();
    // Node mode: a pods file, so loopback (leg 1 is 127.0.0.1:15001) takes
    // part only because A's namespace is listed.
    let pods = PodsFile::write(&env, &[(&a, ""), (&b, "")]).expect("pods file");
    let _daemon = env.start_daemon(&["--pods-file", &pods.arg()]);

    let target = b.addr_v4(ECHO_PORT);
    let legs = node.capture_legs(&a, &b, ECHO_PORT);
    const BYTES: usize = 512 * 1024;
    let client = a.echo_client(target, BYTES);
    client.report.assert_pattern_echoed(BYTES);
    client.finish();
    let (a_lo, bridge, b_lo) = legs.stop();
    let status = env.status_json();
    eprintln!("PSH: A lo {a_lo:?}, bridge {bridge:?}, B lo {b_lo:?}");
    eprintln!("counters: {}", status["datapath"]["counters"]);
    assert!(
        counter_of(&status, "passive_paired") >= 3,
        "three legs paired"
    );
    assert_eq!(
        a_lo.psh_data, 0,
        "leg 1 (app -> sidecar in A) crossed TCP: {a_lo:?}"
    );
    assert_eq!(
        bridge.psh_data, 0,
        "leg 2 (sidecar A -> sidecar B) crossed TCP: {bridge:?}"
    );
    assert_eq!(
        b_lo.psh_data, 0,
        "leg 3 (sidecar B -> app) crossed TCP: {b_lo:?}"
    );
}

#[test]
fn port_reuse_and_nat_remap_never_cross_deliver() {
    let env = TestEnv::new("mesh-reuse");
    let node = Node::new(&env, "ru");
    let [a, b, c] = node.meshed_pods(["a", "b", "c"]);
    b.start_echo();
    c.start_echo();
    let ips: Vec<String> = [&a, &b, &c].iter().map(|p| p.ipv4.to_string()).collect();
    let _daemon = env.start_daemon(&[
        "--local-endpoint",
        &ips[0],
        "--local-endpoint",
        &ips[1],
        "--local-endpoint",
        &ips[2],
    ]);
    let cap_a_lo = a.capture("lo", &format!("tcp port {OUTBOUND_PORT}"));
    const ROUNDS: u16 = 20;
    for round in 0..ROUNDS {
        // Two connections from the same pod IP and port to different pods:
        // after REDIRECT both would be podA:port -> 127.0.0.1:15001, so
        // conntrack remaps the second one's source port.
        let port = BOUND_SOURCE_PORTS + round;
        // The sidecar closes the last round's connections on its own
        // time; under load one can still be there when this round starts.
        let settle = std::time::Instant::now();
        while !a.ports_at_outbound_sidecar().is_empty()
            && settle.elapsed() < std::time::Duration::from_secs(5)
        {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let source = a.addr_v4(port);
        let targets = [b.addr_v4(ECHO_PORT), c.addr_v4(ECHO_PORT)];
        let reports = reuse(&a, source, &targets, 1000 + 10 * u64::from(round), || {
            let at_sidecar = a.ports_at_outbound_sidecar();
            assert_eq!(
                at_sidecar.len(),
                2,
                "two connections at A's sidecar: {at_sidecar:?}"
            );
            assert!(at_sidecar.contains(&port), "{at_sidecar:?}");
            assert!(
                at_sidecar.iter().any(|p| *p != port),
                "netfilter must have remapped one source port: {at_sidecar:?}"
            );
        });
        assert_eq!(reports.len(), 2);
        for r in &reports {
            assert_eq!(r["local"], source.to_string(), "both share one source: {r}");
        }
        assert_own_pattern(&reports);
    }
    let a_lo = cap_a_lo.stop();
    let status = env.status_json();
    eprintln!(
        "A lo: {a_lo:?}; counters: {}",
        status["datapath"]["counters"]
    );
    let paired = counter_of(&status, "passive_paired");
    assert!(
        paired >= 6 * u64::from(ROUNDS),
        "every leg of every connection paired exactly, got {paired}"
    );
    assert_eq!(
        a_lo.psh_data, 0,
        "the app -> sidecar legs were not accelerated: {a_lo:?}"
    );
    for reason in [
        "refused_unknown_token",
        "refused_netns_mismatch",
        "redirect_failed",
    ] {
        assert_eq!(counter_of(&status, reason), 0, "{reason}");
    }
}

#[test]
fn identical_loopback_four_tuples_in_two_pods_never_cross_deliver() {
    let env = TestEnv::new("mesh-loop");
    let node = Node::new(&env, "lp");
    let [x, y] = node.meshed_pods(["x", "y"]);
    x.start_echo();
    y.start_echo();
    let _daemon = env.start_daemon(&[]);
    let loopback_server: std::net::SocketAddr = ([127, 0, 0, 1], ECHO_PORT).into();
    for round in 0..20u16 {
        // The same 127.0.0.1:port -> 127.0.0.1:8080 in both pods at once.
        let source: std::net::SocketAddr =
            ([127, 0, 0, 1], BOUND_SOURCE_PORTS + 1000 + round).into();
        let mut y_reports = Vec::new();
        let x_reports = reuse(
            &x,
            source,
            &[loopback_server],
            5000 + u64::from(round),
            || {
                y_reports = reuse(
                    &y,
                    source,
                    &[loopback_server],
                    9000 + u64::from(round),
                    || {},
                );
            },
        );
        assert_own_pattern(&x_reports);
        assert_own_pattern(&y_reports);
        assert_eq!(x_reports[0]["local"], y_reports[0]["local"]);
    }
    let status = env.status_json();
    assert!(counter_of(&status, "passive_paired") >= 40);
    assert_eq!(counter_of(&status, "redirect_failed"), 0);
}

#[test]
fn pods_file_scopes_loopback_to_meshed_pods_and_applies_opt_outs() {
    use accel_topology::HTTP_PORT;
    let env = TestEnv::new("mesh-scope");
    let node = Node::new(&env, "sc");
    let a = node.meshed_pod("a", Mesh::default().exclude_outbound_port(HTTP_PORT));
    let b = node.meshed_pod("b", Mesh::default());
    let u = node.unmeshed_pod("u");
    for p in [&a, &b, &u] {
        p.start_echo();
    }
    let file = vec![0x5au8; 256 * 1024];
    b.start_nginx(&file);
    let pods = PodsFile::write(
        &env,
        &[
            (&a, &format!("exclude_outbound_ports = [{HTTP_PORT}]")),
            (&b, ""),
        ],
    )
    .expect("pods file");
    let _daemon = env.start_daemon(&["--pods-file", &pods.arg()]);
    let status = env.status_json();
    assert_eq!(status["daemon"]["loopback_meshed_only"], true, "{status}");
    assert_eq!(status["daemon"]["pods"].as_array().map(Vec::len), Some(2));

    // Loopback inside the unmeshed pod: never recorded.
    let loopback: std::net::SocketAddr = ([127, 0, 0, 1], ECHO_PORT).into();
    let offered = env.counter("active_offered");
    let cap_u = u.capture("lo", &format!("tcp port {ECHO_PORT}"));
    assert_own_pattern(&reuse(
        &u,
        ([127, 0, 0, 1], BOUND_SOURCE_PORTS + 2000).into(),
        &[loopback],
        77,
        || {},
    ));
    let u_lo = cap_u.stop();
    assert_eq!(
        env.counter("active_offered"),
        offered,
        "unmeshed loopback was recorded"
    );
    assert!(
        u_lo.psh_data > 0,
        "unmeshed loopback must stay on TCP: {u_lo:?}"
    );

    // Loopback inside a meshed pod: accelerated.
    let cap_a = a.capture("lo", &format!("tcp port {ECHO_PORT}"));
    assert_own_pattern(&reuse(
        &a,
        ([127, 0, 0, 1], BOUND_SOURCE_PORTS + 2001).into(),
        &[loopback],
        78,
        || {},
    ));
    let a_lo = cap_a.stop();
    assert_eq!(
        a_lo.psh_data, 0,
        "meshed loopback must be accelerated: {a_lo:?}"
    );

    // A's excluded outbound port: its connection to B:80 bypasses A's
    // sidecar (iptables) and must not be paired with B's sidecar either.
    let excluded = env.counter("excluded_by_pod_opt_out");
    let cap_bridge = node.capture(&a.host_veth, &format!("tcp port {HTTP_PORT}"));
    let body = a.curl(&format!("http://{}{}", b.ipv4, accel_topology::HTTP_FILE));
    assert_eq!(sha256_hex(&body), sha256_hex(&file));
    let bridge = cap_bridge.stop();
    assert!(
        bridge.psh_data > 0,
        "excluded port must stay on TCP: {bridge:?}"
    );
    assert!(env.counter("excluded_by_pod_opt_out") > excluded);

    // ...while A's other traffic to B is still accelerated on every leg.
    let cap_bridge = node.capture(&a.host_veth, &format!("tcp port {ECHO_PORT}"));
    assert_own_pattern(&reuse(
        &a,
        a.addr_v4(BOUND_SOURCE_PORTS + 2002),
        &[b.addr_v4(ECHO_PORT)],
        79,
        || {},
    ));
    assert_eq!(cap_bridge.stop().psh_data, 0);
}

#[test]
fn http_through_both_sidecars_is_accelerated_with_and_without_sendfile() {
    use accel_topology::{HTTP_FILE, HTTP_PORT};
    let env = TestEnv::new("mesh-http");
    let node = Node::new(&env, "ht");
    let [a, b, c] = node.meshed_pods(["a", "b", "c"]);
    // Under the 4 MiB flow-control budget: a larger response into a reader
    // that lags would (correctly) finish over TCP; see flow_control.rs.
    let file = pattern::bytes(11, 0, 2 * 1024 * 1024 + 3);
    b.start_nginx_with(&file, true);
    c.start_nginx_with(&file, false);
    let pods = PodsFile::write(&env, &[(&a, ""), (&b, ""), (&c, "")]).expect("pods file");
    let _daemon = env.start_daemon(&["--pods-file", &pods.arg()]);
    for (server, sendfile) in [(&b, "on"), (&c, "off")] {
        let legs = node.capture_legs(&a, server, HTTP_PORT);
        for _ in 0..3 {
            let body = a.curl(&format!("http://{}{HTTP_FILE}", server.ipv4));
            assert_eq!(sha256_hex(&body), sha256_hex(&file), "sendfile {sendfile}");
        }
        let (a_lo, bridge, srv_lo) = legs.stop();
        eprintln!("sendfile {sendfile}: A lo {a_lo:?}, bridge {bridge:?}, server lo {srv_lo:?}");
        assert_eq!(a_lo.psh_data, 0, "sendfile {sendfile}: leg 1 crossed TCP");
        assert_eq!(bridge.psh_data, 0, "sendfile {sendfile}: leg 2 crossed TCP");
        assert_eq!(srv_lo.psh_data, 0, "sendfile {sendfile}: leg 3 crossed TCP");
    }
}
