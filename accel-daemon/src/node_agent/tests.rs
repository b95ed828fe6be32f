//! The node agent against a loopback API server, driven as `serve` drives it.

use std::{
    io::Write,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use accel_fake_apiserver::{FakeApiServer, fixtures};
use accel_k8s::{keys, report::NodeReporter};
use serde_json::Value;

use super::{Next, NodeAgent, wake};
use crate::{
    datapath::Datapath,
    lend::Owner,
    state::{DaemonState, State},
};

pub(super) fn new_agent(client: kube::Client, node: &str) -> NodeAgent {
    NodeAgent::new(
        NodeReporter::new(client, node),
        PathBuf::from("/nonexistent/sidecar-accel-test-pins"),
        Duration::from_secs(1),
    )
}

pub(super) fn daemon_state(accelerated: bool, pods: usize) -> State {
    State::new(DaemonState {
        version: "0.1.0".into(),
        kernel_release: "6.1.0".into(),
        accelerated,
        reason: if accelerated {
            String::new()
        } else {
            "kernel 5.4.0 is older than 5.10".into()
        },
        pods: (0..pods)
            .map(|i| accel_k8s::pods_file::LocalEndpoint {
                name: format!("shop/p{i}"),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    })
}

/// The agent's loop in `serve`: wake, tick, until a restart is asked for.
pub(super) async fn run(mut agent: NodeAgent, state: State) {
    let mut datapath = Owner::<Datapath>::new(None);
    let mut held = Vec::new();
    let mut waker = Some(agent.waker());
    loop {
        wake(&mut waker).await;
        if matches!(
            agent.tick(&state, &mut datapath, &mut held).await,
            Next::Restart
        ) {
            return;
        }
    }
}

fn status_of(api: &FakeApiServer, node: &str) -> Option<Value> {
    let n = api.get("v1", "Node", None, node)?;
    serde_json::from_str(n["metadata"]["annotations"][keys::NODE_STATUS_ANNOTATION].as_str()?).ok()
}

async fn wait_until(limit: Duration, what: &str, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_unload_request_is_watched_not_polled_and_followed_at_once() {
    let api = FakeApiServer::start().expect("fake API server");
    api.upsert(fixtures::node("n1", "6.1.0", "Debian"));
    let client = kube::Client::try_from(api.kube_config()).expect("client");
    let mut agent = new_agent(client, "n1");
    assert_eq!(agent.pending_unload().await, None);
    let task = tokio::spawn(run(agent, daemon_state(true, 2)));
    wait_until(Duration::from_secs(10), "accelerating status", || {
        status_of(&api, "n1").is_some_and(|s| s["state"] == "accelerating")
    })
    .await;
    let st = status_of(&api, "n1").expect("status");
    assert_eq!(st["meshedPods"], 2, "{st}");
    assert_eq!(st["heartbeatSeconds"], 300, "{st}");

    // At rest: no request at all (the watch stays open).
    let before = api.request_counts();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rest = api.request_counts().since(&before);
    assert_eq!(rest.total(), 0, "requests at rest: {:?}", rest.by_path());

    let node = fixtures::with_annotation(
        api.get("v1", "Node", None, "n1").expect("node"),
        keys::UNLOAD_REQUEST_ANNOTATION,
        "tok-1",
    );
    api.upsert(node);
    let took = wait_until(Duration::from_secs(5), "unloaded status", || {
        status_of(&api, "n1")
            .is_some_and(|s| s["state"] == "unloaded" && s["unloadToken"] == "tok-1")
    })
    .await;
    eprintln!("unload request followed in {took:?} (the 2 s poll took up to 2 s)");
    assert!(took < Duration::from_secs(1), "{took:?}");
    let st = status_of(&api, "n1").expect("status");
    assert_eq!(st["meshedPods"], 0, "{st}");

    // Withdrawn after the datapath went: the agent asks for a restart.
    let mut node = api.get("v1", "Node", None, "n1").expect("node");
    node["metadata"]["annotations"]
        .as_object_mut()
        .expect("annotations")
        .remove(keys::UNLOAD_REQUEST_ANNOTATION);
    api.upsert(node);
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("restart after the withdrawal")
        .expect("agent task");
    let verbs = api.request_counts().by_verb();
    assert!(!verbs.contains_key("get"), "the node was polled: {verbs:?}");
}

/// The agent cleared the reason in its copy of the state and left the
/// metrics' copy stale; with one state every reader sees the same.
#[tokio::test]
async fn a_withdrawn_refused_uninstall_clears_the_reason_for_every_reader() {
    let api = FakeApiServer::start().expect("fake API server");
    let client = kube::Client::try_from(api.kube_config()).expect("client");
    let mut agent = new_agent(client, "n1");
    let state = daemon_state(true, 2);
    let refusal = "sockets still hold unread redirected data";
    agent.finish_unload("tok-1".into(), Err(refusal.into()), &state);
    assert_eq!(agent.state, accel_k8s::node::NodeState::UnloadRefused);
    let metrics = crate::server::render(&state, Owner::<Datapath>::new(None).lend());
    assert!(
        metrics.contains(&format!(
            "sidecar_accel_gate_info{{reason=\"{refusal}\"}} 1"
        )),
        "{metrics}"
    );

    // Withdrawn: the datapath is set back to accelerate.
    assert!(matches!(
        agent.withdrawn(|| Some(Ok(())), &state),
        Next::Continue
    ));

    let dir = std::env::temp_dir().join(format!("accel-agent-resume-{}", std::process::id()));
    state.flush(&dir).expect("state file");
    let file = DaemonState::read(&dir).expect("read back");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(file.accelerated);
    assert_eq!(file.reason, "", "the state file still says why it was off");
    assert_eq!(state.reason(), "", "the metrics still say why it was off");
    let metrics = crate::server::render(&state, Owner::<Datapath>::new(None).lend());
    assert!(metrics.contains("sidecar_accel_enabled 1"), "{metrics}");
    assert!(!metrics.contains(refusal), "{metrics}");
    let node = agent.current_status(&state);
    assert_eq!(node.state, accel_k8s::node::NodeState::Accelerating);
    assert!(!node.reason.contains(refusal), "{}", node.reason);
}

#[tokio::test]
async fn meshed_pods_counts_only_pods_the_datapath_accelerates() {
    let api = FakeApiServer::start().expect("fake API server");
    let client = kube::Client::try_from(api.kube_config()).expect("client");
    let agent = new_agent(client, "n1");
    // Gate failed: the watch lists 3 meshed pods, none is applied to a datapath.
    let off = agent.current_status(&daemon_state(false, 3));
    assert_eq!(off.state, accel_k8s::node::NodeState::Unaccelerated);
    assert_eq!(off.meshed_pods, 0);
    let on = agent.current_status(&daemon_state(true, 3));
    assert_eq!(on.meshed_pods, 3);
    assert!(on.reason.contains("3 meshed pods"), "{}", on.reason);
}

/// A log sink for one subscriber layer.
#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut v) = self.0.lock() {
            v.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Sink {
    fn text(&self) -> String {
        self.0
            .lock()
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .unwrap_or_default()
    }
}

fn lines_at(log: &str, level: &str) -> usize {
    log.lines().filter(|l| l.contains(level)).count()
}

/// With the API server down, kube's HTTP layer logs an ERROR per failed
/// request; the daemon's default filter drops those, and its own warnings
/// come once per outage and watch (then at most once a minute).
#[test]
fn an_unreachable_api_server_leaves_a_few_warnings_and_no_errors() {
    use tracing_subscriber::{EnvFilter, Layer, fmt, layer::SubscriberExt};
    let api = FakeApiServer::start().expect("fake API server");
    api.upsert(fixtures::node("n1", "6.1.0", "Debian"));
    let config = api.kube_config();
    api.stop();
    let (raw, calm) = (Sink::default(), Sink::default());
    let (r, c) = (raw.clone(), calm.clone());
    let subscriber = tracing_subscriber::registry()
        .with(
            fmt::layer()
                .with_ansi(false)
                .with_writer(move || r.clone())
                .with_filter(EnvFilter::new("info")),
        )
        .with(
            fmt::layer()
                .with_ansi(false)
                .with_writer(move || c.clone())
                .with_filter(EnvFilter::new(crate::kubernetes::log_filter(Some("info")))),
        );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    const OUTAGE: Duration = Duration::from_secs(8);
    tracing::subscriber::with_default(subscriber, || {
        rt.block_on(async {
            let client = kube::Client::try_from(config).expect("client");
            let (_pods, _health) = accel_k8s::watch::spawn_pod_watcher(client.clone(), "n1");
            let agent = new_agent(client, "n1");
            let _ = tokio::time::timeout(OUTAGE, run(agent, daemon_state(false, 0))).await;
        });
    });
    drop(rt);
    let (raw, calm) = (raw.text(), calm.text());
    eprintln!(
        "{OUTAGE:?} without an API server: default 'info' filter {} ERROR / {} WARN lines; \
         the daemon's filter {} ERROR / {} WARN lines:\n{calm}",
        lines_at(&raw, " ERROR "),
        lines_at(&raw, " WARN "),
        lines_at(&calm, " ERROR "),
        lines_at(&calm, " WARN ")
    );
    assert!(lines_at(&raw, " ERROR ") >= 4, "kube's errors: {raw}");
    assert_eq!(lines_at(&calm, " ERROR "), 0, "{calm}");
    // Pod watch, node watch, status patch: one line each.
    assert!(lines_at(&calm, " WARN ") <= 3, "{calm}");
    assert!(calm.contains("pod watch failed"), "{calm}");
    assert!(calm.contains("publishing node status failed"), "{calm}");
}

#[test]
fn rust_log_keeps_kube_calm_unless_it_names_kube() {
    use crate::kubernetes::log_filter;
    assert_eq!(
        log_filter(None),
        "info,kube_client::client::builder=off,kube_runtime::watcher=error"
    );
    assert_eq!(
        log_filter(Some("debug")),
        "debug,kube_client::client::builder=off,kube_runtime::watcher=error"
    );
    assert_eq!(
        log_filter(Some("info,kube_client=debug")),
        "info,kube_client=debug,kube_runtime::watcher=error"
    );
    for f in [None, Some("trace"), Some("info,kube_runtime=debug")] {
        assert!(tracing_subscriber::EnvFilter::try_new(log_filter(f)).is_ok());
    }
}
