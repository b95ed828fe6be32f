//! A fake Kubernetes API server for tests: plain HTTP on 127.0.0.1, the real REST list/watch
//! protocol (resourceVersions, bookmarks, 410 Expired, Status errors), server-side apply, a
//! DaemonSet rollout simulator and fault injection. See README.md for what is simplified.
//!
//! All methods are synchronous: the server runs on its own tokio runtime, so they work from
//! plain `#[test]`s and from inside `#[tokio::test]`s alike.

mod controls;
mod exec;
pub mod fixtures;
mod http;
mod objects;
mod patch;
mod requests;
mod resources;
mod rollout;
mod selector;
mod shared;
mod status;
mod store;
mod util;

use std::io;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tokio::sync::{broadcast, oneshot};

pub use exec::{ExecExit, ExecHandler, ExecReply, ExecRequest};
pub use requests::{LoggedRequest, RequestCounts, RequestKey};
pub use rollout::RolloutMode;
pub(crate) use shared::{Control, Shared};
use store::State;

/// The user named in 403 Forbidden messages.
pub const FAKE_USER: &str = "system:serviceaccount:test:fake";

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
