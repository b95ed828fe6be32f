//! `uninstall`: drain first, delete after. Every node whose daemon reported
//! gets an unload request (a fresh token); only when each has answered
//! `unloaded` with that token are the objects deleted, so no live connection
//! loses its datapath while bytes are still queued in it. A refusal or a
//! timeout stops before anything is deleted.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams};
use serde_json::json;

use accel_k8s::keys;
use accel_k8s::node::{NodeState, NodeStatus};

use crate::cluster::{Cluster, Explain, transient};
use crate::manifests::{self, KINDS, MONITORING_GROUP};
use crate::nodes;
use crate::{Ui, exit};

pub struct Options {
    pub namespace: String,
    pub timeout: Duration,
    pub poll: Duration,
    pub force: bool,
}

/// A fresh token per run, so an answer to an earlier request never counts.
fn token() -> String {
    let mut bytes = [0u8; 12];
    let random = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if random.is_err() {
        // Unique enough without a random source: time and pid.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let mixed = nanos ^ (u128::from(std::process::id()) << 64);
        bytes.copy_from_slice(&mixed.to_le_bytes()[..12]);
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A node's answer to this run's request.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    Pending(String),
    Unloaded,
    Refused(String),
    Gone,
}

fn answer(node: Option<&Node>, token: &str) -> Answer {
    let Some(node) = node else {
        return Answer::Gone;
    };
    match NodeStatus::of(node) {
        Some(Ok(st)) if st.unload_token.as_deref() == Some(token) => match st.state {
            NodeState::Unloaded => Answer::Unloaded,
            NodeState::UnloadRefused => Answer::Refused(st.reason),
            _ => Answer::Pending(nodes::state_name(&st)),
        },
        Some(Ok(st)) => Answer::Pending(nodes::state_name(&st)),
        Some(Err(e)) => Answer::Pending(format!("unreadable status: {e}")),
        None => Answer::Pending("no status".into()),
    }
}

fn node_params() -> PatchParams {
    PatchParams {
        field_manager: Some(keys::FIELD_MANAGER.to_string()),
        ..Default::default()
    }
}

pub async fn run(cluster: &Cluster, ui: &mut Ui<'_>, opts: &Options) -> anyhow::Result<i32> {
    let ns = opts.namespace.as_str();
    let groups = nodes::api_groups(cluster).await?;
    let monitoring = groups.contains(MONITORING_GROUP);
    // Which of the add-on's objects exist.
    let mut present = Vec::new();
    for info in KINDS.iter().rev() {
        if info.api_version.starts_with(MONITORING_GROUP) && !monitoring {
            continue;
        }
        let name = object_name(info.kind, ns);
        let found = nodes::dynamic_api(cluster, info, ns)
            .get_opt(&name)
            .await
            .explain(cluster, "get", info.plural)?;
        if found.is_some() {
            present.push((info, name));
        }
    }
    let all_nodes = nodes::list_nodes(cluster).await?;
    if present.is_empty() {
        let cleaned = clean_nodes(cluster, &all_nodes).await?;
        if cleaned.is_empty() {
            ui.line(format!(
                "nothing to uninstall (no add-on objects in namespace {ns}, no node marks)"
            ));
        } else {
            ui.line(format!(
                "nothing to uninstall; removed leftover {} label/annotations from {}",
                keys::PRODUCT,
                cleaned.join(", ")
            ));
        }
        return Ok(exit::OK);
    }

    let ds = nodes::daemonset(cluster, ns).await?;
    let mut unreported = Vec::new();
    if ds.is_some() {
        let pods = nodes::daemon_pods(cluster, ns, ds.as_ref()).await?;
        let with_pod: BTreeSet<&str> = pods.iter().filter_map(nodes::pod_node).collect();
        let reported: BTreeSet<&str> = all_nodes
            .iter()
            .filter(|n| NodeStatus::of(n).is_some())
            .map(nodes::name)
            .collect();
        unreported = with_pod
            .difference(&reported)
            .map(|s| s.to_string())
            .collect();
        let targets: Vec<&str> = reported.union(&with_pod).copied().collect();
        if !targets.is_empty() {
            let token = token();
            let code = handshake(cluster, ui, opts, &targets, &reported, &token).await?;
            if code != exit::OK {
                return Ok(code);
            }
        }
    } else {
        for node in &all_nodes {
            if let Some(Ok(st)) = NodeStatus::of(node)
                && st.state.accelerated()
            {
                ui.warn(format!(
                    "node {} reported state {} but no DaemonSet is left to unload it: \
                     run `accel-daemon unload` on it if pins remain under /sys/fs/bpf",
                    nodes::name(node),
                    nodes::state_name(&st)
                ));
            }
        }
    }

    // The DaemonSet first: its pods must be gone before the unload request is
    // lifted, or a terminating daemon would see it vanish and attach again.
    for (info, name) in &present {
        let deleted = nodes::dynamic_api(cluster, info, ns)
            .delete(name, &DeleteParams::background())
            .await;
        match deleted {
            Ok(_) => ui.line(format!("deleted {}/{name}", info.kind)),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(cluster.explain(e, "delete", info.plural)),
        }
    }
    if !wait_pods_gone(cluster, ui, opts).await? {
        return Ok(exit::NOT_DONE);
    }
    let all_nodes = nodes::list_nodes(cluster).await?;
    let cleaned = clean_nodes(cluster, &all_nodes).await?;
    if !cleaned.is_empty() {
        ui.line(format!(
            "removed the {} label/annotations from {} node(s)",
            keys::PRODUCT,
            cleaned.len()
        ));
    }
    for node in &unreported {
        ui.warn(format!(
            "the daemon on node {node} never reported: if pins remain under /sys/fs/bpf there, \
             run `accel-daemon unload` on that node"
        ));
    }
    ui.line("uninstalled");
    Ok(exit::OK)
}

/// Names as the manifests give them (the Namespace is the chosen one).
fn object_name(kind: &str, namespace: &str) -> String {
    let opts = manifests::Options {
        namespace: namespace.to_string(),
        monitor: manifests::Monitor::None,
        ..Default::default()
    };
    let from_manifests = manifests::render(&opts).ok().and_then(|objs| {
        objs.into_iter()
            .find(|o| o["kind"] == kind)
            .and_then(|o| o["metadata"]["name"].as_str().map(str::to_string))
    });
    match (kind, from_manifests) {
        (_, Some(name)) => name,
        // The monitors are not in the base; both share the daemon's name.
        _ => keys::DAEMONSET.to_string(),
    }
}

/// Asks `targets` to unload and waits for the nodes that have reported
/// (`expected`) to answer. OK to go on, or NOT_DONE after explaining why not.
async fn handshake(
    cluster: &Cluster,
    ui: &mut Ui<'_>,
    opts: &Options,
    targets: &[&str],
    expected: &BTreeSet<&str>,
    token: &str,
) -> anyhow::Result<i32> {
    let api: Api<Node> = Api::all(cluster.client.clone());
    let request = json!({"metadata": {"annotations": {keys::UNLOAD_REQUEST_ANNOTATION: token}}});
    for node in targets {
        match api
            .patch(node, &node_params(), &Patch::Merge(&request))
            .await
        {
            Ok(_) => {}
            // Deleted meanwhile: nothing left to unload there.
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(cluster.explain(e, "patch", "nodes")),
        }
    }
    ui.line(format!(
        "asked {} node(s) to drain and unload the datapath (request {token})",
        targets.len()
    ));
    if expected.is_empty() {
        ui.line("no daemon has reported on any node: nothing to wait for");
        return Ok(exit::OK);
    }
    let start = Instant::now();
    let answers = loop {
        let listed = match nodes::try_list_nodes(cluster).await {
            Ok(listed) => listed,
            // Daemons keep draining while the API server is away; keep waiting for them.
            Err(e) if transient(&e) && start.elapsed() < opts.timeout => {
                ui.progress(&format!(
                    "unloading: {} (retrying)",
                    cluster.explain(e, "list", "nodes")
                ));
                tokio::time::sleep(opts.poll).await;
                continue;
            }
            Err(e) => return Err(cluster.explain(e, "list", "nodes")),
        };
        let current: BTreeMap<String, Node> = listed
            .into_iter()
            .map(|n| (nodes::name(&n).to_string(), n))
            .collect();
        let answers: BTreeMap<&str, Answer> = expected
            .iter()
            .map(|n| (*n, answer(current.get(*n), token)))
            .collect();
        let pending: Vec<&str> = answers
            .iter()
            .filter(|(_, a)| matches!(a, Answer::Pending(_)))
            .map(|(n, _)| *n)
            .collect();
        let unloaded = answers
            .values()
            .filter(|a| matches!(a, Answer::Unloaded | Answer::Gone))
            .count();
        let refused: Vec<&str> = answers
            .iter()
            .filter(|(_, a)| matches!(a, Answer::Refused(_)))
            .map(|(n, _)| *n)
            .collect();
        let mut line = format!("unloading: {unloaded}/{} node(s) unloaded", expected.len());
        if !refused.is_empty() {
            line.push_str(&format!(", refused by {}", refused.join(", ")));
        }
        if !pending.is_empty() {
            line.push_str(&format!(", waiting for {}", pending.join(", ")));
        }
        ui.progress(&line);
        if pending.is_empty() || start.elapsed() >= opts.timeout {
            break answers;
        }
        tokio::time::sleep(opts.poll.min(opts.timeout.saturating_sub(start.elapsed()))).await;
    };
    ui.end_progress();
    let mut problems = Vec::new();
    for (node, a) in &answers {
        match a {
            Answer::Unloaded => {}
            Answer::Gone => ui.warn(format!("node {node} was deleted during the uninstall")),
            Answer::Refused(why) => problems.push(format!("node {node} refused to unload: {why}")),
            Answer::Pending(state) => problems.push(format!(
                "node {node} did not answer within {}s (its state: {state})",
                opts.timeout.as_secs_f32()
            )),
        }
    }
    if problems.is_empty() {
        ui.line("every node unloaded its datapath");
        return Ok(exit::OK);
    }
    for p in &problems {
        ui.line(p);
    }
    if opts.force {
        ui.warn(
            "--force: deleting the add-on anyway; the nodes above keep their pinned datapath \
             until `accel-daemon unload` runs on them",
        );
        return Ok(exit::OK);
    }
    ui.line(
        "uninstall stopped before deleting anything. Nodes that unloaded stay idle while the \
         request is present. Retry `accel-installer uninstall` once the queues drain (or with a \
         longer --timeout), use `accel-installer uninstall --force` to delete anyway, or \
         `accel-installer install` to resume acceleration everywhere",
    );
    Ok(exit::NOT_DONE)
}

/// Waits for the daemon pods to terminate. False (after saying so) when
/// some remain: the unload request then stays so they stay idle.
async fn wait_pods_gone(
    cluster: &Cluster,
    ui: &mut Ui<'_>,
    opts: &Options,
) -> anyhow::Result<bool> {
    let start = Instant::now();
    loop {
        let pods = match nodes::daemon_pods(cluster, &opts.namespace, None).await {
            Ok(p) => p,
            Err(e) => return Err(e),
        };
        if pods.is_empty() {
            ui.end_progress();
            return Ok(true);
        }
        let on: Vec<&str> = pods.iter().filter_map(nodes::pod_node).collect();
        ui.progress(&format!(
            "waiting for {} daemon pod(s) to terminate",
            pods.len()
        ));
        if start.elapsed() >= opts.timeout {
            ui.end_progress();
            ui.line(format!(
                "daemon pods still terminating on {} after {}s; the unload request stays on the \
                 nodes so those daemons stay idle. Run `accel-installer uninstall` again to \
                 finish (it removes the node labels and annotations)",
                on.join(", "),
                opts.timeout.as_secs_f32()
            ));
            return Ok(false);
        }
        tokio::time::sleep(opts.poll).await;
    }
}

/// Removes the label and annotations of the add-on from every node that has
/// them; returns their names.
async fn clean_nodes(cluster: &Cluster, all: &[Node]) -> anyhow::Result<Vec<String>> {
    let api: Api<Node> = Api::all(cluster.client.clone());
    let patch = json!({"metadata": {
        "labels": {keys::ACCELERATED_LABEL: null},
        "annotations": {keys::NODE_STATUS_ANNOTATION: null, keys::UNLOAD_REQUEST_ANNOTATION: null},
    }});
    let mut cleaned = Vec::new();
    for node in all.iter().filter(|n| nodes::has_marks(n)) {
        let name = nodes::name(node);
        match api.patch(name, &node_params(), &Patch::Merge(&patch)).await {
            Ok(_) => cleaned.push(name.to_string()),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(cluster.explain(e, "patch", "nodes")),
        }
    }
    Ok(cleaned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_differ() {
        let (a, b) = (token(), token());
        assert_eq!(a.len(), 24);
        assert_ne!(a, b);
    }
}
