//! `status`: per node, accelerated or not and why; the DaemonSet's image and
//! rollout; the installer's version. Reads only.

use accel_k8s::keys;

use crate::cluster::Cluster;
use crate::nodes::{self, Rollout};
use crate::{Ui, exit};

pub async fn run(cluster: &Cluster, ui: &mut Ui<'_>, namespace: &str) -> anyhow::Result<i32> {
    ui.line(format!(
        "installer: accel-installer {}",
        env!("CARGO_PKG_VERSION")
    ));
    let ds = nodes::daemonset(cluster, namespace).await?;
    match &ds {
        Some(ds) => {
            let r = Rollout::of(ds);
            let state = if r.complete() {
                "complete"
            } else {
                "in progress"
            };
            ui.line(format!(
                "daemonset: {namespace}/{} image {}",
                keys::DAEMONSET,
                nodes::daemonset_image(ds).unwrap_or("?")
            ));
            ui.line(format!("rollout: {state}: {}", r.describe()));
        }
        None => ui.line(format!(
            "daemonset: not installed (no DaemonSet {namespace}/{})",
            keys::DAEMONSET
        )),
    }
    ui.blank();
    let nodes = nodes::list_nodes(cluster).await?;
    let rows: Vec<Vec<String>> = nodes
        .iter()
        .map(|n| nodes::node_row(n, ds.is_some()))
        .collect();
    ui.table(nodes::NODE_HEADER, &rows);
    let accelerated = rows.iter().filter(|r| r[1] == "yes").count();
    ui.line(format!(
        "{accelerated} of {} node(s) accelerated",
        nodes.len()
    ));
    Ok(exit::OK)
}
