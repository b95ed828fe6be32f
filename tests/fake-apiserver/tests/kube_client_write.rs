//! The real kube 5 client's writes against the fake server: server-side
//! apply (create, update, conflicts), merge patches, create and delete, the
//! API errors it answers (403, 404, 409, 422, 503), and the DaemonSet
//! rollout simulator.

mod common;

use std::time::{Duration, Instant};

use accel_fake_apiserver::{FakeApiServer, RolloutMode, fixtures};
use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;

use common::client;

fn api_code(e: kube::Error) -> u16 {
    match e {
        kube::Error::Api(s) => s.code,
        other => panic!("expected kube::Error::Api, got {other:?}"),
    }
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

/// Applies the agent DaemonSet with `image` (server-side apply, forced, field
/// manager `sidecar-accel`) and returns what the server stored.
async fn apply_agent(dss: &Api<DaemonSet>, image: &str) -> DaemonSet {
    dss.patch(
        "sidecar-accel",
        &PatchParams::apply("sidecar-accel").force(),
        &Patch::Apply(agent_ds(image)),
    )
    .await
    .unwrap()
}

/// The agent DaemonSet's status as the server reports it now.
async fn ds_status(dss: &Api<DaemonSet>) -> DaemonSetStatus {
    dss.get_status("sidecar-accel")
        .await
        .unwrap()
        .status
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
    let created = apply_agent(&dss, "agent:v1").await;
    assert_eq!(created.metadata.generation, Some(1));
    assert!(created.metadata.uid.is_some() && created.metadata.creation_timestamp.is_some());
    let updated = apply_agent(&dss, "agent:v2").await;
    assert_eq!(updated.metadata.generation, Some(2));
    assert_eq!(updated.metadata.uid, created.metadata.uid);
    let same = apply_agent(&dss, "agent:v2").await;
    assert_eq!(
        same.metadata.generation,
        Some(2),
        "no spec change, no new generation"
    );
    let st = ds_status(&dss).await;
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
    apply_agent(&dss, "agent:v1").await;
    let mut seen = Vec::new();
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let st = ds_status(&dss).await;
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
    let st = ds_status(&dss).await;
    assert_eq!(st.updated_number_scheduled, Some(3));
    s.upsert(fixtures::node("n4", "6.6.0", "Alibaba Cloud Linux 3"));
    let st = ds_status(&dss).await;
    assert_eq!(
        (st.desired_number_scheduled, st.number_available),
        (4, Some(4))
    );

    s.set_rollout(RolloutMode::Stuck);
    apply_agent(&dss, "agent:v2").await;
    let st = ds_status(&dss).await;
    assert_eq!(st.observed_generation, Some(2));
    assert_eq!(st.updated_number_scheduled, Some(0));
    assert_eq!(st.number_unavailable, Some(4));
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
