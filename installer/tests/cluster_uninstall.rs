//! `accel-installer uninstall` against the fake API server, with a thread
//! playing the node daemons' side of the unload handshake: every node drains
//! before anything is deleted, a refusing node stops it (unless `--force`),
//! a daemon that never reported is warned about, and running it again is safe.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use accel_fake_apiserver::{FakeApiServer, fixtures};
use accel_k8s::keys;
use accel_k8s::node::{NodeState, NodeStatus};
use serde_json::json;

use common::{Env, NS, status};

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
