//! The real kube 5 client against the fake server: list/watch, the runtime watcher's recovery
//! paths, server-side apply, patches, errors and the DaemonSet rollout simulator.

use std::time::{Duration, Instant};

use accel_fake_apiserver::{FakeApiServer, RolloutMode, fixtures};
use futures_util::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Pod};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Client, ResourceExt};
use serde_json::json;

fn client(s: &FakeApiServer) -> Client {
    Client::try_from(s.kube_config()).expect("client from config")
}

/// Poll `cond` every 20 ms until it holds; panics with `what` after `secs`.
async fn wait_for(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn pod_names(store: &reflector::Store<Pod>) -> Vec<String> {
    let mut v: Vec<String> = store.state().iter().map(|p| p.name_any()).collect();
    v.sort();
    v
}

fn api_code(e: kube::Error) -> u16 {
    match e {
        kube::Error::Api(s) => s.code,
        other => panic!("expected kube::Error::Api, got {other:?}"),
    }
}

/// A reflector over all pods, driven on a background task, with the watcher's default config
/// (ListWatch, bookmarks on) unless `cfg` says otherwise.
fn pod_reflector(
    c: Client,
    cfg: watcher::Config,
) -> (reflector::Store<Pod>, tokio::task::JoinHandle<()>) {
    let (reader, writer) = reflector::store();
    let stream = reflector(writer, watcher(Api::<Pod>::all(c), cfg)).default_backoff();
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while stream.next().await.is_some() {}
    });
    (reader, task)
}

#[tokio::test]
async fn list_pods_with_field_and_label_selectors() {
    let s = FakeApiServer::start().unwrap();
    s.upsert(fixtures::node(
        "n1",
        "6.6.0-aliyun",
        "Alibaba Cloud Linux 3",
    ));
    s.upsert(fixtures::namespace("shop"));
    s.upsert(fixtures::istio_pod(
        "shop",
        "web-7d4b9c8f6d-aaaaa",
        "n1",
        &["172.20.0.5"],
    ));
    s.upsert(fixtures::native_sidecar_pod(
        "shop",
        "cart-6c5d8b7f9e-bbbbb",
        "n1",
        &["172.20.0.6"],
    ));
    s.upsert(fixtures::plain_pod(
        "default",
        "db-5f6d7c8b9a-ccccc",
        "n2",
        &["172.20.1.7"],
    ));
    let pods: Api<Pod> = Api::all(client(&s));
    let on_n1 = pods
        .list(&ListParams::default().fields("spec.nodeName=n1"))
        .await
        .unwrap();
    let mut names: Vec<String> = on_n1.items.iter().map(|p| p.name_any()).collect();
    names.sort();
    assert_eq!(names, ["cart-6c5d8b7f9e-bbbbb", "web-7d4b9c8f6d-aaaaa"]);
    let rv: u64 = on_n1
        .metadata
        .resource_version
        .as_deref()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(rv, s.resource_version());
    let not_n1 = pods
        .list(&ListParams::default().fields("spec.nodeName!=n1"))
        .await
        .unwrap();
    assert_eq!(not_n1.items.len(), 1);
    let meshed = pods
        .list(&ListParams::default().labels("security.istio.io/tlsMode=istio,app in (web,other)"))
        .await
        .unwrap();
    assert_eq!(meshed.items.len(), 1);
    let web = &meshed.items[0];
    assert_eq!(
        web.status.as_ref().unwrap().pod_ip.as_deref(),
        Some("172.20.0.5")
    );
    let containers: Vec<&str> = web
        .spec
        .as_ref()
        .unwrap()
        .containers
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(containers, ["app", "istio-proxy"]);
    let in_shop: Api<Pod> = Api::namespaced(client(&s), "shop");
    assert_eq!(
        in_shop
            .list(&ListParams::default().labels("!missing"))
            .await
            .unwrap()
            .items
            .len(),
        2
    );
    let req = s
        .requests()
        .into_iter()
        .find(|r| r.param("fieldSelector").is_some())
        .unwrap();
    assert_eq!(req.path, "/api/v1/pods");
    assert_eq!(req.param("fieldSelector"), Some("spec.nodeName=n1"));
}

#[tokio::test]
async fn watcher_sees_add_update_delete_and_recovers_after_break() {
    let s = FakeApiServer::start().unwrap();
    s.upsert(fixtures::plain_pod("default", "a", "n1", &["10.1.0.1"]));
    let (store, task) = pod_reflector(client(&s), watcher::Config::default());
    wait_for(10, "initial list", || pod_names(&store) == ["a"]).await;
    wait_for(10, "watch open", || s.open_watches() == 1).await;

    s.upsert(fixtures::istio_pod("default", "b", "n1", &["10.1.0.2"]));
    wait_for(10, "add", || pod_names(&store) == ["a", "b"]).await;
    s.upsert(fixtures::with_label(
        fixtures::plain_pod("default", "a", "n1", &["10.1.0.1"]),
        "v",
        "2",
    ));
    wait_for(10, "update", || {
        store
            .state()
            .iter()
            .any(|p| p.name_any() == "a" && p.labels().get("v").map(String::as_str) == Some("2"))
    })
    .await;
    assert!(s.delete("v1", "Pod", Some("default"), "a"));
    wait_for(10, "delete", || pod_names(&store) == ["b"]).await;

    let watches_before = s
        .requests()
        .iter()
        .filter(|r| r.param("watch").is_some())
        .count();
    s.break_watches();
    s.upsert(fixtures::plain_pod("default", "c", "n2", &["10.1.0.3"]));
    wait_for(10, "event after break", || pod_names(&store) == ["b", "c"]).await;
    wait_for(10, "re-watch", || {
        s.requests()
            .iter()
            .filter(|r| r.param("watch").is_some())
            .count()
            > watches_before
    })
    .await;
    let rewatch = s
        .requests()
        .into_iter()
        .rfind(|r| r.param("watch").is_some())
        .unwrap();
    assert_eq!(rewatch.param("allowWatchBookmarks"), Some("true"));
    assert_ne!(
        rewatch.param("resourceVersion"),
        Some("0"),
        "re-watch resumes from a version"
    );
    task.abort();
}

#[tokio::test]
async fn watcher_relists_after_410_across_restart() {
    let s = FakeApiServer::start().unwrap();
    s.upsert(fixtures::plain_pod("default", "a", "n1", &["10.1.0.1"]));
    let (store, task) = pod_reflector(client(&s), watcher::Config::default());
    wait_for(10, "initial list", || pod_names(&store) == ["a"]).await;
    wait_for(10, "watch open", || s.open_watches() == 1).await;

    s.stop();
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", s.port())).is_err(),
        "refused while stopped"
    );
    assert_eq!(s.open_watches(), 0);
    // Changes the client cannot see, then compaction: its resourceVersion is now too old.
    s.upsert(fixtures::plain_pod("default", "b", "n1", &["10.1.0.2"]));
    assert!(s.delete("v1", "Pod", Some("default"), "a"));
    s.compact();
    let lists_before = s
        .requests()
        .iter()
        .filter(|r| r.param("watch").is_none() && r.path == "/api/v1/pods")
        .count();
    s.restart().unwrap();
    wait_for(15, "relist after 410", || pod_names(&store) == ["b"]).await;
    let lists_after = s
        .requests()
        .iter()
        .filter(|r| r.param("watch").is_none() && r.path == "/api/v1/pods")
        .count();
    assert!(lists_after > lists_before, "a 410 must force a fresh list");
    s.upsert(fixtures::plain_pod("default", "c", "n1", &["10.1.0.3"]));
    wait_for(10, "live after relist", || pod_names(&store) == ["b", "c"]).await;
    task.abort();
}

#[tokio::test]
async fn raw_watch_gets_bookmarks_and_410() {
    let s = FakeApiServer::start().unwrap();
    s.set_bookmark_interval(Duration::from_secs(30));
    let pods: Api<Pod> = Api::namespaced(client(&s), "default");
    s.upsert(fixtures::plain_pod("default", "a", "n1", &["10.1.0.1"]));
    let start = s.resource_version().to_string();
    let mut wp = WatchParams::default().timeout(20);
    wp.bookmarks = true;
    let mut stream = pods.watch(&wp, &start).await.unwrap().boxed();
    s.upsert(fixtures::plain_pod("default", "b", "n1", &["10.1.0.2"]));
    match stream.try_next().await.unwrap() {
        Some(WatchEvent::Added(p)) => assert_eq!(p.name_any(), "b"),
        other => panic!("expected ADDED b, got {other:?}"),
    }
    s.bookmark_now();
    match stream.try_next().await.unwrap() {
        Some(WatchEvent::Bookmark(b)) => assert_eq!(
            b.metadata.resource_version,
            s.resource_version().to_string()
        ),
        other => panic!("expected BOOKMARK, got {other:?}"),
    }
    s.compact();
    s.upsert(fixtures::plain_pod("default", "c", "n1", &["10.1.0.3"]));
    let mut old = pods
        .watch(&WatchParams::default(), &start)
        .await
        .unwrap()
        .boxed();
    match old.try_next().await.unwrap() {
        Some(WatchEvent::Error(e)) => {
            assert_eq!(e.code, 410);
            assert_eq!(e.reason, "Expired");
        }
        other => panic!("expected ERROR 410, got {other:?}"),
    }
    assert!(
        old.try_next().await.unwrap().is_none(),
        "stream closes after the 410"
    );
}

#[tokio::test]
async fn streaming_list_watcher_works() {
    let s = FakeApiServer::start().unwrap();
    s.upsert(fixtures::plain_pod("default", "a", "n1", &["10.1.0.1"]));
    let (store, task) = pod_reflector(client(&s), watcher::Config::default().streaming_lists());
    wait_for(10, "initial events", || pod_names(&store) == ["a"]).await;
    s.upsert(fixtures::plain_pod("default", "b", "n1", &["10.1.0.2"]));
    wait_for(10, "live event", || pod_names(&store) == ["a", "b"]).await;
    assert!(
        s.requests()
            .iter()
            .any(|r| r.param("sendInitialEvents") == Some("true"))
    );
    task.abort();
}

fn agent_ds(image: &str) -> DaemonSet {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "sidecar-accel", "namespace": "sidecar-accel"},
        "spec": {
            "selector": {"matchLabels": {"app": "sidecar-accel"}},
            "template": {
                "metadata": {"labels": {"app": "sidecar-accel"}},
                "spec": {
                    "nodeSelector": {"kubernetes.io/os": "linux"},
                    "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "type", "operator": "NotIn", "values": ["virtual-kubelet"]}]}
                    ]}}},
                    "containers": [{"name": "agent", "image": image}]
                }
            }
        }
    }))
    .unwrap()
}

#[tokio::test]
async fn server_side_apply_creates_updates_and_conflicts() {
    let s = FakeApiServer::start().unwrap();
    let c = client(&s);
    let ssa = PatchParams::apply("sidecar-accel").force();
    let nss: Api<Namespace> = Api::all(c.clone());
    let ns: Namespace = serde_json::from_value(
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "sidecar-accel"}}),
    )
    .unwrap();
    nss.patch("sidecar-accel", &ssa, &Patch::Apply(&ns))
        .await
        .unwrap();

    let dss: Api<DaemonSet> = Api::namespaced(c.clone(), "sidecar-accel");
    let created = dss
        .patch("sidecar-accel", &ssa, &Patch::Apply(agent_ds("agent:v1")))
        .await
        .unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    assert!(created.metadata.uid.is_some() && created.metadata.creation_timestamp.is_some());
    let updated = dss
        .patch("sidecar-accel", &ssa, &Patch::Apply(agent_ds("agent:v2")))
        .await
        .unwrap();
    assert_eq!(updated.metadata.generation, Some(2));
    assert_eq!(updated.metadata.uid, created.metadata.uid);
    let same = dss
        .patch("sidecar-accel", &ssa, &Patch::Apply(agent_ds("agent:v2")))
        .await
        .unwrap();
    assert_eq!(
        same.metadata.generation,
        Some(2),
        "no spec change, no new generation"
    );
    let st = dss
        .get_status("sidecar-accel")
        .await
        .unwrap()
        .status
        .unwrap();
    assert_eq!(st.observed_generation, Some(2));

    let applies: Vec<_> = s
        .requests()
        .into_iter()
        .filter(|r| {
            r.method == "PATCH"
                && r.path == "/apis/apps/v1/namespaces/sidecar-accel/daemonsets/sidecar-accel"
        })
        .collect();
    assert_eq!(applies.len(), 3);
    for r in &applies {
        assert_eq!(
            r.content_type.as_deref(),
            Some("application/apply-patch+yaml")
        );
        assert_eq!(r.field_manager.as_deref(), Some("sidecar-accel"));
        assert_eq!(r.param("force"), Some("true"));
    }

    let other = PatchParams::apply("kubectl");
    let err = dss
        .patch("sidecar-accel", &other, &Patch::Apply(agent_ds("agent:v3")))
        .await
        .unwrap_err();
    assert_eq!(api_code(err), 409);
    let forced = dss
        .patch(
            "sidecar-accel",
            &other.clone().force(),
            &Patch::Apply(agent_ds("agent:v3")),
        )
        .await
        .unwrap();
    assert_eq!(
        forced.spec.unwrap().template.spec.unwrap().containers[0]
            .image
            .as_deref(),
        Some("agent:v3")
    );

    // Creating into a namespace that does not exist fails like the real server.
    let elsewhere: Api<ConfigMap> = Api::namespaced(c.clone(), "nowhere");
    let cm: ConfigMap = serde_json::from_value(
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}),
    )
    .unwrap();
    assert_eq!(
        api_code(
            elsewhere
                .patch("x", &ssa, &Patch::Apply(&cm))
                .await
                .unwrap_err()
        ),
        404
    );
}

#[tokio::test]
async fn merge_patch_node_labels_and_errors() {
    let s = FakeApiServer::start().unwrap();
    s.upsert(fixtures::node("n1", "6.6.0", "Ubuntu 24.04.1 LTS"));
    let c = client(&s);
    let nodes: Api<Node> = Api::all(c.clone());
    let patched = nodes
        .patch(
            "n1",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"sidecar-accel.io/enabled": "true"}}})),
        )
        .await
        .unwrap();
    assert_eq!(
        patched
            .labels()
            .get("sidecar-accel.io/enabled")
            .map(String::as_str),
        Some("true")
    );
    assert_eq!(
        patched.labels().get("kubernetes.io/os").map(String::as_str),
        Some("linux")
    );
    let removed = nodes
        .patch(
            "n1",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"sidecar-accel.io/enabled": null}}})),
        )
        .await
        .unwrap();
    assert!(!removed.labels().contains_key("sidecar-accel.io/enabled"));
    let info = removed.status.unwrap().node_info.unwrap();
    assert_eq!(info.kernel_version, "6.6.0");

    s.forbid("list", "nodes");
    let err = nodes.list(&ListParams::default()).await.unwrap_err();
    match err {
        kube::Error::Api(st) => {
            assert_eq!(st.code, 403);
            assert_eq!(st.reason, "Forbidden");
            assert!(
                st.message.contains("system:serviceaccount:test:fake"),
                "{}",
                st.message
            );
        }
        other => panic!("expected Api error, got {other:?}"),
    }
    nodes.get("n1").await.expect("only list is forbidden");
    s.allow("list", "nodes");
    nodes.list(&ListParams::default()).await.unwrap();

    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "cfg"}, "data": {"k": "v"}})).unwrap();
    cms.create(&PostParams::default(), &cm).await.unwrap();
    assert_eq!(
        api_code(cms.create(&PostParams::default(), &cm).await.unwrap_err()),
        409
    );
    cms.delete("cfg", &DeleteParams::default()).await.unwrap();
    assert_eq!(
        api_code(
            cms.delete("cfg", &DeleteParams::default())
                .await
                .unwrap_err()
        ),
        404
    );
    assert_eq!(api_code(cms.get("cfg").await.unwrap_err()), 404);

    // kube 5 retries 503 by default (up to 15 times, exponential from 5 ms), so a client
    // that must see the 503 turns retries off; a short outage is ridden out transparently.
    let mut cfg = s.kube_config();
    cfg.default_retry = false;
    let no_retry: Api<Node> = Api::all(Client::try_from(cfg).unwrap());
    s.unavailable(true);
    assert_eq!(api_code(no_retry.get("n1").await.unwrap_err()), 503);
    let flip = tokio::spawn({
        let url = s.url();
        async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            url
        }
    });
    let (got, _) = tokio::join!(nodes.get("n1"), async {
        flip.await.unwrap();
        s.unavailable(false);
    });
    got.unwrap();
}

#[tokio::test]
async fn daemonset_rollout_climbs_gradually() {
    let s = FakeApiServer::start().unwrap();
    for n in ["n1", "n2", "n3"] {
        s.upsert(fixtures::node(n, "6.6.0", "Alibaba Cloud Linux 3"));
    }
    s.upsert(fixtures::virtual_node("virtual-kubelet-cn-hangzhou-k"));
    s.upsert(fixtures::namespace("sidecar-accel"));
    s.set_rollout(RolloutMode::Gradual {
        per_step: Duration::from_millis(100),
    });
    let dss: Api<DaemonSet> = Api::namespaced(client(&s), "sidecar-accel");
    dss.patch(
        "sidecar-accel",
        &PatchParams::apply("sidecar-accel").force(),
        &Patch::Apply(agent_ds("agent:v1")),
    )
    .await
    .unwrap();
    let mut seen = Vec::new();
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let st = dss
            .get_status("sidecar-accel")
            .await
            .unwrap()
            .status
            .unwrap();
        assert_eq!(
            st.desired_number_scheduled, 3,
            "the virtual node is excluded by affinity"
        );
        assert_eq!(st.observed_generation, Some(1));
        let up = st.updated_number_scheduled.unwrap_or(0);
        if seen.last() != Some(&up) {
            seen.push(up);
        }
        if up == 3 && st.number_available == Some(3) && st.number_ready == 3 {
            break;
        }
        assert!(Instant::now() < end, "rollout did not finish: {seen:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        seen.len() >= 3,
        "status must climb through intermediate values: {seen:?}"
    );
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");

    // A node heartbeat does not reset the rollout; a new matching node extends it.
    s.set_rollout(RolloutMode::Instant);
    s.upsert(fixtures::node("n1", "6.6.0", "Alibaba Cloud Linux 3"));
    let st = dss
        .get_status("sidecar-accel")
        .await
        .unwrap()
        .status
        .unwrap();
    assert_eq!(st.updated_number_scheduled, Some(3));
    s.upsert(fixtures::node("n4", "6.6.0", "Alibaba Cloud Linux 3"));
    let st = dss
        .get_status("sidecar-accel")
        .await
        .unwrap()
        .status
        .unwrap();
    assert_eq!(
        (st.desired_number_scheduled, st.number_available),
        (4, Some(4))
    );

    s.set_rollout(RolloutMode::Stuck);
    dss.patch(
        "sidecar-accel",
        &PatchParams::apply("sidecar-accel").force(),
        &Patch::Apply(agent_ds("agent:v2")),
    )
    .await
    .unwrap();
    let st = dss
        .get_status("sidecar-accel")
        .await
        .unwrap()
        .status
        .unwrap();
    assert_eq!(st.observed_generation, Some(2));
    assert_eq!(st.updated_number_scheduled, Some(0));
    assert_eq!(st.number_unavailable, Some(4));
}

#[tokio::test]
async fn kubeconfig_and_discovery() {
    let s = FakeApiServer::start().unwrap().with_prometheus_operator();
    let dir = std::env::temp_dir().join(format!(
        "fake-apiserver-kc-{}-{}",
        std::process::id(),
        s.port()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("config");
    s.write_kubeconfig(&path, "fake").unwrap();
    let kc = kube::config::Kubeconfig::read_from(&path).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(cfg.cluster_url.to_string().trim_end_matches('/'), s.url());
    let c = Client::try_from(cfg).unwrap();
    let v = c.apiserver_version().await.unwrap();
    assert_eq!(v.minor, "33");
    let nss: Api<Namespace> = Api::all(c.clone());
    let names: Vec<String> = nss
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|n| n.name_any())
        .collect();
    assert!(names.contains(&"kube-system".to_string()));

    let d = kube::discovery::Discovery::new(c.clone())
        .run()
        .await
        .unwrap();
    assert!(d.has_group("apps"));
    assert!(d.has_group("monitoring.coreos.com"));
    let (ar, caps) = d
        .get("apps")
        .unwrap()
        .recommended_kind("DaemonSet")
        .unwrap();
    assert_eq!(ar.plural, "daemonsets");
    assert_eq!(caps.scope, kube::discovery::Scope::Namespaced);
    s.set_prometheus_operator(false);
    let d = kube::discovery::Discovery::new(c).run().await.unwrap();
    assert!(!d.has_group("monitoring.coreos.com"));
}

#[test]
fn sync_api_from_a_plain_test() {
    let s = FakeApiServer::start().unwrap();
    s.upsert(fixtures::namespace("shop"));
    s.upsert(fixtures::plain_pod("shop", "a", "n1", &["10.1.0.1"]));
    assert!(s.get("v1", "Pod", Some("shop"), "a").is_some());
    assert!(s.delete("v1", "Namespace", None, "shop"));
    assert!(
        s.get("v1", "Pod", Some("shop"), "a").is_none(),
        "namespace delete cascades"
    );
    assert!(!s.delete("v1", "Pod", Some("shop"), "a"));
    s.stop();
    s.stop();
    s.restart().unwrap();
    std::net::TcpStream::connect(("127.0.0.1", s.port())).expect("listening again");
}

#[tokio::test]
async fn watcher_converges_under_churn_and_watch_closes_with_client() {
    let s = FakeApiServer::start().unwrap();
    s.set_history_limit(100);
    let (store, task) = pod_reflector(client(&s), watcher::Config::default());
    wait_for(10, "watch open", || s.open_watches() == 1).await;
    // Writes racing the client, with watches cut midway and a short history: the watcher
    // resumes or relists (410) and still ends at exactly the server's state.
    let n = 1500;
    for i in 0..n {
        s.upsert(fixtures::plain_pod(
            "default",
            &format!("p{}", i % 300),
            "n1",
            &["10.1.0.1"],
        ));
        if i % 3 == 0 {
            s.delete(
                "v1",
                "Pod",
                Some("default"),
                &format!("p{}", (i + 150) % 300),
            );
        }
        if i % 500 == 250 {
            s.break_watches();
        }
    }
    let mut want: Vec<String> = s
        .list("v1", "Pod")
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    want.sort();
    wait_for(20, "reflector converges", || pod_names(&store) == want).await;
    task.abort();
    wait_for(10, "server notices the client went away", || {
        s.open_watches() == 0
    })
    .await;
}

/// A client whose requests carry `User-Agent: agent`, so counts can tell clients apart.
fn client_as(s: &FakeApiServer, agent: &str) -> Client {
    let mut cfg = s.kube_config();
    cfg.headers.push((
        axum::http::header::USER_AGENT,
        axum::http::HeaderValue::from_str(agent).unwrap(),
    ));
    Client::try_from(cfg).unwrap()
}

#[tokio::test]
async fn node_watch_by_name_sees_only_that_node_and_requests_are_counted_per_client() {
    let s = FakeApiServer::start().unwrap();
    s.upsert(fixtures::node("n1", "6.6.0", "Debian"));
    s.upsert(fixtures::node("n2", "6.6.0", "Debian"));
    let (reader, writer) = reflector::store();
    let cfg = watcher::Config::default().fields("metadata.name=n1");
    let stream = reflector(
        writer,
        watcher(Api::<Node>::all(client_as(&s, "agent-n1")), cfg),
    )
    .default_backoff();
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while stream.next().await.is_some() {}
    });
    let names = || {
        let mut v: Vec<String> = reader.state().iter().map(|n| n.name_any()).collect();
        v.sort();
        v
    };
    wait_for(10, "n1 listed", || names() == ["n1"]).await;
    wait_for(10, "watch open", || s.open_watches() == 1).await;
    let annotated = |n: &str| {
        fixtures::with_annotation(
            fixtures::node(n, "6.6.0", "Debian"),
            "sidecar-accel.io/unload-requested",
            "tok",
        )
    };
    s.upsert(annotated("n2"));
    s.upsert(annotated("n1"));
    wait_for(10, "n1's annotation", || {
        reader.state().iter().any(|n| {
            n.annotations().get("sidecar-accel.io/unload-requested") == Some(&"tok".to_string())
        })
    })
    .await;
    assert_eq!(names(), ["n1"], "n2 leaked through the field selector");

    // Another client's requests are counted apart.
    Api::<Node>::all(client_as(&s, "agent-n2"))
        .get("n2")
        .await
        .unwrap();
    let counts = s.request_counts();
    let mine: Vec<(String, String, u64)> = counts
        .0
        .iter()
        .filter(|(k, _)| k.client == "agent-n1")
        .map(|(k, n)| (k.verb.clone(), k.path.clone(), *n))
        .collect();
    assert_eq!(
        mine,
        [
            ("list".into(), "/api/v1/nodes".into(), 1),
            ("watch".into(), "/api/v1/nodes".into(), 1)
        ]
    );
    assert_eq!(counts.by_client()["agent-n2"], 1);
    assert_eq!(
        counts.by_path()[&("get".into(), "/api/v1/nodes/n2".into())],
        1
    );
    assert_eq!(counts.total(), 3);
    let before = s.request_counts();
    Api::<Node>::all(client(&s)).get("n1").await.unwrap();
    let delta = s.request_counts().since(&before);
    assert_eq!(delta.by_client()[""], 1);
    assert_eq!(delta.total(), 1);
    s.reset_request_counts();
    assert_eq!(s.request_counts().total(), 0);
    task.abort();
}

#[tokio::test]
async fn over_long_names_and_reporting_instances_are_invalid() {
    let s = FakeApiServer::start().unwrap();
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client(&s), "default");
    let event = |name: &str, instance: &str| {
        serde_json::from_value(json!({
            "apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": name},
            "eventTime": "2026-01-01T00:00:00.000000Z",
            "reportingController": "sidecar-accel",
            "reportingInstance": instance,
            "action": "Gate", "reason": "R", "type": "Warning",
        }))
        .unwrap()
    };
    let pp = PostParams::default();
    events
        .create(&pp, &event("ok", &"i".repeat(128)))
        .await
        .unwrap();
    let e = events
        .create(&pp, &event("long-instance", &"i".repeat(129)))
        .await
        .unwrap_err();
    let kube::Error::Api(status) = e else {
        panic!("expected an API error, got {e:?}")
    };
    assert_eq!(status.code, 422);
    assert!(status.message.contains("reportingInstance"), "{status:?}");
    let e = events
        .create(&pp, &event(&"n".repeat(254), "i"))
        .await
        .unwrap_err();
    assert_eq!(api_code(e), 422);
}
