//! `install`: server-side apply of every manifest object, wait for the
//! DaemonSet rollout, then show which nodes accelerate. Idempotent: applying
//! the same objects again changes nothing and the rollout is already done.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;

use accel_k8s::keys;
use accel_k8s::node::unload_request;

use crate::cluster::{Cluster, Explain, transient};
use crate::manifests::{self, MONITORING_GROUP};
use crate::nodes::{self, Rollout};
use crate::{Ui, exit, source};

pub const FACTS: &[&str] = &[
    "Connections established before the install are not accelerated: restart workloads \
     (e.g. `kubectl rollout restart`) to accelerate their connections.",
    "Accelerated connections no longer cross the TCP/IP stack: their PSH-flagged segments \
     disappear from `tcpdump -i lo` captures. That is how to check it works \
     (`accel-installer verify NAMESPACE/POD` does it for you through the API, \
     `accel-daemon verify` on a node).",
];

/// What to install, rendered from the kustomize manifests or a chart.
pub struct Target<'a> {
    /// In apply order.
    pub objects: &'a [serde_json::Value],
    /// For objects rendered without one (--namespace).
    pub namespace: &'a str,
    pub timeout: Duration,
    pub poll: Duration,
}

fn is_monitor(obj: &serde_json::Value) -> bool {
    obj["apiVersion"]
        .as_str()
        .is_some_and(|a| a.starts_with(&format!("{MONITORING_GROUP}/")))
}

pub async fn run(cluster: &Cluster, ui: &mut Ui<'_>, target: &Target<'_>) -> anyhow::Result<i32> {
    let mut objects = target.objects.to_vec();
    if objects.iter().any(is_monitor) {
        let groups = nodes::api_groups(cluster).await?;
        if !groups.contains(MONITORING_GROUP) {
            for obj in objects.iter().filter(|o| is_monitor(o)) {
                ui.line(format!(
                    "monitoring: skipped the {} ({MONITORING_GROUP} API not found: Prometheus Operator not installed)",
                    obj["kind"].as_str().unwrap_or("monitor")
                ));
            }
            objects.retain(|o| !is_monitor(o));
        }
    }
    let namespace =
        source::daemon_namespace(&objects).unwrap_or_else(|| target.namespace.to_string());

    resume_nodes(cluster, ui).await?;

    let params = PatchParams::apply(keys::FIELD_MANAGER).force();
    for obj in &objects {
        let what = manifests::describe(obj);
        let info = manifests::kind_info(
            obj["apiVersion"].as_str().unwrap_or_default(),
            obj["kind"].as_str().unwrap_or_default(),
        )
        .ok_or_else(|| anyhow::anyhow!("no API mapping for {what}"))?;
        let name = obj["metadata"]["name"].as_str().unwrap_or_default();
        let ns = obj["metadata"]["namespace"].as_str().unwrap_or(&namespace);
        nodes::dynamic_api(cluster, info, ns)
            .patch(name, &params, &Patch::Apply(obj))
            .await
            .explain(cluster, "patch (server-side apply)", info.plural)?;
        ui.line(format!("applied {what}"));
    }

    let code = wait_rollout(cluster, ui, &namespace, target.timeout, target.poll).await?;
    if code != exit::OK {
        return Ok(code);
    }
    let nodes = nodes::list_nodes(cluster).await?;
    ui.blank();
    let rows: Vec<Vec<String>> = nodes.iter().map(|n| nodes::node_row(n, true)).collect();
    ui.table(nodes::NODE_HEADER, &rows);
    ui.blank();
    for fact in FACTS {
        ui.line(format!("NOTE: {fact}"));
    }
    Ok(exit::OK)
}

/// An aborted uninstall leaves its unload request on nodes, and their daemons
/// stay idle while it is there: remove it so they accelerate again.
async fn resume_nodes(cluster: &Cluster, ui: &mut Ui<'_>) -> anyhow::Result<()> {
    let api: Api<Node> = Api::all(cluster.client.clone());
    let params = PatchParams {
        field_manager: Some(keys::FIELD_MANAGER.to_string()),
        ..Default::default()
    };
    let clear = json!({"metadata": {"annotations": {keys::UNLOAD_REQUEST_ANNOTATION: null}}});
    let mut resumed = Vec::new();
    for node in nodes::list_nodes(cluster).await? {
        if unload_request(&node).is_none() {
            continue;
        }
        let name = nodes::name(&node).to_string();
        api.patch(&name, &params, &Patch::Merge(&clear))
            .await
            .explain(cluster, "patch", "nodes")?;
        resumed.push(name);
    }
    if !resumed.is_empty() {
        ui.line(format!(
            "removed the unload request of an earlier uninstall from {}: their daemons resume",
            resumed.join(", ")
        ));
    }
    Ok(())
}

async fn wait_rollout(
    cluster: &Cluster,
    ui: &mut Ui<'_>,
    namespace: &str,
    timeout: Duration,
    poll: Duration,
) -> anyhow::Result<i32> {
    let start = Instant::now();
    let last = loop {
        let found = match nodes::try_daemonset(cluster, namespace).await {
            Ok(found) => found,
            // The API server blinking during a long rollout is no reason to give up.
            Err(e) if transient(&e) && start.elapsed() < timeout => {
                ui.progress(&format!(
                    "rollout: {} (retrying)",
                    cluster.explain(e, "get", "daemonsets")
                ));
                tokio::time::sleep(poll).await;
                continue;
            }
            Err(e) => return Err(cluster.explain(e, "get", "daemonsets")),
        };
        let ds = found.ok_or_else(|| {
            anyhow::anyhow!(
                "DaemonSet {namespace}/{} disappeared during the rollout",
                keys::DAEMONSET
            )
        })?;
        let r = Rollout::of(&ds);
        ui.progress(&format!("rollout: {}", r.describe()));
        if r.complete() {
            ui.end_progress();
            if r.desired == 0 {
                ui.warn("the DaemonSet selects no node (no Linux, non-virtual node): nothing is accelerated");
            } else {
                ui.line(format!("rollout complete on {} node(s)", r.desired));
            }
            return Ok(exit::OK);
        }
        if start.elapsed() >= timeout {
            break (r, ds);
        }
        tokio::time::sleep(poll.min(timeout.saturating_sub(start.elapsed()))).await;
    };
    ui.end_progress();
    let (r, ds) = last;
    let pods = nodes::daemon_pods(cluster, namespace, Some(&ds)).await?;
    let ready: BTreeSet<&str> = pods
        .iter()
        .filter(|p| nodes::pod_ready(p))
        .filter_map(nodes::pod_node)
        .collect();
    let all = nodes::list_nodes(cluster).await?;
    let waiting: Vec<&str> = all
        .iter()
        .filter(|n| nodes::targeted(n))
        .map(nodes::name)
        .filter(|n| !ready.contains(n))
        .collect();
    let which = if waiting.is_empty() {
        String::new()
    } else {
        format!("; nodes without a ready daemon pod: {}", waiting.join(", "))
    };
    ui.line(format!(
        "rollout of DaemonSet {namespace}/{} did not finish within {}s ({}){which}. \
         Check `kubectl -n {namespace} get pods -o wide` and the pods' events; \
         run install again (with a longer --timeout) to keep waiting",
        keys::DAEMONSET,
        timeout.as_secs_f32(),
        r.describe()
    ));
    Ok(exit::NOT_DONE)
}
