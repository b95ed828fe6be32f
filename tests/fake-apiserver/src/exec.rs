//! `pods/exec` over WebSocket, the way kube's `Api::<Pod>::exec` and `kubectl exec` speak it:
//! a GET upgraded to `v5.channel.k8s.io` (or `v4.channel.k8s.io`), binary frames whose first
//! byte is the channel (1 stdout, 2 stderr, 3 the exit `metav1.Status`).
//!
//! No container runs: a test's [`ExecHandler`] decides what the command prints and how it
//! ends. The checks before the upgrade are the real API server's and kubelet's: RBAC, the pod,
//! its node and phase, the container and the command. RBAC as since Kubernetes 1.35: the
//! upgrade is a GET, authorized as `get` on `pods/exec`, and then also as `create`
//! (`AuthorizePodWebsocketUpgradeCreatePermission`, on by default); servers before 1.35 check
//! only `get`.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use futures_util::{SinkExt, StreamExt};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::{Message, handshake::derive_accept_key, protocol::Role};

use crate::http::{Params, error_response, forbidden_response};
use crate::resources::RESOURCES;
use crate::status::ApiError;
use crate::store::{State, res_index};
use crate::{Control, Shared};

/// The subprotocols served, preferred first.
const PROTOCOLS: [&str; 2] = ["v5.channel.k8s.io", "v4.channel.k8s.io"];
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const STATUS: u8 = 3;
/// Output goes out in frames of at most this many bytes, as a kubelet's do.
const CHUNK: usize = 4096;

/// One exec the server accepted (every check passed, the connection upgraded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecRequest {
    pub namespace: String,
    pub pod: String,
    /// The `container` parameter, or the pod's only container when it was left out.
    pub container: String,
    pub command: Vec<String>,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
    /// The subprotocol agreed on.
    pub protocol: String,
}

/// How the fake command ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecExit {
    /// It ran and exited with this code: `Success`, or the kubelet's `NonZeroExitCode` Status.
    Code(i32),
    /// The runtime could not start it (say, not in `$PATH`): an `InternalError` Status with
    /// this message.
    Error(String),
    /// The connection closes without a Status, as when a proxy in between drops it.
    Dropped,
}

/// What the fake command prints and how it ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecReply {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit: ExecExit,
}

impl ExecReply {
    pub fn exit(code: i32, stdout: impl Into<Vec<u8>>, stderr: impl Into<Vec<u8>>) -> Self {
        ExecReply {
            stdout: stdout.into(),
            stderr: stderr.into(),
            exit: ExecExit::Code(code),
        }
    }
}

/// Decides the reply to each exec; runs on a blocking thread.
pub type ExecHandler = Arc<dyn Fn(&ExecRequest) -> ExecReply + Send + Sync>;

#[derive(Default)]
pub(crate) struct Execs {
    pub handler: Option<ExecHandler>,
    pub log: Vec<ExecRequest>,
}

/// `namespace` and `pod` when `segs` is `/api/v1/namespaces/{ns}/pods/{name}/exec`.
pub(crate) fn target<'a>(segs: &[&'a str]) -> Option<(&'a str, &'a str)> {
    match segs {
        ["api", "v1", "namespaces", ns, "pods", name, "exec"] => Some((ns, name)),
        _ => None,
    }
}

/// Answers an exec request: an error Status, or 101 Switching Protocols with the session
/// started on the upgraded connection.
pub(crate) fn respond(
    shared: &Arc<Shared>,
    (ns, name): (&str, &str),
    params: &Params,
    headers: &HeaderMap,
    upgrade: Option<OnUpgrade>,
) -> Response<Body> {
    let pods = res_index("Pod");
    let def = &RESOURCES[pods];
    for verb in ["get", "create"] {
        if let Some(r) = forbidden_response(shared, verb, def, "pods/exec", Some(ns), name) {
            return r;
        }
    }
    let pod = {
        let st = shared.lock();
        st.objects
            .get(&State::key_for(pods, Some(ns), name))
            .cloned()
    };
    let Some(pod) = pod else {
        return error_response(&ApiError::not_found(def.group, def.plural, name));
    };
    let container = match check(&pod, name, params) {
        Ok(c) => c,
        Err(e) => return error_response(&e),
    };
    let (Some(key), Some(upgrade)) = (websocket_key(headers), upgrade) else {
        return error_response(&ApiError::bad_request(
            "exec needs a WebSocket upgrade (Connection: Upgrade, Upgrade: websocket, \
             Sec-WebSocket-Key); the fake API server serves no SPDY",
        ));
    };
    let offered = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    let Some(protocol) = PROTOCOLS.iter().find(|p| offered.contains(p)) else {
        return error_response(&ApiError::bad_request(format!(
            "no supported exec subprotocol offered ({offered:?}); supported: {}",
            PROTOCOLS.join(", ")
        )));
    };
    let req = ExecRequest {
        namespace: ns.to_string(),
        pod: name.to_string(),
        container,
        command: params.all("command"),
        stdin: params.flag("stdin"),
        stdout: params.flag("stdout"),
        stderr: params.flag("stderr"),
        tty: params.flag("tty"),
        protocol: protocol.to_string(),
    };
    let handler = {
        let mut execs = shared.execs();
        execs.log.push(req.clone());
        execs.handler.clone()
    };
    let control = shared.control_tx.subscribe();
    shared.handle.spawn(session(upgrade, req, handler, control));
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static(protocol),
    );
    if let Ok(v) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    r
}

/// The kubelet's checks: a node, a phase that still has containers, a valid container, a
/// command. Returns the container.
fn check(pod: &Value, name: &str, params: &Params) -> Result<String, ApiError> {
    let node = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if node.is_empty() {
        return Err(ApiError::bad_request(format!(
            "pod {name} does not have a host assigned"
        )));
    }
    let phase = pod
        .pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if phase == "Succeeded" || phase == "Failed" {
        return Err(ApiError::bad_request(format!(
            "cannot exec into a container in a completed pod; current phase is {phase}"
        )));
    }
    let containers: Vec<&str> = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c.get("name").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    let container = match (params.get("container"), containers.as_slice()) {
        (Some(c), _) if !containers.contains(&c) => {
            return Err(ApiError::bad_request(format!(
                "container {c} is not valid for pod {name}"
            )));
        }
        (Some(c), _) => c.to_string(),
        (None, [only]) => only.to_string(),
        (None, _) => {
            return Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                containers.join(" ")
            )));
        }
    };
    if params.all("command").is_empty() {
        return Err(ApiError::bad_request(
            "you must specify at least one command for the container",
        ));
    }
    Ok(container)
}

fn websocket_key(headers: &HeaderMap) -> Option<String> {
    let is = |name: header::HeaderName, want: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(want)))
    };
    if !is(header::UPGRADE, "websocket") || !is(header::CONNECTION, "upgrade") {
        return None;
    }
    headers
        .get(header::SEC_WEBSOCKET_KEY)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// The Status the kubelet sends on channel 3 when the command ends.
fn exit_status(req: &ExecRequest, exit: &ExecExit) -> Option<Value> {
    match exit {
        ExecExit::Code(0) => Some(json!({"metadata": {}, "status": "Success"})),
        ExecExit::Code(code) => Some(json!({
            "metadata": {},
            "status": "Failure",
            "message": format!(
                "command terminated with non-zero exit code: error executing command [{}], exit code {code}",
                req.command.join(" ")
            ),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        })),
        ExecExit::Error(message) => Some(json!({
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": "InternalError",
            "details": {"causes": [{"message": message}]},
            "code": 500,
        })),
        ExecExit::Dropped => None,
    }
}

async fn session(
    upgrade: OnUpgrade,
    req: ExecRequest,
    handler: Option<ExecHandler>,
    mut control: broadcast::Receiver<Control>,
) {
    let stopped = async {
        loop {
            match control.recv().await {
                Ok(Control::Break) | Err(broadcast::error::RecvError::Closed) => return,
                _ => {}
            }
        }
    };
    tokio::select! {
        () = run_session(upgrade, req, handler) => {}
        () = stopped => {}
    }
}

async fn run_session(upgrade: OnUpgrade, req: ExecRequest, handler: Option<ExecHandler>) {
    let upgraded = match upgrade.await {
        Ok(u) => u,
        Err(e) => {
            tracing::debug!(error = %e, "fake apiserver exec upgrade failed");
            return;
        }
    };
    let mut ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
    let call = req.clone();
    let reply = match handler {
        Some(h) => tokio::task::spawn_blocking(move || h(&call))
            .await
            .unwrap_or_else(|e| ExecReply {
                stdout: Vec::new(),
                stderr: Vec::new(),
                exit: ExecExit::Error(format!("the test's exec handler panicked: {e}")),
            }),
        None => ExecReply {
            stdout: Vec::new(),
            stderr: Vec::new(),
            exit: ExecExit::Error(
                "the fake API server has no exec handler (FakeApiServer::set_exec_handler)".into(),
            ),
        },
    };
    let mut frames = Vec::new();
    for (channel, wanted, bytes) in [
        (STDOUT, req.stdout, &reply.stdout),
        (STDERR, req.stderr, &reply.stderr),
    ] {
        if wanted {
            frames.extend(bytes.chunks(CHUNK).map(|c| framed(channel, c)));
        }
    }
    if let Some(status) = exit_status(&req, &reply.exit) {
        frames.push(framed(STATUS, status.to_string().as_bytes()));
    }
    for f in frames {
        if ws.send(Message::binary(f)).await.is_err() {
            return;
        }
    }
    let _ = ws.close(None).await;
    // Let the client's close (or its stdin EOF) arrive before the socket goes.
    let drain = async { while let Some(Ok(_)) = ws.next().await {} };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), drain).await;
}

fn framed(channel: u8, bytes: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(bytes.len() + 1);
    f.push(channel);
    f.extend_from_slice(bytes);
    f
}

impl Shared {
    pub(crate) fn execs(&self) -> std::sync::MutexGuard<'_, Execs> {
        self.execs.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Keeps [`Execs`] behind its own lock: sessions never wait on the store.
pub(crate) fn new_execs() -> Mutex<Execs> {
    Mutex::new(Execs::default())
}
