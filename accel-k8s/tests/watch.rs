//! The pod watch against a loopback API server: big node pod lists,
//! malformed pods, deletes missed while the watch was down.

use std::time::{Duration, Instant};

use accel_fake_apiserver::{FakeApiServer, fixtures};
use accel_k8s::{mesh::PodClass, watch::spawn_pod_watcher};
use serde_json::json;

async fn wait_for(
    rx: &mut tokio::sync::watch::Receiver<std::sync::Arc<accel_k8s::watch::PodView>>,
    limit: Duration,
    what: &str,
    f: impl Fn(&accel_k8s::watch::PodView) -> bool,
) {
    let deadline = Instant::now() + limit;
    loop {
        if f(&rx.borrow()) {
            return;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "{what}: not within {limit:?}");
        let _ = tokio::time::timeout(left, rx.changed()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_pods_and_malformed_ones_are_classified_without_panic() {
    let api = FakeApiServer::start().expect("fake API server");
    const ON_NODE: usize = 5_000;
    for i in 0..ON_NODE {
        let ip = format!("10.{}.{}.{}", 100 + i / 65_536, (i / 256) % 256, i % 256);
        let pod = if i % 2 == 0 {
            fixtures::istio_pod("load", &format!("p{i}"), "n1", &[&ip])
        } else {
            fixtures::plain_pod("load", &format!("p{i}"), "n1", &[&ip])
        };
        api.upsert(pod);
        // As many on another node, which the field selector must keep away.
        api.upsert(fixtures::istio_pod("load", &format!("q{i}"), "n2", &[&ip]));
    }
    // Hostile shapes: garbage addresses, absurd annotations, missing status.
    let mut garbage = fixtures::istio_pod("bad", "ips", "n1", &["10.0.0.1"]);
    garbage["status"]["podIPs"] = json!([{"ip": "not-an-address"}]);
    api.upsert(garbage);
    api.upsert(fixtures::with_annotation(
        fixtures::istio_pod("bad", "ports", "n1", &["10.0.0.2"]),
        "traffic.sidecar.istio.io/excludeOutboundPorts",
        &"9,".repeat(100_000),
    ));
    let mut no_status = fixtures::istio_pod("bad", "nostatus", "n1", &["10.0.0.3"]);
    no_status["status"] = json!({});
    api.upsert(no_status);

    let client = kube::Client::try_from(api.kube_config()).expect("client");
    let (mut rx, health) = spawn_pod_watcher(client, "n1");
    let start = Instant::now();
    wait_for(&mut rx, Duration::from_secs(60), "the big list", |v| {
        v.synced
    })
    .await;
    let view = rx.borrow().clone();
    eprintln!(
        "{} pods listed and classified in {:?}",
        view.pods.len(),
        start.elapsed()
    );
    assert_eq!(view.pods.len(), ON_NODE + 3, "only n1's pods");
    assert_eq!(
        view.meshed().count(),
        ON_NODE / 2 + 1,
        "the 9,9,9 pod is valid"
    );
    assert!(matches!(view.pods["bad/ips"], PodClass::Invalid(_)));
    assert!(matches!(view.pods["bad/nostatus"], PodClass::Inactive(_)));
    assert_eq!(health.errors(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_missed_during_an_outage_are_caught_by_the_relist() {
    let api = FakeApiServer::start().expect("fake API server");
    api.upsert(fixtures::istio_pod("ns", "a", "n1", &["10.1.0.1"]));
    api.upsert(fixtures::native_sidecar_pod("ns", "b", "n1", &["10.1.0.2"]));
    let client = kube::Client::try_from(api.kube_config()).expect("client");
    let (mut rx, health) = spawn_pod_watcher(client, "n1");
    wait_for(&mut rx, Duration::from_secs(10), "two meshed", |v| {
        v.synced && v.meshed().count() == 2
    })
    .await;
    api.stop();
    api.delete("v1", "Pod", Some("ns"), "b");
    api.compact();
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Down: the last state stands.
    assert_eq!(rx.borrow().meshed().count(), 2);
    api.restart().expect("restart");
    wait_for(
        &mut rx,
        Duration::from_secs(60),
        "b gone after relist",
        |v| v.meshed().count() == 1,
    )
    .await;
    assert!(health.errors() > 0, "the outage was not counted");
}
