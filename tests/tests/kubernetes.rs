//! The Kubernetes endpoint source end to end: the real daemon watching a
//! loopback API server (list/watch, 410, outages), the pod topology carrying
//! real traffic, the BPF maps read with bpftool, the node status and the
//! uninstall handshake.

mod common;

use std::{
    collections::BTreeSet,
    net::IpAddr,
    path::Path,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use accel_fake_apiserver::{FakeApiServer, fixtures};
use accel_test_harness::{
    TestEnv, attachments, counter_of, http_get, pattern, running_kernel, sha256_hex, wait_until,
};
use accel_topology::{ECHO_PORT, Mesh, Node};
use common::run_installer;
use serde_json::{Value, json};

const NS: &str = "shop";

fn bpftool_dump(pin: &Path) -> Vec<Value> {
    let out = Command::new("bpftool")
        .args(["-j", "map", "dump", "pinned"])
        .arg(pin)
        .output()
        .expect("run bpftool");
    assert!(
        out.status.success(),
        "bpftool map dump {}: {}",
        pin.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Vec<Value>>(&out.stdout).unwrap_or_default()
}

/// The 16 address bytes of a key, whether bpftool printed it with BTF
/// (`{"addr": [..]}`) or raw (`["0x0a", ..]`).
fn key_bytes(entry: &Value, field: &str) -> Vec<u8> {
    let formatted = entry.get("formatted").unwrap_or(entry);
    let key = &formatted["key"];
    let arr = key.get(field).unwrap_or(key);
    arr.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| {
                    v.as_u64().map(|n| n as u8).or_else(|| {
                        v.as_str()
                            .and_then(|s| u8::from_str_radix(s.trim_start_matches("0x"), 16).ok())
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

fn ip_of(bytes: &[u8]) -> Option<IpAddr> {
    let b: [u8; 16] = bytes.get(..16)?.try_into().ok()?;
    let v6 = std::net::Ipv6Addr::from(b);
    Some(match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    })
}

fn endpoint_ips(env: &TestEnv) -> BTreeSet<IpAddr> {
    bpftool_dump(&env.pin_dir.join("accel_endpoints"))
        .iter()
        .filter_map(|e| ip_of(&key_bytes(e, "addr")))
        .collect()
}

/// (address, port) of every excluded-port entry.
fn excluded_ports(env: &TestEnv) -> BTreeSet<(IpAddr, u16)> {
    bpftool_dump(&env.pin_dir.join("accel_excluded_ports"))
        .iter()
        .filter_map(|e| {
            let bytes = key_bytes(e, "addr");
            let formatted = e.get("formatted").unwrap_or(e);
            let port = match formatted["key"].get("port") {
                Some(p) => p.as_u64()? as u16,
                // Raw key: addr[16], port (host order, little endian here).
                None => u16::from_le_bytes([*bytes.get(16)?, *bytes.get(17)?]),
            };
            Some((ip_of(&bytes)?, port))
        })
        .collect()
}

fn map_entries(env: &TestEnv, map: &str) -> u64 {
    let status = env.status_json();
    status["datapath"]["maps"]
        .as_array()
        .and_then(|maps| maps.iter().find(|m| m["name"] == map))
        .and_then(|m| m["entries"].as_u64())
        .unwrap_or(u64::MAX)
}

fn node_object(api: &FakeApiServer, name: &str) -> Value {
    api.get("v1", "Node", None, name).expect("node exists")
}

fn node_status(api: &FakeApiServer, name: &str) -> Option<Value> {
    let node = node_object(api, name);
    let text = node["metadata"]["annotations"]["sidecar-accel.io/status"].as_str()?;
    serde_json::from_str(text).ok()
}

fn node_label(api: &FakeApiServer, name: &str) -> Option<String> {
    node_object(api, name)["metadata"]["labels"]["sidecar-accel.io/accelerated"]
        .as_str()
        .map(str::to_string)
}

fn set_node_annotation(api: &FakeApiServer, name: &str, key: &str, value: Option<&str>) {
    let mut node = node_object(api, name);
    let ann = &mut node["metadata"]["annotations"];
    if !ann.is_object() {
        *ann = json!({});
    }
    match value {
        Some(v) => ann[key] = json!(v),
        None => {
            if let Some(m) = ann.as_object_mut() {
                m.remove(key);
            }
        }
    }
    api.upsert(node);
}

fn start_api(env: &TestEnv, node_name: &str, kernel: &str) -> (FakeApiServer, String) {
    let api = FakeApiServer::start().expect("start the fake API server");
    api.upsert(fixtures::node(
        node_name,
        kernel,
        "Debian GNU/Linux 12 (bookworm)",
    ));
    let kubeconfig = env.state_dir.with_extension("kubeconfig");
    api.write_kubeconfig(&kubeconfig, "fake")
        .expect("kubeconfig");
    (api, kubeconfig.display().to_string())
}

fn k8s_args<'a>(node_name: &'a str, kubeconfig: &'a str) -> Vec<&'a str> {
    vec![
        "--endpoint-source",
        "kubernetes",
        "--node-name",
        node_name,
        "--kubeconfig",
        kubeconfig,
        "--endpoint-sync-secs",
        "30", // changes must arrive by the watch, not by the periodic sync
    ]
}

fn metric(body: &str, prefix: &str) -> Option<f64> {
    body.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

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

    // Node status for users and the installer.
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

#[test]
fn failed_gate_labels_the_node_and_raises_an_event() {
    let env = TestEnv::new("k8s-gate");
    let node_name = format!("node-gate-{}", std::process::id());
    let (api, kubeconfig) = start_api(&env, &node_name, "5.4.0-150-generic");
    let mut args = k8s_args(&node_name, &kubeconfig);
    // The deprecated flag still starts the daemon, with a warning.
    args.extend([
        "--kernel-release",
        "5.4.0-150-generic",
        "--node-poll-secs",
        "1",
    ]);
    let daemon = env.start_daemon(&args);
    wait_until(Duration::from_secs(10), "unaccelerated status", || {
        node_status(&api, &node_name).is_some_and(|s| s["state"] == "unaccelerated")
    });
    let st = node_status(&api, &node_name).expect("status");
    assert!(
        st["reason"]
            .as_str()
            .unwrap_or("")
            .contains("older than 5.10"),
        "{st}"
    );
    assert_eq!(node_label(&api, &node_name).as_deref(), Some("false"));
    assert!(attachments(&env.cgroup).is_empty());
    wait_until(Duration::from_secs(10), "gate event", || {
        api.list("events.k8s.io/v1", "Event").iter().any(|e| {
            e["reason"] == "AccelerationUnavailable"
                && e["regarding"]["name"] == node_name.as_str()
                && e["type"] == "Warning"
                && e["reportingInstance"] == format!("accel-daemon-{node_name}").as_str()
        })
    });
    // Not accelerated: no pod counts as accelerated.
    assert_eq!(st["meshedPods"], 0, "{st}");
    assert!(
        daemon.log().contains("--node-poll-secs is deprecated"),
        "{}",
        daemon.log()
    );
    let patch = api
        .requests()
        .into_iter()
        .find(|r| r.method == "PATCH" && r.path == format!("/api/v1/nodes/{node_name}"))
        .expect("status patch");
    assert_eq!(patch.field_manager.as_deref(), Some("sidecar-accel"));
}

/// The default mode on a node: blocking applications (the topology's echo
/// client and server) are kept on TCP, the sidecar hop is still redirected,
/// and each pod whose sockets were held back gets an Event naming it, with
/// the reason and what to change; the metric names the pod too.
#[test]
fn held_back_application_sockets_raise_an_event_on_their_pod() {
    let env = TestEnv::new("k8s-held");
    let node = Node::new(&env, "kh");
    let a = node.meshed_pod("a", Mesh::default());
    let b = node.meshed_pod("b", Mesh::default());
    b.start_echo();
    let node_name = format!("node-held-{}", std::process::id());
    let (api, kubeconfig) = start_api(&env, &node_name, &running_kernel());
    let ip = |p: &accel_topology::Pod| IpAddr::from(p.ipv4).to_string();
    // Events live in the pods' namespace, which must exist (as in a cluster).
    api.upsert(fixtures::namespace(NS));
    api.upsert(fixtures::istio_pod(NS, "a", &node_name, &[&ip(&a)]));
    api.upsert(fixtures::istio_pod(NS, "b", &node_name, &[&ip(&b)]));
    // Held-back counts are read at each sync: every second here.
    let mut args = k8s_args(&node_name, &kubeconfig);
    if let Some(i) = args.iter().position(|a| *a == "--endpoint-sync-secs") {
        args[i + 1] = "1";
    }
    let daemon = env.start_daemon_default_mode(&args);
    wait_until(Duration::from_secs(10), "pod namespaces resolved", || {
        map_entries(&env, "accel_meshed_netns") == 2
    });
    let cap = node.capture(&a.host_veth, &format!("tcp port {ECHO_PORT}"));
    let client = a.echo_client(b.addr_v4(ECHO_PORT), 64 * 1024);
    assert!(client.report.equal, "{:?}", client.report);
    client.finish();
    assert_eq!(cap.stop().psh_data, 0, "sidecar -> sidecar crossed TCP");
    for pod in ["a", "b"] {
        wait_until(
            Duration::from_secs(15),
            &format!("held-back Event on pod {pod}"),
            || {
                api.list("events.k8s.io/v1", "Event").iter().any(|e| {
                    e["reason"] == "ApplicationSocketsOnTcp"
                        && e["regarding"]["kind"] == "Pod"
                        && e["regarding"]["name"] == pod
                        && e["regarding"]["namespace"] == NS
                        && e["note"].as_str().unwrap_or("").contains("blocking")
                })
            },
        );
    }
    let (_, body) = http_get(&daemon.metrics_addr, "/metrics");
    assert!(
        body.lines()
            .any(|l| l.starts_with("sidecar_accel_pod_sockets_held_total")
                && l.contains(&format!("namespace=\"{NS}\",pod=\"a\",reason=\"blocking\""))),
        "{body}"
    );
}

#[test]
fn bad_kubernetes_flags_fail_with_one_clear_line() {
    let env = TestEnv::new("k8s-flags");
    let cg = env.cgroup.display().to_string();
    let pin = env.pin_dir.display().to_string();
    let run = |extra: &[&str]| {
        let mut args = vec![
            "run",
            "--cgroup",
            &cg,
            "--pin-dir",
            &pin,
            "--metrics-addr",
            "127.0.0.1:0",
        ];
        args.extend_from_slice(extra);
        let out = Command::new(accel_test_harness::daemon_bin())
            .args(&args)
            .env_remove("NODE_NAME")
            .env_remove("KUBECONFIG")
            .output()
            .expect("run daemon");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(&["--endpoint-source", "kubernetes"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("--node-name"), "{err}");
    let (code, err) = run(&[
        "--endpoint-source",
        "kubernetes",
        "--node-name",
        "n1",
        "--kubeconfig",
        "/nonexistent/kubeconfig",
    ]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("/nonexistent/kubeconfig"), "{err}");
    let (code, err) = run(&[
        "--endpoint-source",
        "kubernetes",
        "--node-name",
        "n1",
        "--local-endpoint",
        "10.0.0.1",
    ]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("drop --local-endpoint"), "{err}");
    for (code, err) in [
        run(&["--endpoint-source", "kubernetes"]),
        run(&["--endpoint-source", "k8s"]),
    ] {
        assert!(code.is_some_and(|c| c != 0), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    assert!(attachments(&env.cgroup).is_empty());
    assert!(!env.pin_dir.exists());
}

#[test]
fn forbidden_pod_list_says_which_permission_and_keeps_the_datapath() {
    let env = TestEnv::new("k8s-rbac");
    let node_name = format!("node-rbac-{}", std::process::id());
    let (api, kubeconfig) = start_api(&env, &node_name, &running_kernel());
    api.upsert(fixtures::istio_pod(NS, "p", &node_name, &["10.250.2.2"]));
    api.forbid("list", "pods");
    let daemon = env.start_daemon(&k8s_args(&node_name, &kubeconfig));
    wait_until(Duration::from_secs(10), "RBAC hint in the log", || {
        daemon.log().contains("ClusterRole sidecar-accel-daemon")
    });
    // Accelerating (loopback and whatever the maps held), ready, no pods yet.
    assert_eq!(http_get(&daemon.metrics_addr, "/readyz").0, 200);
    assert_eq!(attachments(&env.cgroup).len(), 1);
    assert!(endpoint_ips(&env).is_empty());
    // Permission granted: the pods arrive without a restart.
    api.allow("list", "pods");
    wait_until(Duration::from_secs(60), "pods after the grant", || {
        endpoint_ips(&env).contains(&"10.250.2.2".parse::<IpAddr>().expect("ip"))
    });
    assert!(!daemon.log().contains("panicked"));
}

/// In a pod, a bpffs the daemon mounts itself would vanish with the
/// container, pins and all: with --no-mount-bpffs and no host bpffs the
/// node runs unaccelerated and says why. A private mount namespace stands
/// in for the pod (the host's bpffs is not touched).
#[test]
fn without_the_hosts_bpffs_the_node_stays_unaccelerated_and_says_why() {
    let env = TestEnv::new("k8s-nobpffs");
    let state = env.state_dir.display().to_string();
    let script = format!(
        "while grep -q ' /sys/fs/bpf bpf ' /proc/self/mounts; do umount -l /sys/fs/bpf || exit 1; done; exec {} run --cgroup {} --pin-dir /sys/fs/bpf/sidecar-accel-test/v{} \
         --state-dir {state} --metrics-addr 127.0.0.1:0 --no-mount-bpffs",
        accel_test_harness::daemon_bin().display(),
        env.cgroup.display(),
        accel_bpf::abi::ABI_VERSION,
    );
    let mut child = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("unshare");
    let status_file = env.state_dir.join("status.json");
    let ok = (0..200).any(|_| {
        thread::sleep(Duration::from_millis(50));
        std::fs::read_to_string(&status_file)
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .is_some_and(|s| s["reason"].as_str().unwrap_or("").contains("no bpffs"))
    });
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        ok,
        "no 'no bpffs' reason in {}",
        std::fs::read_to_string(&status_file).unwrap_or_default()
    );
    assert!(attachments(&env.cgroup).is_empty(), "attached without pins");
    assert!(!Path::new("/sys/fs/bpf/sidecar-accel-test").exists());
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
