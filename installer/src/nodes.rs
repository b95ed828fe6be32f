//! Cluster reads shared by the commands: nodes and what their daemons
//! report, the DaemonSet and its rollout, daemon pods, API discovery, and
//! dynamic access to the manifest kinds.

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams};

use accel_k8s::keys;
use accel_k8s::node::{self as knode, NodeStatus};

use crate::cluster::{Cluster, Explain};
use crate::manifests::KindInfo;

pub async fn list_nodes(cluster: &Cluster) -> anyhow::Result<Vec<Node>> {
    try_list_nodes(cluster)
        .await
        .explain(cluster, "list", "nodes")
}

/// [`list_nodes`] with the client error, for waits that retry.
pub async fn try_list_nodes(cluster: &Cluster) -> Result<Vec<Node>, kube::Error> {
    let api: Api<Node> = Api::all(cluster.client.clone());
    Ok(api.list(&ListParams::default()).await?.items)
}

pub fn name(node: &Node) -> &str {
    node.metadata.name.as_deref().unwrap_or("?")
}

pub async fn daemonset(cluster: &Cluster, namespace: &str) -> anyhow::Result<Option<DaemonSet>> {
    try_daemonset(cluster, namespace)
        .await
        .explain(cluster, "get", "daemonsets")
}

/// [`daemonset`] with the client error, for waits that retry.
pub async fn try_daemonset(
    cluster: &Cluster,
    namespace: &str,
) -> Result<Option<DaemonSet>, kube::Error> {
    let api: Api<DaemonSet> = Api::namespaced(cluster.client.clone(), namespace);
    api.get_opt(keys::DAEMONSET).await
}

/// The label selector of the daemon pods (as `kubectl -l` takes it): the
/// DaemonSet's own when it exists.
pub fn pod_selector(ds: Option<&DaemonSet>) -> String {
    let labels = ds
        .and_then(|d| d.spec.as_ref())
        .and_then(|s| s.selector.match_labels.as_ref())
        .filter(|l| !l.is_empty());
    match labels {
        Some(l) => l
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(","),
        None => format!(
            "app.kubernetes.io/name={},app.kubernetes.io/component=node-daemon",
            keys::PRODUCT
        ),
    }
}

pub async fn daemon_pods(
    cluster: &Cluster,
    namespace: &str,
    ds: Option<&DaemonSet>,
) -> anyhow::Result<Vec<Pod>> {
    let api: Api<Pod> = Api::namespaced(cluster.client.clone(), namespace);
    let list = api
        .list(&ListParams::default().labels(&pod_selector(ds)))
        .await
        .explain(cluster, "list", "pods")?;
    Ok(list.items)
}

/// The daemon pods on `node`: the DaemonSet's selector and `spec.nodeName`,
/// so a large cluster answers with one or two pods.
pub async fn try_daemon_pods_on(
    cluster: &Cluster,
    namespace: &str,
    ds: &DaemonSet,
    node: &str,
) -> Result<Vec<Pod>, kube::Error> {
    let api: Api<Pod> = Api::namespaced(cluster.client.clone(), namespace);
    let params = ListParams::default()
        .labels(&pod_selector(Some(ds)))
        .fields(&format!("spec.nodeName={node}"));
    Ok(api.list(&params).await?.items)
}

pub fn pod_node(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref().and_then(|s| s.node_name.as_deref())
}

pub fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Does the DaemonSet schedule onto this node? Mirrors the manifest's node
/// affinity (no virtual nodes, Linux only); every taint is tolerated.
pub fn targeted(node: &Node) -> bool {
    !knode::is_virtual(node) && knode::os(node).is_none_or(|os| os == "linux")
}

/// DaemonSet rollout numbers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rollout {
    pub desired: i32,
    pub updated: i32,
    pub ready: i32,
    pub available: i32,
    /// The controller has seen the latest spec.
    pub observed: bool,
}

impl Rollout {
    pub fn of(ds: &DaemonSet) -> Rollout {
        let generation = ds.metadata.generation;
        let Some(st) = ds.status.as_ref() else {
            return Rollout::default();
        };
        let observed = match (generation, st.observed_generation) {
            (Some(g), Some(o)) => o >= g,
            (Some(_), None) => false,
            (None, _) => true,
        };
        Rollout {
            desired: st.desired_number_scheduled,
            updated: st.updated_number_scheduled.unwrap_or(0),
            ready: st.number_ready,
            available: st.number_available.unwrap_or(0),
            observed,
        }
    }

    pub fn complete(&self) -> bool {
        self.observed && self.updated >= self.desired && self.available >= self.desired
    }

    pub fn describe(&self) -> String {
        let d = self.desired;
        let mut s = format!(
            "{}/{d} updated, {}/{d} ready, {}/{d} available",
            self.updated, self.ready, self.available
        );
        if !self.observed {
            s.push_str(" (controller has not seen the new spec yet)");
        }
        s
    }
}

pub fn daemonset_image(ds: &DaemonSet) -> Option<&str> {
    ds.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.containers.iter().find(|c| c.name == keys::DAEMONSET))
        .and_then(|c| c.image.as_deref())
}

/// API groups the server serves (discovery).
pub async fn api_groups(cluster: &Cluster) -> anyhow::Result<BTreeSet<String>> {
    let groups =
        cluster
            .client
            .list_api_groups()
            .await
            .explain(cluster, "discover", "API groups")?;
    Ok(groups.groups.into_iter().map(|g| g.name).collect())
}

pub fn dynamic_api(cluster: &Cluster, info: &KindInfo, namespace: &str) -> Api<DynamicObject> {
    let (group, version) = match info.api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", info.api_version),
    };
    let gvk = GroupVersionKind::gvk(group, version, info.kind);
    let ar = ApiResource::from_gvk_with_plural(&gvk, info.plural);
    if info.namespaced {
        Api::namespaced_with(cluster.client.clone(), namespace, &ar)
    } else {
        Api::all_with(cluster.client.clone(), &ar)
    }
}

/// Has this node anything the add-on put there?
pub fn has_marks(node: &Node) -> bool {
    let label = node
        .metadata
        .labels
        .as_ref()
        .is_some_and(|l| l.contains_key(keys::ACCELERATED_LABEL));
    let annotation = node.metadata.annotations.as_ref().is_some_and(|a| {
        a.contains_key(keys::NODE_STATUS_ANNOTATION)
            || a.contains_key(keys::UNLOAD_REQUEST_ANNOTATION)
    });
    label || annotation
}

pub fn state_name(status: &NodeStatus) -> String {
    serde_json::to_value(status.state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{:?}", status.state))
}

/// NODE, ACCELERATED, STATE, DAEMON, KERNEL, WHY for each node, from what its
/// daemon reported (label + status annotation).
pub const NODE_HEADER: &[&str] = &["NODE", "ACCELERATED", "STATE", "DAEMON", "KERNEL", "WHY"];

pub fn node_row(node: &Node, daemonset_exists: bool) -> Vec<String> {
    let kernel = knode::kernel_version(node).unwrap_or("-").to_string();
    let name = name(node).to_string();
    match NodeStatus::of(node) {
        Some(Ok(st)) => {
            let accelerated = if st.state.accelerated() { "yes" } else { "no" };
            let mut why = st.reason.clone();
            if !st.failed_checks.is_empty() {
                why.push_str(&format!(" [failed: {}]", st.failed_checks.join("; ")));
            }
            let kernel = if st.kernel.is_empty() {
                kernel
            } else {
                st.kernel.clone()
            };
            vec![
                name,
                accelerated.into(),
                state_name(&st),
                st.daemon_version.clone(),
                kernel,
                why,
            ]
        }
        Some(Err(e)) => vec![
            name,
            "unknown".into(),
            "-".into(),
            "-".into(),
            kernel,
            format!(
                "unreadable {} annotation: {e}",
                keys::NODE_STATUS_ANNOTATION
            ),
        ],
        None if !targeted(node) => {
            let why = match knode::eligibility(node) {
                knode::Eligibility::NotEligible(why) => why,
                knode::Eligibility::Eligible => "not a Linux node".into(),
            };
            vec![
                name,
                "no".into(),
                "no daemon".into(),
                "-".into(),
                kernel,
                format!("the DaemonSet does not run here: {why}"),
            ]
        }
        None => {
            let why = if daemonset_exists {
                "its daemon has not reported yet"
            } else {
                "the add-on is not installed"
            };
            vec![
                name,
                "-".into(),
                "not reported".into(),
                "-".into(),
                kernel,
                why.into(),
            ]
        }
    }
}
