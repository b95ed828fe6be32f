//! Protocol details beyond the common client paths: JSON patch, strategic merge, optimistic
//! concurrency, selector-filtered watches, collection deletes, namespace cascade, 404 paths.

use std::time::Duration;

use accel_fake_apiserver::{FakeApiServer, fixtures};
use axum::http::Request;
use futures_util::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

fn client(s: &FakeApiServer) -> Client {
    Client::try_from(s.kube_config()).expect("client from config")
}

fn api_code(e: kube::Error) -> u16 {
    match e {
        kube::Error::Api(s) => s.code,
        other => panic!("expected kube::Error::Api, got {other:?}"),
    }
}

#[tokio::test]
async fn json_patch_strategic_merge_and_stale_replace() {
    let s = FakeApiServer::start().unwrap();
    let c = client(&s);
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "cfg"}, "data": {"a": "1", "b": "2"}}))
            .unwrap();
    let created = cms.create(&PostParams::default(), &cm).await.unwrap();

    let ops = json!([
        {"op": "replace", "path": "/data/a", "value": "10"},
        {"op": "remove", "path": "/data/b"},
        {"op": "add", "path": "/data/c", "value": "3"}
    ]);
    let req = Request::patch("/api/v1/namespaces/default/configmaps/cfg")
        .header("content-type", "application/json-patch+json")
        .body(serde_json::to_vec(&ops).unwrap())
        .unwrap();
    let patched: Value = c.request(req).await.unwrap();
    assert_eq!(patched["data"], json!({"a": "10", "c": "3"}));
    let bad = Request::patch("/api/v1/namespaces/default/configmaps/cfg")
        .header("content-type", "application/json-patch+json")
        .body(
            serde_json::to_vec(&json!([{"op": "replace", "path": "/data/zz", "value": "x"}]))
                .unwrap(),
        )
        .unwrap();
    assert_eq!(api_code(c.request::<Value>(bad).await.unwrap_err()), 422);

    // The object read before the patch carries an old resourceVersion: PUT must conflict.
    let mut stale = created.clone();
    stale.data = Some([("a".to_string(), "stale".to_string())].into());
    assert_eq!(
        api_code(
            cms.replace("cfg", &PostParams::default(), &stale)
                .await
                .unwrap_err()
        ),
        409
    );
    let mut fresh = cms.get("cfg").await.unwrap();
    fresh.data = Some([("a".to_string(), "fresh".to_string())].into());
    let replaced = cms
        .replace("cfg", &PostParams::default(), &fresh)
        .await
        .unwrap();
    assert_eq!(replaced.data.unwrap()["a"], "fresh");
    assert_eq!(replaced.metadata.uid, created.metadata.uid);

    s.upsert(fixtures::istiod_deployment("istio-system", "default"));
    let deps: Api<Deployment> = Api::namespaced(c.clone(), "istio-system");
    let d = deps
        .patch(
            "istiod",
            &PatchParams::default(),
            &Patch::Strategic(json!({"metadata": {"labels": {"x": "y"}}})),
        )
        .await
        .unwrap();
    assert_eq!(d.labels().get("x").map(String::as_str), Some("y"));
    assert_eq!(d.labels().get("app").map(String::as_str), Some("istiod"));
    let st = d.status.unwrap();
    assert_eq!(
        st.available_replicas,
        Some(1),
        "deployment simulator reports it available"
    );
}

#[tokio::test]
async fn selector_watch_turns_relabels_into_add_and_delete() {
    let s = FakeApiServer::start().unwrap();
    let pods: Api<Pod> = Api::namespaced(client(&s), "default");
    let web = fixtures::plain_pod("default", "web-7d4b9c8f6d-aaaaa", "n1", &["10.1.0.1"]);
    s.upsert(web.clone());
    let rv = s.resource_version().to_string();
    let wp = WatchParams::default().labels("app=web").timeout(20);
    let mut stream = pods.watch(&wp, &rv).await.unwrap().boxed();
    s.upsert(fixtures::with_label(web.clone(), "app", "db"));
    match stream.try_next().await.unwrap() {
        Some(WatchEvent::Deleted(p)) => assert_eq!(p.labels()["app"], "db"),
        other => panic!("expected DELETED when the pod leaves the selection, got {other:?}"),
    }
    s.upsert(web.clone());
    assert!(matches!(
        stream.try_next().await.unwrap(),
        Some(WatchEvent::Added(_))
    ));
    s.upsert(fixtures::with_annotation(web, "k", "v"));
    assert!(matches!(
        stream.try_next().await.unwrap(),
        Some(WatchEvent::Modified(_))
    ));
    // Pods elsewhere or outside the selector never show up.
    s.upsert(fixtures::plain_pod(
        "default",
        "db-5f6d7c8b9a-bbbbb",
        "n1",
        &["10.1.0.2"],
    ));
    s.bookmark_now();
    assert!(matches!(
        stream.try_next().await.unwrap(),
        Some(WatchEvent::Bookmark(_))
    ));
}

#[tokio::test]
async fn namespace_delete_cascades_and_collections_delete() {
    let s = FakeApiServer::start().unwrap();
    let c = client(&s);
    s.upsert(fixtures::injected_namespace("shop"));
    for (i, name) in ["a", "b", "c"].iter().enumerate() {
        let pod = fixtures::istio_pod("shop", name, "n1", &[&format!("10.1.0.{}", i + 1)]);
        s.upsert(if *name == "c" {
            fixtures::with_label(pod, "keep", "1")
        } else {
            pod
        });
    }
    let pods: Api<Pod> = Api::namespaced(c.clone(), "shop");
    let deleted = pods
        .delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels("!keep"),
        )
        .await
        .unwrap();
    let names: Vec<String> = deleted
        .left()
        .unwrap()
        .items
        .iter()
        .map(|p| p.name_any())
        .collect();
    assert_eq!(names, ["a", "b"]);

    let rv = s.resource_version().to_string();
    let all: Api<Pod> = Api::all(c.clone());
    let mut stream = all
        .watch(&WatchParams::default().timeout(20), &rv)
        .await
        .unwrap()
        .boxed();
    let nss: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(c.clone());
    nss.delete("shop", &DeleteParams::default()).await.unwrap();
    match stream.try_next().await.unwrap() {
        Some(WatchEvent::Deleted(p)) => assert_eq!(p.name_any(), "c"),
        other => panic!("expected DELETED c, got {other:?}"),
    }
    assert!(s.list("v1", "Pod").is_empty());
    assert_eq!(api_code(nss.get("shop").await.unwrap_err()), 404);

    let nope = Request::get("/apis/monitoring.coreos.com/v1/namespaces/x/servicemonitors")
        .body(Vec::new())
        .unwrap();
    assert_eq!(
        api_code(c.request::<Value>(nope).await.unwrap_err()),
        404,
        "CRDs absent by default"
    );
}

#[tokio::test]
async fn forbidden_watch_surfaces_in_the_runtime_watcher() {
    let s = FakeApiServer::start().unwrap();
    s.forbid("watch", "pods");
    let w = kube::runtime::watcher(Api::<Pod>::all(client(&s)), Default::default());
    let mut w = std::pin::pin!(w);
    let mut saw_403 = false;
    for _ in 0..10 {
        match tokio::time::timeout(Duration::from_secs(5), w.next())
            .await
            .unwrap()
        {
            Some(Err(kube::runtime::watcher::Error::WatchStartFailed(kube::Error::Api(st)))) => {
                assert_eq!(st.code, 403);
                assert!(
                    st.message.contains("cannot watch resource \"pods\""),
                    "{}",
                    st.message
                );
                saw_403 = true;
                break;
            }
            Some(_) => {}
            None => break,
        }
    }
    assert!(saw_403, "the watcher must report the 403");
    let watch_req = s
        .requests()
        .into_iter()
        .find(|r| r.param("watch").is_some())
        .unwrap();
    assert_eq!(watch_req.path, "/api/v1/pods");
}
