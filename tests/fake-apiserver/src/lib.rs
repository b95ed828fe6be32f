//! A fake Kubernetes API server for tests: plain HTTP on 127.0.0.1, the real REST list/watch
//! protocol (resourceVersions, bookmarks, 410 Expired, Status errors), server-side apply, a
//! DaemonSet rollout simulator and fault injection. See README.md for what is simplified.
//!
//! All methods are synchronous: the server runs on its own tokio runtime, so they work from
//! plain `#[test]`s and from inside `#[tokio::test]`s alike.

mod exec;
pub mod fixtures;
mod http;
mod patch;
mod resources;
mod rollout;
mod selector;
mod status;
mod store;
mod util;

use std::io;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::{broadcast, oneshot};

pub use exec::{ExecExit, ExecHandler, ExecReply, ExecRequest};
pub use rollout::RolloutMode;
use store::{State, WriteKind};

/// The user named in 403 Forbidden messages.
pub const FAKE_USER: &str = "system:serviceaccount:test:fake";

/// One HTTP request as the server received it.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedRequest {
    pub method: String,
    pub path: String,
    /// Decoded query parameters in order.
    pub query: Vec<(String, String)>,
    /// Media type without parameters, e.g. `application/apply-patch+yaml`.
    pub content_type: Option<String>,
    pub field_manager: Option<String>,
    pub body: Option<Value>,
    /// The `User-Agent` header: which client sent it, where clients set one.
    pub user_agent: Option<String>,
}

/// What [`FakeApiServer::request_counts`] counts by.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestKey {
    /// The `User-Agent` header, "" when absent.
    pub client: String,
    /// The API verb (get, list, watch, create, update, patch, delete, deletecollection);
    /// for discovery and unroutable paths the lower-case HTTP method.
    pub verb: String,
    /// The URL path without the query.
    pub path: String,
}

/// Requests received, by client, verb and path. Unlike [`FakeApiServer::requests`] it keeps
/// no bodies: cheap enough for load tests with thousands of clients.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestCounts(pub std::collections::BTreeMap<RequestKey, u64>);

impl RequestCounts {
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    /// Totals by verb.
    pub fn by_verb(&self) -> std::collections::BTreeMap<String, u64> {
        let mut out = std::collections::BTreeMap::new();
        for (k, n) in &self.0 {
            *out.entry(k.verb.clone()).or_default() += n;
        }
        out
    }

    /// Totals by client (User-Agent).
    pub fn by_client(&self) -> std::collections::BTreeMap<String, u64> {
        let mut out = std::collections::BTreeMap::new();
        for (k, n) in &self.0 {
            *out.entry(k.client.clone()).or_default() += n;
        }
        out
    }

    /// Totals by verb and path.
    pub fn by_path(&self) -> std::collections::BTreeMap<(String, String), u64> {
        let mut out = std::collections::BTreeMap::new();
        for (k, n) in &self.0 {
            *out.entry((k.verb.clone(), k.path.clone())).or_default() += n;
        }
        out
    }

    /// The requests counted here and not in `earlier` (a snapshot taken before).
    pub fn since(&self, earlier: &RequestCounts) -> RequestCounts {
        RequestCounts(
            self.0
                .iter()
                .filter_map(|(k, n)| {
                    let d = n - earlier.0.get(k).copied().unwrap_or(0).min(*n);
                    (d > 0).then(|| (k.clone(), d))
                })
                .collect(),
        )
    }
}

impl LoggedRequest {
    /// The first value of query parameter `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Control {
    Bookmark,
    Break,
}

pub(crate) struct Shared {
    state: Mutex<State>,
    control_tx: broadcast::Sender<Control>,
    open_watches: AtomicUsize,
    bookmark_ms: AtomicU64,
    handle: tokio::runtime::Handle,
    execs: Mutex<exec::Execs>,
}

impl Shared {
    /// The state lock; a panicking test thread must not wedge the server for the others.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn bookmark_interval(&self) -> Duration {
        Duration::from_millis(self.bookmark_ms.load(Ordering::Relaxed).max(10))
    }

    /// Start the Gradual rollouts queued by writes (spawned outside the state lock).
    fn flush_rollouts(self: &Arc<Self>) {
        let (pending, mode) = {
            let mut st = self.lock();
            (std::mem::take(&mut st.pending_rollouts), st.rollout)
        };
        let RolloutMode::Gradual { per_step } = mode else {
            return;
        };
        for (key, epoch) in pending {
            let sh = self.clone();
            self.handle.spawn(async move {
                loop {
                    tokio::time::sleep(per_step).await;
                    if !sh.lock().rollout_step(&key, epoch) {
                        break;
                    }
                }
            });
        }
    }
}

struct Running {
    stop_tx: oneshot::Sender<()>,
    done_rx: std::sync::mpsc::Receiver<()>,
}

/// The fake API server; dropping it stops the server and its runtime.
pub struct FakeApiServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    running: Mutex<Option<Running>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl FakeApiServer {
    /// Listen on an ephemeral 127.0.0.1 port. The store starts with the namespaces a fresh
    /// cluster has (default, kube-system, kube-public, kube-node-lease) and no nodes.
    pub fn start() -> io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("fake-apiserver")
            .enable_all()
            .build()?;
        let (events_tx, _) = broadcast::channel(store::HISTORY_MAX);
        let (control_tx, _) = broadcast::channel(64);
        let shared = Arc::new(Shared {
            state: Mutex::new(State::new(events_tx)),
            control_tx,
            open_watches: AtomicUsize::new(0),
            bookmark_ms: AtomicU64::new(1000),
            handle: runtime.handle().clone(),
            execs: exec::new_execs(),
        });
        let listener = StdListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let server = FakeApiServer {
            shared,
            addr,
            running: Mutex::new(None),
            runtime: Some(runtime),
        };
        server.serve(listener)?;
        Ok(server)
    }

    fn serve(&self, listener: StdListener) -> io::Result<()> {
        listener.set_nonblocking(true)?;
        let listener = {
            let _guard = self.shared.handle.enter();
            tokio::net::TcpListener::from_std(listener)?
        };
        let (stop_tx, stop_rx) = oneshot::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let shared = self.shared.clone();
        self.shared
            .handle
            .spawn(accept_loop(shared, listener, stop_rx, done_tx));
        *self.running.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(Running { stop_tx, done_rx });
        Ok(())
    }

    /// Enable the monitoring.coreos.com/v1 group (ServiceMonitor, PodMonitor), as if the
    /// Prometheus operator's CRDs were installed.
    pub fn with_prometheus_operator(self) -> Self {
        self.set_prometheus_operator(true);
        self
    }

    pub fn set_prometheus_operator(&self, enabled: bool) {
        self.shared.lock().prometheus = enabled;
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Write a kubeconfig whose cluster, user and context are all named `context` and whose
    /// current-context is `context`. JSON is valid YAML, so any kubeconfig reader accepts it.
    pub fn write_kubeconfig(&self, path: &Path, context: &str) -> io::Result<()> {
        let cfg = json!({
            "apiVersion": "v1",
            "kind": "Config",
            "preferences": {},
            "clusters": [{"name": context, "cluster": {"server": self.url()}}],
            "users": [{"name": context, "user": {}}],
            "contexts": [{"name": context, "context": {"cluster": context, "user": context, "namespace": "default"}}],
            "current-context": context,
        });
        let text = serde_json::to_string_pretty(&cfg).map_err(io::Error::other)?;
        std::fs::write(path, text)
    }

    /// A client config pointing at this server (no TLS, no auth, default namespace "default").
    pub fn kube_config(&self) -> kube::Config {
        // The URL is built from a SocketAddr, so it always parses.
        let uri: axum::http::Uri = self.url().parse().expect("loopback URL parses");
        kube::Config::new(uri)
    }

    fn resolve(api_version: &str, kind: &str) -> usize {
        resources::by_kind(api_version, kind)
            .unwrap_or_else(|| panic!("fake apiserver does not serve {api_version} {kind}"))
    }

    /// Create or replace `obj` (must carry apiVersion, kind, metadata.name and for namespaced
    /// kinds metadata.namespace, else "default"), firing ADDED/MODIFIED to watchers. Status is
    /// stored as given; uid/creationTimestamp are filled in when absent. Returns the stored
    /// object. Panics on a kind the server does not serve or a nameless object (test bugs).
    pub fn upsert(&self, obj: Value) -> Value {
        let api_version = obj
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let kind = obj.get("kind").and_then(Value::as_str).unwrap_or_default();
        let res = Self::resolve(api_version, kind);
        let ns = obj
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .map(str::to_string);
        let out = self
            .shared
            .lock()
            .write(res, ns.as_deref(), obj, WriteKind::Raw, false)
            .unwrap_or_else(|e| panic!("upsert failed: {}", e.message));
        self.shared.flush_rollouts();
        out
    }

    /// Delete an object (a Namespace takes its contents along); false when it was absent.
    pub fn delete(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> bool {
        let res = Self::resolve(api_version, kind);
        let key = State::key_for(res, namespace, name);
        let ok = self.shared.lock().delete(&key).is_ok();
        self.shared.flush_rollouts();
        ok
    }

    pub fn get(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        let res = Self::resolve(api_version, kind);
        let key = State::key_for(res, namespace, name);
        self.shared.lock().objects.get(&key).cloned()
    }

    /// All objects of a kind, in every namespace, ordered by namespace then name.
    pub fn list(&self, api_version: &str, kind: &str) -> Vec<Value> {
        let res = Self::resolve(api_version, kind);
        self.shared
            .lock()
            .objects
            .iter()
            .filter(|(k, _)| k.res == res)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// The current cluster-wide resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.lock().rv
    }

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

    /// Close the listener and every connection (open watches are cut): clients get
    /// "connection refused" until `restart`. The store is kept and stays writable via the
    /// test methods. Idempotent.
    pub fn stop(&self) {
        let running = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let _ = self.shared.control_tx.send(Control::Break);
        if let Some(r) = running {
            let _ = r.stop_tx.send(());
            // The accept loop confirms once the socket is closed and connections are aborted.
            let _ = r.done_rx.recv_timeout(Duration::from_secs(10));
        }
        // Watch tasks notice the cut asynchronously; callers expect none left once we return.
        let end = std::time::Instant::now() + Duration::from_secs(5);
        while self.open_watches() > 0 && std::time::Instant::now() < end {
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Listen again on the same port after `stop` (retries briefly while the port is busy).
    pub fn restart(&self) -> io::Result<()> {
        if self.is_running() {
            return Ok(());
        }
        let mut last = None;
        for _ in 0..100 {
            match StdListener::bind(self.addr) {
                Ok(l) => return self.serve(l),
                Err(e) => {
                    last = Some(e);
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("rebind failed")))
    }

    pub fn is_running(&self) -> bool {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
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

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.shared.lock().requests.clone()
    }

    pub fn clear_requests(&self) {
        self.shared.lock().requests.clear();
    }

    /// Requests received since the start (or `reset_request_counts`), by client, verb and path.
    pub fn request_counts(&self) -> RequestCounts {
        RequestCounts(self.shared.lock().counts.clone())
    }

    pub fn reset_request_counts(&self) {
        self.shared.lock().counts.clear();
    }

    /// Keep the full request log (`requests()`, on by default). Load tests turn it off and
    /// read `request_counts()` instead.
    pub fn set_request_log(&self, on: bool) {
        let mut st = self.shared.lock();
        st.log_requests = on;
        if !on {
            st.requests.clear();
        }
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

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.stop();
        if let Some(rt) = self.runtime.take() {
            // Non-blocking, so dropping the server inside a #[tokio::test] is fine.
            rt.shutdown_background();
        }
    }
}

async fn accept_loop(
    shared: Arc<Shared>,
    listener: tokio::net::TcpListener,
    mut stop_rx: oneshot::Receiver<()>,
    done_tx: std::sync::mpsc::Sender<()>,
) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stop_rx => break,
            accepted = listener.accept() => match accepted {
                Ok((sock, _)) => {
                    let sh = shared.clone();
                    conns.spawn(async move {
                        let svc = hyper::service::service_fn(move |req| http::handle(sh.clone(), req));
                        let io = hyper_util::rt::TokioIo::new(sock);
                        // Upgrades: exec switches the connection to WebSocket.
                        if let Err(e) = hyper::server::conn::http1::Builder::new()
                            .serve_connection(io, svc)
                            .with_upgrades()
                            .await
                        {
                            tracing::debug!(error = %e, "fake apiserver connection ended");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "fake apiserver accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(listener);
    conns.abort_all();
    while conns.join_next().await.is_some() {}
    let _ = done_tx.send(());
}
