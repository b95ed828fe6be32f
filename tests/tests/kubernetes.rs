//! The Kubernetes endpoint source end to end: the real daemon watching a
//! loopback API server (list/watch, 410, outages), the pod topology carrying
//! real traffic, the BPF maps read with bpftool, the node status and the
//! uninstall handshake.

mod common;

use std::{
    collections::BTreeSet,
    net::IpAddr,
    path::Path,
    thread,
    time::{Duration, Instant},
};

use accel_fake_apiserver::fixtures;
use accel_test_harness::{
    TestEnv, attachments, counter_of, http_get, pattern, running_kernel, sha256_hex, wait_until,
};
use accel_topology::{ECHO_PORT, Mesh, Node};
use common::run_installer;

#[path = "common/kubernetes.rs"]
mod kubernetes_support;

use kubernetes_support::*;

#[test]
fn pod_watch_drives_the_maps_within_a_second_and_survives_api_outages() {
    let env = TestEnv::new("k8s-src");
    let node = Node::new(&env, "ks");
    let a = node.meshed_pod("a", Mesh::default());
    let b = node.meshed_pod("b", Mesh::default());
    let u = node.unmeshed_pod("u");
    b.start_echo();
    let node_name = format!("node-{}", std::process::id());
    let (api, kubeconfig) = start_api(&env, &node_name, &running_kernel());
    let s = |ip: IpAddr| ip.to_string();
    let (a4, a6, b4, b6, u4) = (
        s(a.ipv4.into()),
        s(a.ipv6.into()),
        s(b.ipv4.into()),
        s(b.ipv6.into()),
        s(u.ipv4.into()),
    );
    api.upsert(fixtures::istio_pod(NS, "a", &node_name, &[&a4, &a6]));
    // B carries Istio's native sidecar (an istio-proxy init container).
    let b_obj = fixtures::native_sidecar_pod(NS, "b", &node_name, &[&b4, &b6]);
    api.upsert(b_obj.clone());
    api.upsert(fixtures::plain_pod(NS, "u", &node_name, &[&u4]));
    // A meshed pod whose opt-out annotation cannot be read: kept on TCP.
    api.upsert(fixtures::with_annotation(
        fixtures::istio_pod(NS, "bad", &node_name, &["10.250.0.9"]),
        "traffic.sidecar.istio.io/excludeInboundPorts",
        "80,http",
    ));
    // Another node's meshed pod: never ours.
    api.upsert(fixtures::istio_pod(
        NS,
        "far",
        "some-other-node",
        &["10.250.1.1"],
    ));

    let daemon = env.start_daemon(&k8s_args(&node_name, &kubeconfig));
    let want: BTreeSet<IpAddr> = [a4.as_str(), a6.as_str(), b4.as_str(), b6.as_str()]
        .iter()
        .map(|s| s.parse().expect("ip"))
        .collect();
    let initial = wait_until(
        Duration::from_secs(10),
        "initial pod list in the maps",
        || endpoint_ips(&env) == want,
    );
    eprintln!("initial list applied {initial:?} after ready");
    // Both pods' namespaces were found by address (loopback legs take part).
    wait_until(
        Duration::from_secs(5),
        "both pod namespaces resolved",
        || map_entries(&env, "accel_meshed_netns") == 2,
    );

    // Real traffic through both sidecars: byte-exact and accelerated.
    const BYTES: usize = 256 * 1024;
    let before = counter_of(&env.status_json(), "passive_paired");
    let cap = node.capture(&a.host_veth, &format!("tcp port {ECHO_PORT}"));
    let client = a.echo_client(b.addr_v4(ECHO_PORT), BYTES);
    assert!(client.report.equal, "{:?}", client.report);
    assert_eq!(
        client.report.received_sha256,
        sha256_hex(&pattern::bytes(1, 0, BYTES))
    );
    client.finish();
    assert_eq!(cap.stop().psh_data, 0, "sidecar -> sidecar crossed TCP");
    assert!(counter_of(&env.status_json(), "passive_paired") >= before + 3);

    // Metrics: pods, invalid pods, and traffic per pod pair with pod labels.
    let (code, body) = http_get(&daemon.metrics_addr, "/metrics");
    assert_eq!(code, 200);
    assert_eq!(
        metric(&body, "sidecar_accel_meshed_pods "),
        Some(2.0),
        "{body}"
    );
    assert_eq!(
        metric(&body, "sidecar_accel_meshed_pods_invalid "),
        Some(1.0),
        "{body}"
    );
    for (src, dst) in [("a", "a"), ("a", "b"), ("b", "b"), ("b", "a")] {
        let series = format!(
            "sidecar_accel_pod_traffic_bytes_total{{src_namespace=\"{NS}\",src_pod=\"{src}\",dst_namespace=\"{NS}\",dst_pod=\"{dst}\"}}"
        );
        let bytes = metric(&body, &series).unwrap_or(0.0);
        assert!(bytes > 0.0, "no {series} in:\n{body}");
    }

    // Node status for users and the installer: the agent looks at the
    // daemon's state once per tick, so the first status may predate the
    // pod list; the next tick must bring it up to date.
    wait_until(
        Duration::from_secs(5),
        "node status counting both meshed pods",
        || node_status(&api, &node_name).is_some_and(|st| st["meshedPods"] == 2),
    );
    let st = node_status(&api, &node_name).expect("status annotation");
    assert_eq!(st["state"], "accelerating", "{st}");
    assert_eq!(st["meshedPods"], 2, "{st}");
    assert_eq!(node_label(&api, &node_name).as_deref(), Some("true"));

    // Update: an Istio opt-out added to B reaches the maps within a second.
    let b_ip: IpAddr = b4.parse().expect("ip");
    let updated = wait_until(Duration::from_secs(1), "pod update in the maps", {
        api.upsert(fixtures::with_annotation(
            b_obj.clone(),
            "traffic.sidecar.istio.io/excludeInboundPorts",
            "9999",
        ));
        || excluded_ports(&env).contains(&(b_ip, 9999))
    });
    // Delete: B's addresses leave within a second; add: back within a second.
    let deleted = wait_until(Duration::from_secs(1), "pod delete in the maps", {
        api.delete("v1", "Pod", Some(NS), "b");
        || !endpoint_ips(&env).contains(&b_ip)
    });
    assert!(excluded_ports(&env).is_empty(), "B's opt-outs left with it");
    let added = wait_until(Duration::from_secs(1), "pod add in the maps", {
        api.upsert(b_obj.clone());
        || endpoint_ips(&env) == want
    });
    eprintln!("map latency: update {updated:?}, delete {deleted:?}, add {added:?}");

    // At rest the daemon sends nothing: both watches stay open, the node
    // is not polled, an unchanged status is not rewritten.
    let before = api.request_counts();
    thread::sleep(Duration::from_secs(3));
    let rest = api.request_counts().since(&before);
    assert_eq!(rest.total(), 0, "requests at rest: {:?}", rest.by_path());

    // API server down: the datapath keeps its state and keeps working.
    let log_before = daemon.log().len();
    api.stop();
    thread::sleep(Duration::from_secs(3));
    assert_eq!(
        endpoint_ips(&env),
        want,
        "maps changed while the API was down"
    );
    let client = a.echo_client(b.addr_v4(ECHO_PORT), BYTES);
    assert!(client.report.equal, "{:?}", client.report);
    client.finish();
    assert_eq!(http_get(&daemon.metrics_addr, "/readyz").0, 200);
    let (_, body) = http_get(&daemon.metrics_addr, "/metrics");
    assert!(
        metric(&body, "sidecar_accel_watch_errors_total").unwrap_or(0.0) > 0.0,
        "watch errors not counted:\n{body}"
    );
    // B goes away while the API server is down and its history is
    // compacted: the daemon must re-list (410 Gone) and catch up.
    api.delete("v1", "Pod", Some(NS), "b");
    api.compact();
    api.restart().expect("restart the fake API server");
    let caught_up = wait_until(Duration::from_secs(60), "re-list after the outage", || {
        !endpoint_ips(&env).contains(&b_ip)
    });
    eprintln!("caught up {caught_up:?} after the API server came back");
    // The outage in the log: a warning per watch, no ERROR lines from kube.
    let outage = daemon.log()[log_before..].to_string();
    let at = |level: &str| outage.lines().filter(|l| l.contains(level)).count();
    eprintln!(
        "outage log: {} ERROR, {} WARN lines:\n{outage}",
        at(" ERROR "),
        at(" WARN ")
    );
    assert_eq!(at(" ERROR "), 0, "{outage}");
    assert!(at(" WARN ") <= 4, "{outage}");
    assert!(
        daemon.log().contains("pod watch failed"),
        "outage not logged:\n{}",
        daemon.log()
    );
}

#[test]
fn uninstall_request_drains_unloads_and_keeps_the_node_idle() {
    let env = TestEnv::new("k8s-unload");
    let node_name = format!("node-unload-{}", std::process::id());
    let (api, kubeconfig) = start_api(&env, &node_name, &running_kernel());
    let mut daemon = env.start_daemon(&k8s_args(&node_name, &kubeconfig));
    wait_until(Duration::from_secs(10), "accelerated label", || {
        node_label(&api, &node_name).as_deref() == Some("true")
    });
    assert_eq!(attachments(&env.cgroup).len(), 1);

    set_node_annotation(
        &api,
        &node_name,
        "sidecar-accel.io/unload-requested",
        Some("tok-1"),
    );
    // Followed by watch: well within the old 2 s poll plus the drain.
    let took = wait_until(Duration::from_secs(30), "unloaded status", || {
        node_status(&api, &node_name)
            .is_some_and(|s| s["state"] == "unloaded" && s["unloadToken"] == "tok-1")
    });
    eprintln!("unload handled in {took:?}");
    let polled = api
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path == format!("/api/v1/nodes/{node_name}"))
        .count();
    assert_eq!(polled, 0, "the node object was polled");
    assert!(!env.pin_dir.exists(), "pins left after unload");
    assert!(
        attachments(&env.cgroup).is_empty(),
        "sock_ops still attached"
    );
    assert_eq!(node_label(&api, &node_name).as_deref(), Some("false"));
    assert_eq!(http_get(&daemon.metrics_addr, "/readyz").0, 200);

    // A restart while the request stands loads nothing.
    daemon.terminate();
    let daemon = env.start_daemon(&k8s_args(&node_name, &kubeconfig));
    thread::sleep(Duration::from_secs(2));
    assert!(
        !env.pin_dir.exists(),
        "a restarted daemon loaded the datapath during uninstall"
    );
    assert!(attachments(&env.cgroup).is_empty());
    let st = node_status(&api, &node_name).expect("status");
    assert_eq!(st["state"], "unloaded", "{st}");

    // Withdrawn (install again): the daemon exits for a clean restart.
    let pid = env.status_json()["daemon"]["pid"].as_u64().expect("pid");
    set_node_annotation(&api, &node_name, "sidecar-accel.io/unload-requested", None);
    wait_until(
        Duration::from_secs(10),
        "daemon exit after withdrawal",
        || {
            !Path::new(&format!("/proc/{pid}")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .is_ok_and(|s| s.contains(") Z "))
        },
    );
    assert!(
        daemon.log().contains("restarting to load it again"),
        "{}",
        daemon.log()
    );
}

/// The whole add-on life cycle with the real daemon: install, traffic,
/// uninstall while a transfer runs through both sidecars. The uninstall
/// drains first, the transfer completes byte for byte, nothing is left.
#[test]
fn installer_uninstall_drains_the_real_daemon_under_traffic() {
    let env = TestEnv::new("k8s-life");
    let node = Node::new(&env, "kl");
    let a = node.meshed_pod("a", Mesh::default());
    let b = node.meshed_pod("b", Mesh::default());
    b.start_echo();
    let node_name = format!("node-life-{}", std::process::id());
    let (api, kubeconfig) = start_api(&env, &node_name, &running_kernel());
    let (a4, b4) = (a.ipv4.to_string(), b.ipv4.to_string());
    api.upsert(fixtures::istio_pod(NS, "a", &node_name, &[&a4]));
    api.upsert(fixtures::istio_pod(NS, "b", &node_name, &[&b4]));

    let (code, out) = run_installer(Path::new(&kubeconfig), &["install", "--timeout", "60s"]);
    assert_eq!(code, 0, "{out}");
    // The DaemonSet's pod on this node, played by the real daemon.
    let _daemon = env.start_daemon(&k8s_args(&node_name, &kubeconfig));
    wait_until(Duration::from_secs(10), "pods in the maps", || {
        endpoint_ips(&env).len() == 2
    });
    let (code, out) = run_installer(Path::new(&kubeconfig), &["status"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("accelerating"), "{out}");

    // nginx -> curl through both sidecars (event-driven, non-blocking
    // sockets, as sidecars and most servers are): a blocking reader with a
    // concurrent writer on the same socket can see the kernel's spurious
    // EAGAIN while its peer switches to TCP (docs/known-issues.md, I-5).
    let file: Vec<u8> = (0..64 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    b.start_nginx(&file);
    let url = format!("http://{}{}", b.ipv4, accel_topology::HTTP_FILE);
    let before = counter_of(&env.status_json(), "redirect_bytes");
    let t0 = Instant::now();
    let body = a.curl(&url);
    eprintln!("accelerated download of 64 MiB: {:?}", t0.elapsed());
    assert_eq!(sha256_hex(&body), sha256_hex(&file));
    assert!(
        // Not all of it: flow control may move a writer that outruns its
        // reader to TCP (docs/known-issues.md, "Performance limits").
        counter_of(&env.status_json(), "redirect_bytes") > before + (1 << 20),
        "the download was not accelerated"
    );
    let t0 = Instant::now();
    let body = thread::scope(|s| {
        // A reader at 16 MiB/s: the download spans the whole drain.
        let t = s.spawn(|| {
            let out = a
                .command("curl")
                .args(["-sS", "-g", "--fail", "--max-time", "60"])
                .args(["--limit-rate", "16M", "-o", "-", &url])
                .stdin(std::process::Stdio::null())
                .output()
                .expect("curl");
            eprintln!("download during uninstall done at {:?}", t0.elapsed());
            assert!(
                out.status.success(),
                "download broke during uninstall: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            out.stdout
        });
        thread::sleep(Duration::from_millis(200));
        let (code, out) =
            run_installer(Path::new(&kubeconfig), &["uninstall", "--timeout", "120s"]);
        eprintln!("uninstall done at {:?}", t0.elapsed());
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("uninstalled"), "{out}");
        t.join().expect("download thread")
    });
    assert_eq!(
        sha256_hex(&body),
        sha256_hex(&file),
        "download during uninstall"
    );
    assert!(!env.pin_dir.exists(), "pins left after uninstall");
    assert!(
        attachments(&env.cgroup).is_empty(),
        "sock_ops left attached"
    );
    assert!(
        api.get(
            "apps/v1",
            "DaemonSet",
            Some("sidecar-accel-system"),
            "accel-daemon"
        )
        .is_none()
    );
    let node_obj = node_object(&api, &node_name);
    assert!(
        node_obj["metadata"]["labels"]["sidecar-accel.io/accelerated"].is_null(),
        "{node_obj}"
    );
    // Twice is safe.
    let (code, out) = run_installer(Path::new(&kubeconfig), &["uninstall"]);
    assert_eq!(code, 0, "{out}");
}
