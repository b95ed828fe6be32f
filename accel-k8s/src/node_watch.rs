//! The daemon's view of its own Node object, from a watch.
//!
//! The daemon needs one thing from its Node: the installer's unload request
//! ([`keys::UNLOAD_REQUEST_ANNOTATION`]). A watch with the field selector
//! `metadata.name=<node>` delivers it as soon as it is set, at a cost that
//! does not grow with time: one list at start, then one watch request per
//! server-side watch timeout (kube's default, 290 s), a re-list only after
//! 410 Gone or an outage. Polling it instead cost one GET per node every
//! 2 s (500 requests/s on 1,000 nodes).

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::{Api, Client, runtime::watcher};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::{
    keys, node,
    throttle::{Backoff, Throttle},
    watch::{hint, note_progress},
};

/// What the daemon knows of its Node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeView {
    /// A complete list has been received at least once.
    pub synced: bool,
    /// The Node object exists (as of the last list or event).
    pub exists: bool,
    /// The pending unload request's token.
    pub unload_request: Option<String>,
    /// The last list or watch error, until the next success.
    pub error: Option<String>,
}

impl NodeView {
    fn of(node: Option<&Node>) -> NodeView {
        NodeView {
            synced: true,
            exists: node.is_some(),
            unload_request: node.and_then(node::unload_request).map(str::to_string),
            error: None,
        }
    }
}

/// Starts watching the Node named `node`. The receiver always holds the
/// latest view, and changes only when the view does (a status write of the
/// daemon's own does not wake it).
pub fn spawn_node_watcher(client: Client, node: &str) -> watch::Receiver<NodeView> {
    let (tx, rx) = watch::channel(NodeView::default());
    let api: Api<Node> = Api::all(client);
    let config = watcher::Config::default().fields(&format!("metadata.name={node}"));
    let name = node.to_string();
    tokio::spawn(async move {
        let mut stream = watcher(api, config).boxed();
        let mut relist: Option<Option<Node>> = None;
        let mut quiet = Throttle::default();
        let mut backoff = Backoff::default();
        while let Some(event) = stream.next().await {
            if let Some(failures) = note_progress(&event, &mut quiet, &mut backoff) {
                info!(failures, "node watch recovered");
            }
            let next = match event {
                Ok(watcher::Event::Init) => {
                    relist = Some(None);
                    continue;
                }
                Ok(watcher::Event::InitApply(n)) => {
                    if n.metadata.name.as_deref() == Some(name.as_str()) {
                        relist = Some(Some(n));
                    }
                    continue;
                }
                Ok(watcher::Event::InitDone) => NodeView::of(relist.take().flatten().as_ref()),
                Ok(watcher::Event::Apply(n)) if n.metadata.name.as_deref() == Some(&name) => {
                    NodeView::of(Some(&n))
                }
                Ok(watcher::Event::Delete(n)) if n.metadata.name.as_deref() == Some(&name) => {
                    NodeView::of(None)
                }
                Ok(_) => continue,
                Err(e) => {
                    let hint = match hint(&e) {
                        h if h.contains("may not list/watch pods") => {
                            "the daemon's service account may not list/watch nodes: check ClusterRole sidecar-accel-daemon (nodes get/list/watch/patch) and its binding"
                        }
                        h => h,
                    };
                    if let Some(r) = quiet.failure() {
                        warn!(error = %e, hint, failures = r.failures, suppressed = r.suppressed,
                            "node watch failed; an uninstall request is seen once it is back (logged at most once a minute)");
                    }
                    let mut v = tx.borrow().clone();
                    v.error = Some(e.to_string());
                    v
                }
            };
            let failed = next.error.is_some();
            tx.send_if_modified(|cur| {
                if *cur == next {
                    return false;
                }
                if cur.unload_request != next.unload_request && next.synced {
                    info!(
                        request = ?next.unload_request,
                        annotation = keys::UNLOAD_REQUEST_ANNOTATION,
                        "unload request changed on this node"
                    );
                }
                *cur = next;
                true
            });
            if tx.is_closed() {
                // Nobody listens any more: the daemon is shutting down.
                break;
            }
            if failed {
                // The watcher retries when polled again: that is the backoff.
                tokio::time::sleep(backoff.next_delay()).await;
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn view_reads_the_unload_request() {
        let mut n = Node::default();
        n.metadata.name = Some("n1".into());
        assert_eq!(
            NodeView::of(Some(&n)),
            NodeView {
                synced: true,
                exists: true,
                unload_request: None,
                error: None
            }
        );
        n.metadata.annotations = Some(BTreeMap::from([(
            keys::UNLOAD_REQUEST_ANNOTATION.to_string(),
            "tok".to_string(),
        )]));
        assert_eq!(
            NodeView::of(Some(&n)).unload_request.as_deref(),
            Some("tok")
        );
        assert!(!NodeView::of(None).exists);
    }
}
