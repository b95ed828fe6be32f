//! Test controls on a running server: RBAC refusals and outages, watch streams, their
//! bookmarks and event history, the DaemonSet rollout mode, and what `pods/exec` runs.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::{Control, ExecReply, ExecRequest, FakeApiServer, RolloutMode, store};

impl FakeApiServer {
    /// Answer `verb` (get, list, watch, create, update, patch, delete, deletecollection, or
    /// "*") on `resource` (plural, e.g. "nodes", or "daemonsets/status") with 403 Forbidden.
    pub fn forbid(&self, verb: &str, resource: &str) {
        self.shared
            .lock()
            .forbidden
            .insert((verb.to_string(), resource.to_string()));
    }

    /// Undo one `forbid`.
    pub fn allow(&self, verb: &str, resource: &str) {
        self.shared
            .lock()
            .forbidden
            .remove(&(verb.to_string(), resource.to_string()));
    }

    pub fn clear_forbidden(&self) {
        self.shared.lock().forbidden.clear();
    }

    /// While true every request (discovery included) gets 503 ServiceUnavailable.
    pub fn unavailable(&self, on: bool) {
        self.shared.lock().unavailable = on;
    }

    /// End every open watch stream cleanly (the client sees EOF and must re-watch).
    pub fn break_watches(&self) {
        let _ = self.shared.control_tx.send(Control::Break);
    }

    /// Drop the whole event history: a watch from any resourceVersion older than the current
    /// one gets an ERROR event with a 410 Expired Status, as after etcd compaction.
    pub fn compact(&self) {
        let mut st = self.shared.lock();
        st.history.clear();
        st.compacted_rv = st.rv;
    }

    /// Keep only the last `events` events for watch replay (default 4096, at least 1); older
    /// resourceVersions then get 410 Expired, as on a busy real cluster.
    pub fn set_history_limit(&self, events: usize) {
        let mut st = self.shared.lock();
        st.history_limit = events.clamp(1, store::HISTORY_MAX);
        while st.history.len() > st.history_limit {
            if let Some(dropped) = st.history.pop_front() {
                st.compacted_rv = dropped.rv;
            }
        }
    }

    /// Send a BOOKMARK now on every watch that asked for bookmarks.
    pub fn bookmark_now(&self) {
        let _ = self.shared.control_tx.send(Control::Bookmark);
    }

    /// Period of the automatic bookmarks on watches opened from now on (default 1 s).
    pub fn set_bookmark_interval(&self, every: Duration) {
        self.shared
            .bookmark_ms
            .store(every.as_millis().max(1) as u64, Ordering::Relaxed);
    }

    /// How DaemonSet status evolves after later writes (default `Instant`).
    pub fn set_rollout(&self, mode: RolloutMode) {
        self.shared.lock().rollout = mode;
    }

    /// Decide what `pods/exec` "runs": `handler` gets each exec that passed the server's
    /// checks and returns what the command prints and how it ends. Without one, every exec
    /// ends with an `InternalError` Status saying so.
    pub fn set_exec_handler(
        &self,
        handler: impl Fn(&ExecRequest) -> ExecReply + Send + Sync + 'static,
    ) {
        self.shared.execs().handler = Some(Arc::new(handler));
    }

    /// Every exec the server accepted (checks passed, connection upgraded), oldest first.
    pub fn exec_requests(&self) -> Vec<ExecRequest> {
        self.shared.execs().log.clone()
    }

    /// Watch streams currently open.
    pub fn open_watches(&self) -> usize {
        self.shared.open_watches.load(Ordering::SeqCst)
    }
}
