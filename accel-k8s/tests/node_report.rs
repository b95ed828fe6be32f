//! The daemon's node reports and node watch against a loopback API server:
//! the field manager on status patches, the heartbeat, the gate Event for
//! the longest node names, and the unload request arriving by watch.

use std::time::{Duration, Instant};

use accel_fake_apiserver::{FakeApiServer, fixtures};
use accel_k8s::{
    keys,
    node::{NodeState, NodeStatus},
    node_watch::{NodeView, spawn_node_watcher},
    report::{NodeReporter, REPORTING_INSTANCE_MAX},
};
use serde_json::Value;

fn client(api: &FakeApiServer) -> kube::Client {
    kube::Client::try_from(api.kube_config()).expect("client")
}

fn status(state: NodeState) -> NodeStatus {
    NodeStatus {
        state,
        reason: "because".into(),
        daemon_version: "0.1.0".into(),
        kernel: "6.1.0".into(),
        meshed_pods: 0,
        failed_checks: vec![],
        unload_token: None,
        updated: accel_k8s::node::now_rfc3339(),
        heartbeat_seconds: 0,
    }
}

fn published(api: &FakeApiServer, node: &str) -> Option<NodeStatus> {
    let n = api.get("v1", "Node", None, node)?;
    let text = n["metadata"]["annotations"][keys::NODE_STATUS_ANNOTATION].as_str()?;
    serde_json::from_str(text).ok()
}

fn patches(api: &FakeApiServer, node: &str) -> Vec<accel_fake_apiserver::LoggedRequest> {
    api.requests()
        .into_iter()
        .filter(|r| r.method == "PATCH" && r.path == format!("/api/v1/nodes/{node}"))
        .collect()
}

#[tokio::test]
async fn status_patches_name_the_field_manager_and_beat_while_unchanged() {
    let api = FakeApiServer::start().expect("fake API server");
    api.upsert(fixtures::node("n1", "6.1.0", "Debian"));
    let mut r = NodeReporter::new(client(&api), "n1").with_heartbeat(Duration::from_millis(400));
    let s = status(NodeState::Accelerating);
    assert!(r.publish(&s).await.expect("publish"));
    let sent = patches(&api, "n1");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].field_manager.as_deref(), Some(keys::FIELD_MANAGER));
    assert_eq!(
        sent[0].content_type.as_deref(),
        Some("application/merge-patch+json")
    );
    let managers: Vec<Value> =
        api.get("v1", "Node", None, "n1").expect("node")["metadata"]["managedFields"]
            .as_array()
            .cloned()
            .unwrap_or_default();
    assert!(
        managers.iter().any(|m| m["manager"] == keys::FIELD_MANAGER),
        "{managers:?}"
    );
    let first = published(&api, "n1").expect("status");
    assert_eq!(first.heartbeat_seconds, 0, "400 ms rounds down to 0 s");

    // Unchanged: nothing sent until the heartbeat is due, then one patch.
    assert!(!r.publish(&s).await.expect("publish"));
    assert_eq!(patches(&api, "n1").len(), 1);
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert!(r.publish(&s).await.expect("publish"));
    assert!(!r.publish(&s).await.expect("publish"));
    assert_eq!(patches(&api, "n1").len(), 2);
    // A change goes out at once.
    assert!(
        r.publish(&status(NodeState::Unaccelerated))
            .await
            .expect("publish")
    );
    assert_eq!(patches(&api, "n1").len(), 3);

    // The production heartbeat is announced in the status.
    let mut r = NodeReporter::new(client(&api), "n1");
    assert!(r.publish(&s).await.expect("publish"));
    let st = published(&api, "n1").expect("status");
    assert_eq!(st.heartbeat_seconds, 300);
    assert!(!st.is_stale(jiff::Timestamp::now()));
}

#[tokio::test]
async fn gate_event_for_a_253_character_node_name_is_accepted() {
    let api = FakeApiServer::start().expect("fake API server");
    let label = "a".repeat(63);
    let node = format!("{label}.{label}.{label}.{}x", "a".repeat(60));
    assert_eq!(node.len(), 253);
    api.upsert(fixtures::node(&node, "5.4.0", "Debian"));
    let r = NodeReporter::new(client(&api), &node);
    assert!(r.reporting_instance().len() <= REPORTING_INSTANCE_MAX);
    r.gate_failed("kernel 5.4.0 is older than 5.10")
        .await
        .expect("the API server accepts the Event");
    let events = api.list("events.k8s.io/v1", "Event");
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e["regarding"]["name"], node.as_str());
    assert_eq!(e["reason"], "AccelerationUnavailable");
    assert_eq!(e["reportingController"], keys::PRODUCT);
    let instance = e["reportingInstance"].as_str().expect("instance");
    assert!(instance.len() <= REPORTING_INSTANCE_MAX, "{instance}");
    assert!(instance.starts_with("accel-daemon-aaaa"), "{instance}");
    let name = e["metadata"]["name"].as_str().expect("name");
    assert!(name.len() <= 253, "{name}");
    // A short name is kept as it is.
    let short = NodeReporter::new(client(&api), "node-1");
    assert_eq!(short.reporting_instance(), "accel-daemon-node-1");
}

async fn wait_view(
    rx: &mut tokio::sync::watch::Receiver<NodeView>,
    what: &str,
    f: impl Fn(&NodeView) -> bool,
) -> Duration {
    let start = Instant::now();
    let limit = Duration::from_secs(10);
    loop {
        if f(&rx.borrow_and_update()) {
            return start.elapsed();
        }
        let left = limit.saturating_sub(start.elapsed());
        assert!(!left.is_zero(), "{what}: not within {limit:?}");
        let _ = tokio::time::timeout(left, rx.changed()).await;
    }
}

#[tokio::test]
async fn the_unload_request_arrives_by_watch_and_survives_410() {
    let api = FakeApiServer::start().expect("fake API server");
    api.upsert(fixtures::node("n1", "6.1.0", "Debian"));
    api.upsert(fixtures::node("n2", "6.1.0", "Debian"));
    let mut rx = spawn_node_watcher(client(&api), "n1");
    wait_view(&mut rx, "first list", |v| v.synced && v.exists).await;
    let request = |node: &str, token: Option<&str>| {
        let n = fixtures::node(node, "6.1.0", "Debian");
        match token {
            Some(t) => fixtures::with_annotation(n, keys::UNLOAD_REQUEST_ANNOTATION, t),
            None => n,
        }
    };
    // Another node's request is not ours.
    api.upsert(request("n2", Some("other")));
    api.upsert(request("n1", Some("tok-1")));
    let took = wait_view(&mut rx, "request", |v| {
        v.unload_request.as_deref() == Some("tok-1")
    })
    .await;
    eprintln!("unload request seen {took:?} after it was set");
    // Missed while the watch was down, history compacted: re-listed.
    api.stop();
    api.upsert(request("n1", None));
    api.compact();
    api.restart().expect("restart");
    wait_view(&mut rx, "withdrawal after 410", |v| {
        v.synced && v.unload_request.is_none()
    })
    .await;
    // Only list and watch: no GET of the node, ever.
    let verbs = api.request_counts().by_verb();
    assert!(!verbs.contains_key("get"), "{verbs:?}");
    assert!(verbs.get("watch").copied().unwrap_or(0) >= 2, "{verbs:?}");
}

/// kube's `default_backoff` restarts at 0.8 s after every `Init` the watcher
/// yields, so a failing list was retried about once a second forever; the
/// watches back off to 30 s instead.
#[tokio::test]
async fn failing_lists_back_off() {
    let api = FakeApiServer::start().expect("fake API server");
    api.upsert(fixtures::node("n1", "6.1.0", "Debian"));
    api.forbid("list", "nodes");
    api.forbid("list", "pods");
    let _node = spawn_node_watcher(client(&api), "n1");
    let _pods = accel_k8s::watch::spawn_pod_watcher(client(&api), "n1");
    tokio::time::sleep(Duration::from_secs(8)).await;
    let by_path = api.request_counts().by_path();
    for path in ["/api/v1/nodes", "/api/v1/pods"] {
        let lists = by_path
            .get(&("list".to_string(), path.to_string()))
            .copied()
            .unwrap_or(0);
        eprintln!("{lists} lists of {path} in 8 s");
        assert!((3..=5).contains(&lists), "{lists} lists of {path} in 8 s");
    }
}
