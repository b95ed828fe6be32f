//! The installer's contexts and the failure messages an operator gets: a
//! wrong context, RBAC refusals, an unreachable or unavailable API server,
//! several contexts with one of them down, and a bad command line.

mod common;

use std::time::Duration;

use accel_fake_apiserver::{FakeApiServer, fixtures};
use serde_json::json;

use common::{Env, run_with};

#[test]
fn clear_messages_for_an_unreachable_server_a_wrong_context_and_rbac() {
    let env = Env::new().with_workers();
    let url = env.server.url();

    let r = env.run(&["--context", "prod", "preflight"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.err.contains("context \"prod\" not found in kubeconfig")
            && r.err.contains("available contexts: a"),
        "{r:?}"
    );
    assert_eq!(r.err.lines().count(), 1, "{r:?}");

    env.server.forbid("list", "nodes");
    let r = env.run(&["preflight"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.err.contains("forbidden")
            && r.err.contains("may not list nodes")
            && r.err.contains("cluster-admin"),
        "{r:?}"
    );
    assert_eq!(r.err.lines().count(), 1, "{r:?}");
    env.server.clear_forbidden();

    env.server.forbid("patch", "daemonsets");
    let r = env.run(&["install"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.err
            .contains("may not patch (server-side apply) daemonsets"),
        "{r:?}"
    );
    env.server.clear_forbidden();

    env.server.stop();
    let r = env.run(&["status"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.err
            .contains(&format!("cannot reach the API server at {url} (context a)")),
        "{r:?}"
    );
    assert!(r.err.to_lowercase().contains("refused"), "{r:?}");
    assert_eq!(r.err.lines().count(), 1, "{r:?}");
}

#[test]
fn several_contexts_are_several_clusters() {
    let a = Env::new().with_workers();
    let b = FakeApiServer::start().unwrap();
    b.upsert(fixtures::node("b1", "4.19.91-26.al7.x86_64", "CentOS 7"));
    b.upsert(fixtures::node("b2", "6.6.0", "Ubuntu 24.04"));
    let kubeconfig = a.dir.0.join("two");
    let entry = |name: &str, url: String| {
        (
            json!({"name": name, "cluster": {"server": url}}),
            json!({"name": name, "user": {}}),
            json!({"name": name, "context": {"cluster": name, "user": name}}),
        )
    };
    let (ca, ua, xa) = entry("a", a.server.url());
    let (cb, ub, xb) = entry("b", b.url());
    let cfg = json!({
        "apiVersion": "v1", "kind": "Config", "current-context": "a",
        "clusters": [ca, cb], "users": [ua, ub], "contexts": [xa, xb],
    });
    std::fs::write(&kubeconfig, serde_json::to_string(&cfg).unwrap()).unwrap();

    let r = run_with(
        &kubeconfig,
        &["--context", "a", "--context", "b", "preflight"],
    );
    assert_eq!(r.code, 0, "{r:?}");
    let a_at = r.out.find("=== context a (").expect("header a");
    let b_at = r.out.find("=== context b (").expect("header b");
    assert!(a_at < b_at);
    assert!(r.out[a_at..b_at].contains("n1") && !r.out[a_at..b_at].contains("b1"));
    assert!(r.out[b_at..].contains("b1") && r.out[b_at..].contains("1 of 2 node(s) eligible"));

    // One cluster down: the other still reports, the run fails and says which.
    b.stop();
    let r = run_with(&kubeconfig, &["--context", "a", "--context", "b", "status"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.out.contains("=== context a (") && r.out.contains("n1"),
        "{r:?}"
    );
    assert!(
        r.err.contains("cannot reach the API server") && r.err.contains("(context b)"),
        "{r:?}"
    );
    assert!(r.err.contains("failed in context(s): b"), "{r:?}");
}

#[test]
fn an_unavailable_server_is_named_not_hung_on() {
    let env = Env::new().with_workers();
    env.server.unavailable(true);
    let started = std::time::Instant::now();
    let r = env.run(&["preflight"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.err.contains(&format!(
            "the API server at {} (context a) is unavailable (503",
            env.server.url()
        )),
        "{r:?}"
    );
    assert!(r.err.contains("list nodes"), "{r:?}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn a_bad_command_line_is_a_usage_error() {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = accel_installer::run(
        ["accel-installer", "install", "--timeout", "soon"],
        &mut out,
        &mut err,
        false,
    );
    assert_eq!(code, 2);
    assert!(String::from_utf8_lossy(&err).contains("is not a duration"));
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = accel_installer::run(["accel-installer", "--help"], &mut out, &mut err, false);
    assert_eq!(code, 0);
    let help = String::from_utf8_lossy(&out);
    for cmd in ["preflight", "install", "status", "uninstall", "render"] {
        assert!(help.contains(cmd), "{help}");
    }
}
