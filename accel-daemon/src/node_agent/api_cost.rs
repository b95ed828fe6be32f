//! What 1,000 node daemons cost the API server: a rollout, then rest.
//!
//! Each simulated node runs what `accel-daemon run --endpoint-source
//! kubernetes` runs against the API server: its own client, the pod watch
//! (`spawn_pod_watcher`), the node agent (node watch, status patches,
//! heartbeat) driven by the loop of `serve`, and the start-up check for a
//! pending uninstall. Only the datapath is left out (it makes no requests).
//! The fake API server counts requests by verb and path.
//!
//! ```text
//! cargo test -p accel-daemon -- --ignored --nocapture api_cost
//! ACCEL_API_COST_NODES=1000 ACCEL_API_COST_REST_SECS=600 (the defaults)
//! ```

use std::time::{Duration, Instant};

use accel_fake_apiserver::{FakeApiServer, RequestCounts, fixtures};
use accel_k8s::keys;

use super::tests::{daemon_state, new_agent, run};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn print(what: &str, counts: &RequestCounts, nodes: u64, minutes: f64) {
    let per_node_min = counts.total() as f64 / nodes as f64 / minutes;
    println!(
        "{what}: {} requests in {:.1} min from {nodes} nodes = {:.3} requests per node per minute ({:.1} per second cluster-wide)",
        counts.total(),
        minutes,
        per_node_min,
        counts.total() as f64 / (minutes * 60.0)
    );
    let mut by_path = std::collections::BTreeMap::<(String, String), u64>::new();
    for ((verb, path), n) in counts.by_path() {
        // One line per verb and kind of path, not per node.
        let shape = if path.starts_with("/api/v1/nodes/") {
            "/api/v1/nodes/<node>".to_string()
        } else {
            path
        };
        *by_path.entry((verb, shape)).or_default() += n;
    }
    for ((verb, path), n) in by_path {
        println!(
            "  {verb:>6} {path:<42} {n:>7}  ({:.3} per node per minute)",
            n as f64 / nodes as f64 / minutes
        );
    }
}

#[test]
#[ignore = "load test: 1,000 simulated nodes for about 11 minutes; run with --ignored --nocapture"]
fn api_cost() {
    let nodes = env_or("ACCEL_API_COST_NODES", 1000);
    let rest = Duration::from_secs(env_or("ACCEL_API_COST_REST_SECS", 600));
    let api = FakeApiServer::start().expect("fake API server");
    api.set_request_log(false);
    // Bookmarks ride on open watches (no requests); the real server sends one a minute.
    api.set_bookmark_interval(Duration::from_secs(60));
    for i in 0..nodes {
        let name = format!("node-{i:04}");
        api.upsert(fixtures::node(&name, "6.1.0", "Debian"));
        api.upsert(fixtures::istio_pod(
            "shop",
            &format!("web-{i:04}"),
            &name,
            &["10.1.0.1"],
        ));
    }
    api.reset_request_counts();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let url = api.kube_config();
    let start = Instant::now();
    // A rolling update at maxUnavailable 10%: batches of a tenth of the nodes, 3 s apart.
    let batch = (nodes / 10).max(1);
    rt.block_on(async {
        for i in 0..nodes {
            if i > 0 && i % batch == 0 {
                tokio::time::sleep(Duration::from_secs(3)).await;
            }
            let name = format!("node-{i:04}");
            let mut cfg = url.clone();
            cfg.headers.push((
                axum::http::header::USER_AGENT,
                axum::http::HeaderValue::from_str(&format!("accel-daemon/{name}")).expect("header"),
            ));
            let client = kube::Client::try_from(cfg).expect("client");
            tokio::spawn(async move {
                let (pods, _health) = accel_k8s::watch::spawn_pod_watcher(client.clone(), &name);
                let mut agent = new_agent(client, &name);
                let pending = agent.pending_unload().await;
                assert_eq!(pending, None);
                run(agent, daemon_state(true, 1)).await;
                drop(pods);
            });
        }
    });
    let published = |api: &FakeApiServer| {
        api.list("v1", "Node")
            .iter()
            .filter(|n| n["metadata"]["annotations"][keys::NODE_STATUS_ANNOTATION].is_string())
            .count() as u64
    };
    while published(&api) < nodes {
        assert!(start.elapsed() < Duration::from_secs(600), "rollout stuck");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Let the last starters settle (watches opened, first ticks done).
    std::thread::sleep(Duration::from_secs(5));
    let rollout = api.request_counts();
    let rollout_min = start.elapsed().as_secs_f64() / 60.0;
    println!(
        "\n{nodes} nodes, rollout in batches of {batch} every 3 s, all statuses published after {:.1} s",
        start.elapsed().as_secs_f64()
    );
    print("rollout", &rollout, nodes, rollout_min);
    println!(
        "  = {:.2} requests per node started",
        rollout.total() as f64 / nodes as f64
    );

    // An uninstall request on one node at rest: how fast is it followed?
    let before = api.request_counts();
    let rest_start = Instant::now();
    std::thread::sleep(rest);
    let at_rest = api.request_counts().since(&before);
    print("rest", &at_rest, nodes, rest.as_secs_f64() / 60.0);
    println!(
        "  (the 2 s poll this replaces: 30 GETs per node per minute, {} per second on {nodes} nodes)",
        nodes / 2
    );
    let node = fixtures::with_annotation(
        api.get("v1", "Node", None, "node-0000").expect("node"),
        keys::UNLOAD_REQUEST_ANNOTATION,
        "tok",
    );
    let asked = Instant::now();
    api.upsert(node);
    loop {
        let st = api.get("v1", "Node", None, "node-0000").expect("node")["metadata"]["annotations"]
            [keys::NODE_STATUS_ANNOTATION]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if st.contains("\"unloaded\"") {
            break;
        }
        assert!(
            asked.elapsed() < Duration::from_secs(30),
            "unload not followed"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    println!(
        "uninstall request followed (status 'unloaded') {:?} after it was set, with {nodes} nodes watching",
        asked.elapsed()
    );
    assert!(rest_start.elapsed() >= rest);
    let per_node_min = at_rest.total() as f64 / nodes as f64 / (rest.as_secs_f64() / 60.0);
    assert!(
        per_node_min < 1.0,
        "{per_node_min} requests per node per minute at rest"
    );
    assert!(!at_rest.by_verb().contains_key("get"), "nodes were polled");
    rt.shutdown_background();
}
