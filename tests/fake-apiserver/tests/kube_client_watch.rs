//! The real kube 5 client's reads against the fake server: lists with field
//! and label selectors, raw watches (bookmarks, 410), the runtime watcher's
//! recovery paths (broken watches, relist after 410, streaming lists, churn),
//! a node watch by name, and request counts per client.

mod common;

use std::time::{Duration, Instant};

use accel_fake_apiserver::{FakeApiServer, fixtures};
use futures_util::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, WatchEvent, WatchParams};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Client, ResourceExt};

use common::client;

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
