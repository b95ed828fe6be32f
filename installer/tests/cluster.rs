//! The installer against the fake API server: preflight, install (server-side
//! apply, rollout wait), status, uninstall (with a thread playing the node
//! daemons' side of the unload handshake), running twice, and the failure
//! messages an operator gets.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use accel_fake_apiserver::{FakeApiServer, RolloutMode, fixtures};
use accel_k8s::keys;
use accel_k8s::node::{NodeState, NodeStatus};
use serde_json::json;

use common::{Env, NS, row, run_with};

fn status(state: NodeState, reason: &str, kernel: &str) -> NodeStatus {
    NodeStatus {
        state,
        reason: reason.into(),
        daemon_version: "0.1.0".into(),
        kernel: kernel.into(),
        meshed_pods: 3,
        failed_checks: Vec::new(),
        unload_token: None,
        updated: "2026-11-23T16:00:00Z".into(),
        heartbeat_seconds: 0,
    }
}

#[test]
fn preflight_judges_every_node_and_finds_the_mesh() {
    let env = Env::new();
    let s = &env.server;
    s.upsert(fixtures::node(
        "old",
        "4.19.91-26.al7.x86_64",
        "Alibaba Cloud Linux (Aliyun Linux) 2.1903 LTS",
    ));
    s.upsert(fixtures::node(
        "lts",
        "5.10.134-16.al8.x86_64",
        "Alibaba Cloud Linux 3.2104 U10",
    ));
    s.upsert(fixtures::node(
        "new",
        "6.1.0-18-cloud-amd64",
        "Debian GNU/Linux 12 (bookworm)",
    ));
    s.upsert(fixtures::node("odd", "custom-kernel", "Unknown OS"));
    s.upsert(fixtures::virtual_node("virtual-kubelet-cn-hangzhou-k"));

    let r = env.run(&["preflight"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.out.contains("=== context a (http://127.0.0.1:"), "{r:?}");
    let old = row(&r.out, "old");
    assert!(
        old.contains("4.19.91-26.al7.x86_64") && old.contains("Alibaba Cloud Linux (Aliyun Linux)"),
        "{old}"
    );
    assert!(
        old.contains("not eligible") && old.contains("older than 5.10"),
        "{old}"
    );
    assert!(
        row(&r.out, "lts").ends_with("eligible") && !row(&r.out, "lts").contains("not eligible")
    );
    assert!(
        row(&r.out, "new").contains("Debian GNU/Linux 12")
            && row(&r.out, "new").ends_with("eligible")
    );
    let odd = row(&r.out, "odd");
    assert!(
        odd.contains("not eligible") && odd.contains("cannot parse kernel release"),
        "{odd}"
    );
    let vk = row(&r.out, "virtual-kubelet-cn-hangzhou-k");
    assert!(vk.contains("not eligible: virtual node"), "{vk}");
    assert!(r.out.contains("2 of 5 node(s) eligible"), "{r:?}");
    assert!(
        r.out.contains("warning: no mesh control plane found"),
        "{r:?}"
    );

    s.upsert(fixtures::namespace("istio-system"));
    s.upsert(fixtures::istiod_deployment("istio-system", "default"));
    s.upsert(fixtures::istiod_deployment("istio-system", "canary"));
    s.upsert(fixtures::asm_istiod_deployment("istio-system", "1-22-6"));
    let r = env.run(&["preflight"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(!r.out.contains("no mesh control plane"), "{r:?}");
    let istio = row(&r.out, "Istio");
    assert!(
        istio.contains("istio-system")
            && istio.contains("istiod ")
            && istio.contains("default")
            && istio.contains("1.24.2"),
        "{istio}"
    );
    assert!(
        r.out
            .lines()
            .any(|l| l.starts_with("Istio") && l.contains("istiod-canary") && l.contains("canary")),
        "{r:?}"
    );
    let asm = row(&r.out, "ASM");
    assert!(
        asm.contains("istiod-1-22-6")
            && asm.contains("1-22-6")
            && asm.contains("1.22.6.43-g4d1a7b5c-aliyun"),
        "{asm}"
    );
}

#[test]
fn preflight_fails_only_when_no_node_is_eligible() {
    let env = Env::new();
    env.server.upsert(fixtures::node(
        "old",
        "4.19.91-26.al7.x86_64",
        "Alibaba Cloud Linux 2",
    ));
    env.server.upsert(fixtures::virtual_node("vk"));
    let r = env.run(&["preflight"]);
    assert_eq!(r.code, 3, "{r:?}");
    assert!(
        r.out.contains("0 of 2 node(s) eligible") && r.out.contains("no node is eligible"),
        "{r:?}"
    );
}

fn applied(env: &Env) -> Vec<(String, String)> {
    env.server
        .requests()
        .into_iter()
        .filter(|r| {
            r.method == "PATCH" && r.content_type.as_deref() == Some("application/apply-patch+yaml")
        })
        .map(|r| {
            assert_eq!(r.field_manager.as_deref(), Some("sidecar-accel"), "{r:?}");
            assert_eq!(r.param("force"), Some("true"), "{r:?}");
            (
                r.path.clone(),
                r.param("fieldManager").unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[test]
fn install_applies_server_side_waits_for_the_rollout_and_is_idempotent() {
    let env = Env::new().with_workers();
    env.server.upsert(fixtures::virtual_node("vk"));
    // Left behind by an aborted uninstall: install must lift it so n2's daemon resumes.
    let n2 = fixtures::with_annotation(env.node("n2"), keys::UNLOAD_REQUEST_ANNOTATION, "stale");
    env.server.upsert(n2);
    env.server.set_rollout(RolloutMode::Gradual {
        per_step: Duration::from_millis(400),
    });

    let r = env.run(&["install", "--image", "example.com/accel-daemon:0.1.0"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.out
            .contains("removed the unload request of an earlier uninstall from n2"),
        "{r:?}"
    );
    assert!(
        env.node("n2")["metadata"]["annotations"]
            .get(keys::UNLOAD_REQUEST_ANNOTATION)
            .is_none()
    );
    // Without the Prometheus Operator the monitor is skipped, and says so.
    assert!(
        r.out.contains("monitoring: skipped the ServiceMonitor"),
        "{r:?}"
    );

    // Every object went through server-side apply, dependencies first.
    let paths: Vec<String> = applied(&env).into_iter().map(|(p, _)| p).collect();
    assert_eq!(
        paths,
        [
            format!("/api/v1/namespaces/{NS}"),
            format!("/api/v1/namespaces/{NS}/serviceaccounts/accel-daemon"),
            "/apis/rbac.authorization.k8s.io/v1/clusterroles/sidecar-accel-daemon".to_string(),
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/sidecar-accel-daemon"
                .to_string(),
            format!("/api/v1/namespaces/{NS}/services/accel-daemon-metrics"),
            format!("/apis/apps/v1/namespaces/{NS}/daemonsets/accel-daemon"),
        ]
    );
    let ds = env
        .server
        .get("apps/v1", "DaemonSet", Some(NS), "accel-daemon")
        .unwrap();
    assert_eq!(
        ds["spec"]["template"]["spec"]["containers"][0]["image"],
        "example.com/accel-daemon:0.1.0"
    );

    // The progress climbed node by node (plain lines: not a terminal).
    let progress: Vec<&str> = r
        .out
        .lines()
        .filter(|l| l.starts_with("rollout: "))
        .collect();
    assert!(progress.len() >= 3, "{r:?}");
    assert!(
        progress
            .iter()
            .any(|l| l.starts_with("rollout: 0/3 updated")),
        "{r:?}"
    );
    assert!(
        progress
            .iter()
            .any(|l| l.starts_with("rollout: 3/3 updated, 3/3 ready, 3/3 available")),
        "{r:?}"
    );
    assert!(r.out.contains("rollout complete on 3 node(s)"), "{r:?}");
    // Node table: no daemon has reported yet; the virtual node is not targeted.
    assert!(
        row(&r.out, "n1").contains("its daemon has not reported yet"),
        "{r:?}"
    );
    assert!(
        row(&r.out, "vk").contains("the DaemonSet does not run here: virtual node"),
        "{r:?}"
    );
    // The two facts.
    assert!(
        r.out
            .contains("Connections established before the install are not accelerated"),
        "{r:?}"
    );
    assert!(
        r.out.contains("PSH-flagged segments") && r.out.contains("tcpdump -i lo"),
        "{r:?}"
    );
    assert!(r.out.contains("accel-daemon verify"), "{r:?}");

    // Twice: same objects, nothing changes, success.
    let generation = ds["metadata"]["generation"].clone();
    env.server.clear_requests();
    let again = env.run(&["install", "--image", "example.com/accel-daemon:0.1.0"]);
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(applied(&env).len(), 6);
    let ds = env
        .server
        .get("apps/v1", "DaemonSet", Some(NS), "accel-daemon")
        .unwrap();
    assert_eq!(
        ds["metadata"]["generation"], generation,
        "a second install changed the DaemonSet"
    );
    assert!(
        again.out.contains("rollout complete on 3 node(s)"),
        "{again:?}"
    );
    assert!(
        !again.out.contains("removed the unload request"),
        "{again:?}"
    );
}

#[test]
fn install_applies_the_monitor_when_the_operator_is_there() {
    let env = Env::new().with_workers();
    env.server.set_prometheus_operator(true);
    let r = env.run(&["install"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.out.contains("applied ServiceMonitor/accel-daemon"),
        "{r:?}"
    );
    let sm = env.server.get(
        "monitoring.coreos.com/v1",
        "ServiceMonitor",
        Some(NS),
        "accel-daemon",
    );
    assert!(sm.is_some());
    // Default image: the kustomization's placeholder.
    let ds = env
        .server
        .get("apps/v1", "DaemonSet", Some(NS), "accel-daemon")
        .unwrap();
    assert_eq!(
        ds["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.example.invalid/sidecar-accel/accel-daemon:0.1.0"
    );
}

#[test]
fn status_shows_what_each_daemon_reported() {
    let env = Env::new().with_workers();
    env.server.upsert(fixtures::virtual_node("vk"));
    let r = env.run(&["install"]);
    assert_eq!(r.code, 0, "{r:?}");
    env.report(
        "n1",
        &status(
            NodeState::Accelerating,
            "accelerating: kernel 5.10.134, all probes passed",
            "5.10.134-16.al8.x86_64",
        ),
    );
    let mut refused = status(
        NodeState::Unaccelerated,
        "probe failed: sk_msg redirect",
        "6.1.0-18-cloud-amd64",
    );
    refused.failed_checks = vec!["sk_msg redirect: EINVAL".into()];
    env.report("n2", &refused);

    let r = env.run(&["status"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.out.contains(&format!(
            "installer: accel-installer {}",
            env!("CARGO_PKG_VERSION")
        )),
        "{r:?}"
    );
    assert!(r.out.contains("daemonset: sidecar-accel-system/accel-daemon image registry.example.invalid/sidecar-accel/accel-daemon:0.1.0"), "{r:?}");
    assert!(r.out.contains("rollout: complete: 3/3 updated"), "{r:?}");
    let n1 = row(&r.out, "n1");
    assert!(
        n1.contains("yes")
            && n1.contains("accelerating")
            && n1.contains("0.1.0")
            && n1.contains("all probes passed"),
        "{n1}"
    );
    let n2 = row(&r.out, "n2");
    assert!(
        n2.contains(" no ")
            && n2.contains("unaccelerated")
            && n2.contains("sk_msg redirect: EINVAL"),
        "{n2}"
    );
    assert!(row(&r.out, "n3").contains("not reported"), "{r:?}");
    assert!(row(&r.out, "vk").contains("virtual node"), "{r:?}");
    assert!(r.out.contains("1 of 4 node(s) accelerated"), "{r:?}");

    // A malformed report is shown as such, not a crash.
    let bad = fixtures::with_annotation(env.node("n3"), keys::NODE_STATUS_ANNOTATION, "{not json");
    env.server.upsert(bad);
    let r = env.run(&["status"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        row(&r.out, "n3").contains("unreadable sidecar-accel.io/status annotation"),
        "{r:?}"
    );
}

/// Plays the node daemons: answers each new unload request on `nodes` as the
/// daemon would (`refuse` names the nodes that refuse).
struct Daemons {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Daemons {
    fn start(server: Arc<FakeApiServer>, nodes: &[&str], refuse: &[&str]) -> Daemons {
        let stop = Arc::new(AtomicBool::new(false));
        let nodes: Vec<String> = nodes.iter().map(|s| s.to_string()).collect();
        let refuse: Vec<String> = refuse.iter().map(|s| s.to_string()).collect();
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::SeqCst) {
                for name in &nodes {
                    let Some(node) = server.get("v1", "Node", None, name) else {
                        continue;
                    };
                    let Some(token) =
                        node["metadata"]["annotations"][keys::UNLOAD_REQUEST_ANNOTATION].as_str()
                    else {
                        continue;
                    };
                    let current: Option<NodeStatus> = node["metadata"]["annotations"]
                        [keys::NODE_STATUS_ANNOTATION]
                        .as_str()
                        .and_then(|s| serde_json::from_str(s).ok());
                    if current.as_ref().and_then(|s| s.unload_token.as_deref()) == Some(token) {
                        continue;
                    }
                    let mut st = current.unwrap_or_else(|| status(NodeState::Accelerating, "", ""));
                    st.unload_token = Some(token.to_string());
                    if refuse.contains(name) {
                        st.state = NodeState::UnloadRefused;
                        st.reason =
                            "4096 bytes still queued in 2 accelerated sockets after the 30 s drain"
                                .into();
                    } else {
                        st.state = NodeState::Unloaded;
                        st.reason = "datapath removed on the installer's request".into();
                    }
                    let obj = fixtures::with_annotation(
                        node,
                        keys::NODE_STATUS_ANNOTATION,
                        &serde_json::to_string(&st).unwrap(),
                    );
                    server.upsert(fixtures::with_label(
                        obj,
                        keys::ACCELERATED_LABEL,
                        st.label_value(),
                    ));
                }
                std::thread::sleep(Duration::from_millis(30));
            }
        });
        Daemons {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Daemons {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn installed_objects(env: &Env) -> Vec<&'static str> {
    let s = &env.server;
    let mut v = Vec::new();
    if s.get("v1", "Namespace", None, NS).is_some() {
        v.push("Namespace");
    }
    if s.get("v1", "ServiceAccount", Some(NS), "accel-daemon")
        .is_some()
    {
        v.push("ServiceAccount");
    }
    if s.get(
        "rbac.authorization.k8s.io/v1",
        "ClusterRole",
        None,
        "sidecar-accel-daemon",
    )
    .is_some()
    {
        v.push("ClusterRole");
    }
    if s.get(
        "rbac.authorization.k8s.io/v1",
        "ClusterRoleBinding",
        None,
        "sidecar-accel-daemon",
    )
    .is_some()
    {
        v.push("ClusterRoleBinding");
    }
    if s.get("v1", "Service", Some(NS), "accel-daemon-metrics")
        .is_some()
    {
        v.push("Service");
    }
    if s.get("apps/v1", "DaemonSet", Some(NS), "accel-daemon")
        .is_some()
    {
        v.push("DaemonSet");
    }
    v
}

const ALL_OBJECTS: [&str; 6] = [
    "Namespace",
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "Service",
    "DaemonSet",
];

fn marks(env: &Env, node: &str) -> Vec<String> {
    let n = env.node(node);
    let mut v = Vec::new();
    for (field, key) in [
        ("labels", keys::ACCELERATED_LABEL),
        ("annotations", keys::NODE_STATUS_ANNOTATION),
        ("annotations", keys::UNLOAD_REQUEST_ANNOTATION),
    ] {
        if n["metadata"][field].get(key).is_some() {
            v.push(key.to_string());
        }
    }
    v
}

#[test]
fn uninstall_drains_every_node_then_deletes_and_is_safe_twice() {
    let env = Env::new().with_workers();
    env.server.set_prometheus_operator(true);
    assert_eq!(env.run(&["install"]).code, 0);
    env.report(
        "n1",
        &status(
            NodeState::Accelerating,
            "accelerating",
            "5.10.134-16.al8.x86_64",
        ),
    );
    env.report(
        "n2",
        &status(
            NodeState::Unaccelerated,
            "probe failed",
            "6.1.0-18-cloud-amd64",
        ),
    );
    // n3 runs a daemon pod that never reported.
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "accel-daemon-x7k2p", "namespace": NS, "labels": {
            "app.kubernetes.io/name": "sidecar-accel", "app.kubernetes.io/component": "node-daemon"}},
        "spec": {"nodeName": "n3", "containers": [{"name": "accel-daemon", "image": "x"}]},
    });
    env.server.upsert(pod);
    let daemons = Daemons::start(env.server.clone(), &["n1", "n2"], &[]);

    let r = env.run(&["uninstall", "--timeout", "20s"]);
    drop(daemons);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.out
            .contains("asked 3 node(s) to drain and unload the datapath"),
        "{r:?}"
    );
    assert!(r.out.contains("unloading: 2/2 node(s) unloaded"), "{r:?}");
    assert!(r.out.contains("every node unloaded its datapath"), "{r:?}");
    assert!(
        r.out
            .contains("warning: the daemon on node n3 never reported"),
        "{r:?}"
    );
    assert!(r.out.contains("accel-daemon unload"), "{r:?}");
    assert!(r.out.contains("uninstalled"), "{r:?}");
    assert_eq!(installed_objects(&env), Vec::<&str>::new(), "{r:?}");
    assert!(
        env.server
            .get(
                "monitoring.coreos.com/v1",
                "ServiceMonitor",
                Some(NS),
                "accel-daemon"
            )
            .is_none()
    );
    for n in ["n1", "n2", "n3"] {
        assert_eq!(
            marks(&env, n),
            Vec::<String>::new(),
            "node {n} keeps marks: {r:?}"
        );
    }
    // The request reached every node before anything was deleted.
    let reqs = env.server.requests();
    let first_delete = reqs
        .iter()
        .position(|q| q.method == "DELETE")
        .expect("deletes");
    let requested: Vec<&str> = reqs[..first_delete]
        .iter()
        .filter(|q| q.method == "PATCH" && q.path.starts_with("/api/v1/nodes/"))
        .filter(|q| {
            q.body.as_ref().is_some_and(|b| {
                b["metadata"]["annotations"][keys::UNLOAD_REQUEST_ANNOTATION].is_string()
            })
        })
        .map(|q| q.path.as_str())
        .collect();
    assert_eq!(
        requested,
        ["/api/v1/nodes/n1", "/api/v1/nodes/n2", "/api/v1/nodes/n3"]
    );

    let again = env.run(&["uninstall"]);
    assert_eq!(again.code, 0, "{again:?}");
    assert!(again.out.contains("nothing to uninstall"), "{again:?}");

    // Leftover node marks (a daemon wrote after the cleanup) are cleaned by a rerun.
    env.report(
        "n1",
        &status(NodeState::Unloaded, "unloaded", "5.10.134-16.al8.x86_64"),
    );
    let third = env.run(&["uninstall"]);
    assert_eq!(third.code, 0, "{third:?}");
    assert!(
        third.out.contains(
            "nothing to uninstall; removed leftover sidecar-accel label/annotations from n1"
        ),
        "{third:?}"
    );
    assert_eq!(marks(&env, "n1"), Vec::<String>::new());
}

#[test]
fn a_refusing_node_stops_uninstall_before_anything_is_deleted() {
    let env = Env::new().with_workers();
    assert_eq!(env.run(&["install"]).code, 0);
    for n in ["n1", "n2", "n3"] {
        env.report(
            n,
            &status(NodeState::Accelerating, "accelerating", "5.10.134"),
        );
    }
    let daemons = Daemons::start(env.server.clone(), &["n1", "n2"], &["n2"]);
    let r = env.run(&["uninstall", "--timeout", "2s"]);
    assert_eq!(r.code, 3, "{r:?}");
    assert!(
        r.out
            .contains("node n2 refused to unload: 4096 bytes still queued"),
        "{r:?}"
    );
    assert!(
        r.out
            .contains("node n3 did not answer within 2s (its state: accelerating)"),
        "{r:?}"
    );
    assert!(
        r.out.contains("uninstall stopped before deleting anything"),
        "{r:?}"
    );
    assert!(r.out.contains("--force"), "{r:?}");
    assert!(
        !env.server.requests().iter().any(|q| q.method == "DELETE"),
        "{r:?}"
    );
    assert_eq!(installed_objects(&env), ALL_OBJECTS.to_vec());
    // The request stays: n1 (unloaded) stays idle until a retry or an install.
    assert!(marks(&env, "n1").contains(&keys::UNLOAD_REQUEST_ANNOTATION.to_string()));

    // --force deletes anyway and says what stays behind.
    let forced = env.run(&["uninstall", "--timeout", "1s", "--force"]);
    drop(daemons);
    assert_eq!(forced.code, 0, "{forced:?}");
    assert!(
        forced.out.contains("--force: deleting the add-on anyway"),
        "{forced:?}"
    );
    assert_eq!(installed_objects(&env), Vec::<&str>::new());
}

#[test]
fn clear_messages_for_an_unreachable_server_a_wrong_context_and_rbac() {
    let env = Env::new().with_workers();
    let url = env.server.url();

    let r = env.run(&["--context", "prod", "preflight"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.err.contains("context \"prod\" not found in kubeconfig")
            && r.err.contains("available contexts: a"),
        "{r:?}"
    );
    assert_eq!(r.err.lines().count(), 1, "{r:?}");

    env.server.forbid("list", "nodes");
    let r = env.run(&["preflight"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.err.contains("forbidden")
            && r.err.contains("may not list nodes")
            && r.err.contains("cluster-admin"),
        "{r:?}"
    );
    assert_eq!(r.err.lines().count(), 1, "{r:?}");
    env.server.clear_forbidden();

    env.server.forbid("patch", "daemonsets");
    let r = env.run(&["install"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.err
            .contains("may not patch (server-side apply) daemonsets"),
        "{r:?}"
    );
    env.server.clear_forbidden();

    env.server.stop();
    let r = env.run(&["status"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.err
            .contains(&format!("cannot reach the API server at {url} (context a)")),
        "{r:?}"
    );
    assert!(r.err.to_lowercase().contains("refused"), "{r:?}");
    assert_eq!(r.err.lines().count(), 1, "{r:?}");
}

#[test]
fn a_stuck_rollout_times_out_naming_the_nodes() {
    let env = Env::new().with_workers();
    env.server.upsert(fixtures::virtual_node("vk"));
    env.server.set_rollout(RolloutMode::Stuck);
    let r = env.run(&["install", "--timeout", "1s"]);
    assert_eq!(r.code, 3, "{r:?}");
    assert!(
        r.out.contains("did not finish within 1s (0/3 updated"),
        "{r:?}"
    );
    assert!(
        r.out
            .contains("nodes without a ready daemon pod: n1, n2, n3."),
        "{r:?}"
    );
    assert!(!r.out.contains("NOTE:"), "{r:?}");
}

#[test]
fn several_contexts_are_several_clusters() {
    let a = Env::new().with_workers();
    let b = FakeApiServer::start().unwrap();
    b.upsert(fixtures::node("b1", "4.19.91-26.al7.x86_64", "CentOS 7"));
    b.upsert(fixtures::node("b2", "6.6.0", "Ubuntu 24.04"));
    let kubeconfig = a.dir.0.join("two");
    let entry = |name: &str, url: String| {
        (
            json!({"name": name, "cluster": {"server": url}}),
            json!({"name": name, "user": {}}),
            json!({"name": name, "context": {"cluster": name, "user": name}}),
        )
    };
    let (ca, ua, xa) = entry("a", a.server.url());
    let (cb, ub, xb) = entry("b", b.url());
    let cfg = json!({
        "apiVersion": "v1", "kind": "Config", "current-context": "a",
        "clusters": [ca, cb], "users": [ua, ub], "contexts": [xa, xb],
    });
    std::fs::write(&kubeconfig, serde_json::to_string(&cfg).unwrap()).unwrap();

    let r = run_with(
        &kubeconfig,
        &["--context", "a", "--context", "b", "preflight"],
    );
    assert_eq!(r.code, 0, "{r:?}");
    let a_at = r.out.find("=== context a (").expect("header a");
    let b_at = r.out.find("=== context b (").expect("header b");
    assert!(a_at < b_at);
    assert!(r.out[a_at..b_at].contains("n1") && !r.out[a_at..b_at].contains("b1"));
    assert!(r.out[b_at..].contains("b1") && r.out[b_at..].contains("1 of 2 node(s) eligible"));

    // One cluster down: the other still reports, the run fails and says which.
    b.stop();
    let r = run_with(&kubeconfig, &["--context", "a", "--context", "b", "status"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.out.contains("=== context a (") && r.out.contains("n1"),
        "{r:?}"
    );
    assert!(
        r.err.contains("cannot reach the API server") && r.err.contains("(context b)"),
        "{r:?}"
    );
    assert!(r.err.contains("failed in context(s): b"), "{r:?}");
}

#[test]
fn an_unavailable_server_is_named_not_hung_on() {
    let env = Env::new().with_workers();
    env.server.unavailable(true);
    let started = std::time::Instant::now();
    let r = env.run(&["preflight"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.err.contains(&format!(
            "the API server at {} (context a) is unavailable (503",
            env.server.url()
        )),
        "{r:?}"
    );
    assert!(r.err.contains("list nodes"), "{r:?}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn the_rollout_wait_rides_out_a_short_api_server_outage() {
    let env = Env::new().with_workers();
    env.server.set_rollout(RolloutMode::Gradual {
        per_step: Duration::from_millis(400),
    });
    let server = env.server.clone();
    let outage = std::thread::spawn(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while server
            .get("apps/v1", "DaemonSet", Some(NS), "accel-daemon")
            .is_none()
        {
            assert!(
                std::time::Instant::now() < deadline,
                "install never applied the DaemonSet"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        server.unavailable(true);
        std::thread::sleep(Duration::from_millis(600));
        server.unavailable(false);
    });
    let r = env.run(&["install", "--timeout", "20s"]);
    outage.join().unwrap();
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.out.contains("is unavailable (503") && r.out.contains("(retrying)"),
        "{r:?}"
    );
    assert!(r.out.contains("rollout complete on 3 node(s)"), "{r:?}");
}

#[test]
fn a_bad_command_line_is_a_usage_error() {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = accel_installer::run(
        ["accel-installer", "install", "--timeout", "soon"],
        &mut out,
        &mut err,
        false,
    );
    assert_eq!(code, 2);
    assert!(String::from_utf8_lossy(&err).contains("is not a duration"));
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = accel_installer::run(["accel-installer", "--help"], &mut out, &mut err, false);
    assert_eq!(code, 0);
    let help = String::from_utf8_lossy(&out);
    for cmd in ["preflight", "install", "status", "uninstall", "render"] {
        assert!(help.contains(cmd), "{help}");
    }
}

#[test]
fn uninstall_before_any_daemon_reported_warns_instead_of_waiting() {
    let env = Env::new().with_workers();
    assert_eq!(env.run(&["install"]).code, 0);
    env.server.upsert(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "accel-daemon-abcde", "namespace": NS, "labels": {
            "app.kubernetes.io/name": "sidecar-accel", "app.kubernetes.io/component": "node-daemon"}},
        "spec": {"nodeName": "n1", "containers": [{"name": "accel-daemon", "image": "x"}]},
    }));
    let r = env.run(&["uninstall", "--timeout", "5s"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.out.contains("nothing to wait for"), "{r:?}");
    assert!(
        r.out
            .contains("warning: the daemon on node n1 never reported"),
        "{r:?}"
    );
    assert_eq!(installed_objects(&env), Vec::<&str>::new());
    assert_eq!(
        marks(&env, "n1"),
        Vec::<String>::new(),
        "the request was lifted after the pods went"
    );
}
