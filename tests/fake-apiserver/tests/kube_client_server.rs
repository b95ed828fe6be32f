//! The fake server itself, seen from the real kube 5 client and from a plain
//! `#[test]`: the kubeconfig it writes, version and API discovery (with and
//! without the Prometheus Operator), and its synchronous API (upsert, get,
//! delete with namespace cascade, stop and restart).

use accel_fake_apiserver::{FakeApiServer, fixtures};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};

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
