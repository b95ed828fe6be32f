//! The Kubernetes endpoint source and the node: a failed gate labels the
//! node and raises an event, held-back sockets raise events on their pods,
//! bad Kubernetes flags, a forbidden pod list, a node without the host's
//! bpffs. The real daemon against a loopback API server.

use std::{net::IpAddr, path::Path, process::Command, thread, time::Duration};

use accel_fake_apiserver::fixtures;
use accel_test_harness::{TestEnv, attachments, http_get, running_kernel, wait_until};
use accel_topology::{ECHO_PORT, Mesh, Node};
use serde_json::Value;

#[path = "common/kubernetes.rs"]
mod kubernetes_support;

use kubernetes_support::*;

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
    // The guard holds application sockets back only where `auto` records
    // them: on every kernel with this flag (I-4, transparency.rs).
    args.push("--allow-auto-fionread-gap");
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
