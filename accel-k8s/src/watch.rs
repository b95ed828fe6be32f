//! The daemon's view of the meshed pods on its node, from a Kubernetes watch.
//!
//! The watch never blocks the datapath: it runs on its own task, re-lists
//! with backoff after errors (410 Gone, API server down, RBAC), and publishes
//! complete views. Until the first complete list arrives the view says so,
//! and the daemon leaves its maps as they are (a restarted daemon keeps the
//! last state while the API server is unreachable).

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::{Api, Client, runtime::watcher};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::{
    mesh::{self, PodClass},
    throttle::{Backoff, Throttle},
};

/// Every pod of the node, classified.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodView {
    /// A complete list has been received at least once.
    pub synced: bool,
    /// By `namespace/name`.
    pub pods: BTreeMap<String, PodClass>,
}

impl PodView {
    pub fn meshed(&self) -> impl Iterator<Item = &mesh::MeshedPod> {
        self.pods.values().filter_map(PodClass::meshed)
    }

    /// Meshed pods with an annotation that cannot be honoured (kept on TCP,
    /// or on their last good mode), with the reason.
    pub fn invalid(&self) -> impl Iterator<Item = (&String, &String)> {
        self.pods
            .iter()
            .filter_map(|(k, c)| c.problem().map(|why| (k, why)))
    }
}

/// Health of the watch, for metrics and status.
#[derive(Debug, Default)]
pub struct WatchHealth {
    /// Errors from list or watch calls (each is followed by a backed-off retry).
    pub errors: AtomicU64,
    pub last_error: Mutex<Option<String>>,
}

impl WatchHealth {
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }
}

fn key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

/// What an operator should look at, by the API server's answer.
pub fn hint(e: &watcher::Error) -> &'static str {
    let code = match e {
        watcher::Error::InitialListFailed(k)
        | watcher::Error::WatchStartFailed(k)
        | watcher::Error::WatchFailed(k) => match k {
            kube::Error::Api(status) => Some(status.code),
            _ => None,
        },
        watcher::Error::WatchError(status) => Some(status.code),
        watcher::Error::NoResourceVersion => None,
    };
    match code {
        Some(401) => "the API server refused the service account token",
        Some(403) => {
            "the daemon's service account may not list/watch pods: check ClusterRole sidecar-accel-daemon (pods get/list/watch) and its binding"
        }
        Some(410) => "the watch history expired; re-listing",
        Some(_) => "the API server answered with an error",
        None => "the API server is unreachable or the connection broke",
    }
}

/// Notes an item of a watch stream in its retry state. Any item but an error
/// or `Init` is progress (`Init` comes before every re-list attempt: not a
/// sign of health): the backoff starts over, and `Some(failures)` says that
/// it ends an outage, for the caller to log.
pub(crate) fn note_progress<K>(
    event: &Result<watcher::Event<K>, watcher::Error>,
    quiet: &mut Throttle,
    backoff: &mut Backoff,
) -> Option<u64> {
    if !matches!(event, Ok(e) if !matches!(e, watcher::Event::Init)) {
        return None;
    }
    backoff.reset();
    quiet.success()
}

/// Starts watching the pods scheduled to `node`. The returned receiver
/// always holds the latest complete view.
pub fn spawn_pod_watcher(
    client: Client,
    node: &str,
) -> (watch::Receiver<Arc<PodView>>, Arc<WatchHealth>) {
    let (tx, rx) = watch::channel(Arc::new(PodView::default()));
    let health = Arc::new(WatchHealth::default());
    let api: Api<Pod> = Api::all(client);
    // Only this node's pods: the API server filters, so a big cluster costs
    // the daemon nothing.
    let config = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
    let h = health.clone();
    tokio::spawn(async move {
        let mut stream = watcher(api, config).boxed();
        let mut view = PodView::default();
        let mut relist: Option<BTreeMap<String, PodClass>> = None;
        let mut quiet = Throttle::default();
        let mut backoff = Backoff::default();
        while let Some(event) = stream.next().await {
            if let Some(failures) = note_progress(&event, &mut quiet, &mut backoff) {
                info!(failures, "pod watch recovered");
            }
            let changed = match event {
                Ok(watcher::Event::Init) => {
                    relist = Some(BTreeMap::new());
                    false
                }
                Ok(watcher::Event::InitApply(pod)) => {
                    let class = mesh::classify(&pod).after(view.pods.get(&key(&pod)));
                    relist
                        .get_or_insert_with(BTreeMap::new)
                        .insert(key(&pod), class);
                    false
                }
                Ok(watcher::Event::InitDone) => {
                    // Pods absent from the new list are gone, whatever events
                    // were missed while the watch was down.
                    let pods = relist.take().unwrap_or_default();
                    let changed = !view.synced || view.pods != pods;
                    if !view.synced {
                        info!(pods = pods.len(), "pod list received from the API server");
                    }
                    view.pods = pods;
                    view.synced = true;
                    changed
                }
                Ok(watcher::Event::Apply(pod)) => {
                    let class = mesh::classify(&pod).after(view.pods.get(&key(&pod)));
                    debug!(pod = %key(&pod), ?class, "pod changed");
                    view.pods.insert(key(&pod), class.clone()) != Some(class)
                }
                Ok(watcher::Event::Delete(pod)) => {
                    debug!(pod = %key(&pod), "pod deleted");
                    view.pods.remove(&key(&pod)).is_some()
                }
                Err(e) => {
                    h.errors.fetch_add(1, Ordering::Relaxed);
                    if let Some(r) = quiet.failure() {
                        warn!(error = %e, hint = hint(&e), failures = r.failures, suppressed = r.suppressed,
                            "pod watch failed; keeping the last state and retrying with backoff (logged at most once a minute)");
                    }
                    if let Ok(mut last) = h.last_error.lock() {
                        *last = Some(e.to_string());
                    }
                    // The watcher retries when polled again: that is the backoff.
                    tokio::time::sleep(backoff.next_delay()).await;
                    false
                }
            };
            if changed && view.synced && tx.send(Arc::new(view.clone())).is_err() {
                // Nobody listens any more: the daemon is shutting down.
                break;
            }
        }
    });
    (rx, health)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_is_any_item_but_an_error_or_init() {
        let mut quiet = Throttle::default();
        let mut backoff = Backoff::default();
        quiet.failure();
        let init: Result<watcher::Event<Pod>, _> = Ok(watcher::Event::Init);
        assert_eq!(note_progress(&init, &mut quiet, &mut backoff), None);
        let err: Result<watcher::Event<Pod>, _> = Err(watcher::Error::NoResourceVersion);
        assert_eq!(note_progress(&err, &mut quiet, &mut backoff), None);
        assert_eq!(quiet.failures(), 1, "the outage goes on");
        let done: Result<watcher::Event<Pod>, _> = Ok(watcher::Event::InitDone);
        assert_eq!(note_progress(&done, &mut quiet, &mut backoff), Some(1));
        assert_eq!(note_progress(&done, &mut quiet, &mut backoff), None);
    }
}
