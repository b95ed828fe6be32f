//! The Istio sidecar datapath on the pod topology: the real daemon, pods
//! with Istio's interception and real sidecars, every leg checked.

use accel_tests::{
    TestEnv, counter_of,
    topology::{ECHO_PORT, Mesh, Node, OUTBOUND_PORT, pattern, sha256_hex},
};

#[test]
fn meshed_echo_is_accelerated_on_all_three_legs() {
    let env = TestEnv::new("mesh-echo");
    let node = Node::new(&env, "me");
    let a = node.meshed_pod("a", Mesh::default());
    let b = node.meshed_pod("b", Mesh::default());
    b.start_echo();
    let a_ip = a.ipv4.to_string();
    let b_ip = b.ipv4.to_string();
    let _daemon = env.start_daemon(&["--local-endpoint", &a_ip, "--local-endpoint", &b_ip]);

    let target = b.addr_v4(ECHO_PORT);
    let cap_a_lo = a.capture("lo", &format!("tcp port {OUTBOUND_PORT}"));
    let cap_bridge = node.capture(&a.host_veth, &format!("tcp port {ECHO_PORT}"));
    let cap_b_lo = b.capture("lo", &format!("tcp port {ECHO_PORT}"));
    const BYTES: usize = 512 * 1024;
    let client = a.echo_client(target, BYTES);
    let r = client.report.clone();
    assert!(r.equal, "{r:?}");
    assert_eq!(r.received_sha256, sha256_hex(&pattern(1, BYTES)));
    client.finish();
    let (a_lo, bridge, b_lo) = (cap_a_lo.stop(), cap_bridge.stop(), cap_b_lo.stop());
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
