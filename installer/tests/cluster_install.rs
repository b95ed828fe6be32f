//! The installer against the fake API server: preflight (every node judged,
//! the mesh found), install (server-side apply, rollout wait, running twice,
//! the ServiceMonitor), status (what each daemon reported), and the rollout
//! wait when it is stuck or the API server briefly goes away.

mod common;

use std::time::Duration;

use accel_fake_apiserver::{RolloutMode, fixtures};
use accel_k8s::keys;
use accel_k8s::node::NodeState;

use common::{Env, NS, assert_row, row, status};

#[test]
fn preflight_judges_every_node_and_finds_the_mesh() {
    let env = Env::new();
    let s = &env.server;
    s.upsert(fixtures::node(
        "old",
        "4.19.91-26.al7.x86_64",
        "Alibaba Cloud Linux (Aliyun Linux) 2.1903 LTS",
    ));
    s.upsert(fixtures::node(
        "lts",
        "5.10.134-16.al8.x86_64",
        "Alibaba Cloud Linux 3.2104 U10",
    ));
    s.upsert(fixtures::node(
        "new",
        "6.1.0-18-cloud-amd64",
        "Debian GNU/Linux 12 (bookworm)",
    ));
    s.upsert(fixtures::node("odd", "custom-kernel", "Unknown OS"));
    s.upsert(fixtures::virtual_node("virtual-kubelet-cn-hangzhou-k"));

    let r = env.run(&["preflight"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.out.contains("=== context a (http://127.0.0.1:"), "{r:?}");
    assert_row(
        &r.out,
        "old",
        &[
            "4.19.91-26.al7.x86_64",
            "Alibaba Cloud Linux (Aliyun Linux)",
            "not eligible",
            "older than 5.10",
        ],
    );
    assert!(
        row(&r.out, "lts").ends_with("eligible") && !row(&r.out, "lts").contains("not eligible")
    );
    assert!(
        row(&r.out, "new").contains("Debian GNU/Linux 12")
            && row(&r.out, "new").ends_with("eligible")
    );
    assert_row(
        &r.out,
        "odd",
        &["not eligible", "cannot parse kernel release"],
    );
    assert_row(
        &r.out,
        "virtual-kubelet-cn-hangzhou-k",
        &["not eligible: virtual node"],
    );
    assert!(r.out.contains("2 of 5 node(s) eligible"), "{r:?}");
    assert!(
        r.out.contains("warning: no mesh control plane found"),
        "{r:?}"
    );

    s.upsert(fixtures::namespace("istio-system"));
    s.upsert(fixtures::istiod_deployment("istio-system", "default"));
    s.upsert(fixtures::istiod_deployment("istio-system", "canary"));
    s.upsert(fixtures::asm_istiod_deployment("istio-system", "1-22-6"));
    let r = env.run(&["preflight"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(!r.out.contains("no mesh control plane"), "{r:?}");
    assert_row(
        &r.out,
        "Istio",
        &["istio-system", "istiod ", "default", "1.24.2"],
    );
    assert!(
        r.out
            .lines()
            .any(|l| l.starts_with("Istio") && l.contains("istiod-canary") && l.contains("canary")),
        "{r:?}"
    );
    assert_row(
        &r.out,
        "ASM",
        &["istiod-1-22-6", "1-22-6", "1.22.6.43-g4d1a7b5c-aliyun"],
    );
}

#[test]
fn preflight_fails_only_when_no_node_is_eligible() {
    let env = Env::new();
    env.server.upsert(fixtures::node(
        "old",
        "4.19.91-26.al7.x86_64",
        "Alibaba Cloud Linux 2",
    ));
    env.server.upsert(fixtures::virtual_node("vk"));
    let r = env.run(&["preflight"]);
    assert_eq!(r.code, 3, "{r:?}");
    assert!(
        r.out.contains("0 of 2 node(s) eligible") && r.out.contains("no node is eligible"),
        "{r:?}"
    );
}

fn applied(env: &Env) -> Vec<(String, String)> {
    env.server
        .requests()
        .into_iter()
        .filter(|r| {
            r.method == "PATCH" && r.content_type.as_deref() == Some("application/apply-patch+yaml")
        })
        .map(|r| {
            assert_eq!(r.field_manager.as_deref(), Some("sidecar-accel"), "{r:?}");
            assert_eq!(r.param("force"), Some("true"), "{r:?}");
            (
                r.path.clone(),
                r.param("fieldManager").unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[test]
fn install_applies_server_side_waits_for_the_rollout_and_is_idempotent() {
    let env = Env::new().with_workers();
    env.server.upsert(fixtures::virtual_node("vk"));
    // Left behind by an aborted uninstall: install must lift it so n2's daemon resumes.
    let n2 = fixtures::with_annotation(env.node("n2"), keys::UNLOAD_REQUEST_ANNOTATION, "stale");
    env.server.upsert(n2);
    env.server.set_rollout(RolloutMode::Gradual {
        per_step: Duration::from_millis(400),
    });

    let r = env.run(&["install", "--image", "example.com/accel-daemon:0.1.0"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.out
            .contains("removed the unload request of an earlier uninstall from n2"),
        "{r:?}"
    );
    assert!(
        env.node("n2")["metadata"]["annotations"]
            .get(keys::UNLOAD_REQUEST_ANNOTATION)
            .is_none()
    );
    // Without the Prometheus Operator the monitor is skipped, and says so.
    assert!(
        r.out.contains("monitoring: skipped the ServiceMonitor"),
        "{r:?}"
    );

    // Every object went through server-side apply, dependencies first.
    let paths: Vec<String> = applied(&env).into_iter().map(|(p, _)| p).collect();
    assert_eq!(
        paths,
        [
            format!("/api/v1/namespaces/{NS}"),
            format!("/api/v1/namespaces/{NS}/serviceaccounts/accel-daemon"),
            "/apis/rbac.authorization.k8s.io/v1/clusterroles/sidecar-accel-daemon".to_string(),
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/sidecar-accel-daemon"
                .to_string(),
            format!("/api/v1/namespaces/{NS}/services/accel-daemon-metrics"),
            format!("/apis/apps/v1/namespaces/{NS}/daemonsets/accel-daemon"),
        ]
    );
    let ds = env.daemonset();
    assert_eq!(
        ds["spec"]["template"]["spec"]["containers"][0]["image"],
        "example.com/accel-daemon:0.1.0"
    );

    // The progress climbed node by node (plain lines: not a terminal).
    let progress: Vec<&str> = r
        .out
        .lines()
        .filter(|l| l.starts_with("rollout: "))
        .collect();
    assert!(progress.len() >= 3, "{r:?}");
    assert!(
        progress
            .iter()
            .any(|l| l.starts_with("rollout: 0/3 updated")),
        "{r:?}"
    );
    assert!(
        progress
            .iter()
            .any(|l| l.starts_with("rollout: 3/3 updated, 3/3 ready, 3/3 available")),
        "{r:?}"
    );
    assert!(r.out.contains("rollout complete on 3 node(s)"), "{r:?}");
    // Node table: no daemon has reported yet; the virtual node is not targeted.
    assert!(
        row(&r.out, "n1").contains("its daemon has not reported yet"),
        "{r:?}"
    );
    assert!(
        row(&r.out, "vk").contains("the DaemonSet does not run here: virtual node"),
        "{r:?}"
    );
    // The two facts.
    assert!(
        r.out
            .contains("Connections established before the install are not accelerated"),
        "{r:?}"
    );
    assert!(
        r.out.contains("PSH-flagged segments") && r.out.contains("tcpdump -i lo"),
        "{r:?}"
    );
    assert!(r.out.contains("accel-daemon verify"), "{r:?}");

    // Twice: same objects, nothing changes, success.
    let generation = ds["metadata"]["generation"].clone();
    env.server.clear_requests();
    let again = env.run(&["install", "--image", "example.com/accel-daemon:0.1.0"]);
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(applied(&env).len(), 6);
    let ds = env.daemonset();
    assert_eq!(
        ds["metadata"]["generation"], generation,
        "a second install changed the DaemonSet"
    );
    assert!(
        again.out.contains("rollout complete on 3 node(s)"),
        "{again:?}"
    );
    assert!(
        !again.out.contains("removed the unload request"),
        "{again:?}"
    );
}

#[test]
fn install_applies_the_monitor_when_the_operator_is_there() {
    let env = Env::new().with_workers();
    env.server.set_prometheus_operator(true);
    let r = env.run(&["install"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.out.contains("applied ServiceMonitor/accel-daemon"),
        "{r:?}"
    );
    let sm = env.server.get(
        "monitoring.coreos.com/v1",
        "ServiceMonitor",
        Some(NS),
        "accel-daemon",
    );
    assert!(sm.is_some());
    // Default image: the kustomization's placeholder.
    let ds = env.daemonset();
    assert_eq!(
        ds["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.example.invalid/sidecar-accel/accel-daemon:0.1.0"
    );
}

#[test]
fn status_shows_what_each_daemon_reported() {
    let env = Env::new().with_workers();
    env.server.upsert(fixtures::virtual_node("vk"));
    let r = env.run(&["install"]);
    assert_eq!(r.code, 0, "{r:?}");
    env.report(
        "n1",
        &status(
            NodeState::Accelerating,
            "accelerating: kernel 5.10.134, all probes passed",
            "5.10.134-16.al8.x86_64",
        ),
    );
    let mut refused = status(
        NodeState::Unaccelerated,
        "probe failed: sk_msg redirect",
        "6.1.0-18-cloud-amd64",
    );
    refused.failed_checks = vec!["sk_msg redirect: EINVAL".into()];
    env.report("n2", &refused);

    let r = env.run(&["status"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.out.contains(&format!(
            "installer: accel-installer {}",
            env!("CARGO_PKG_VERSION")
        )),
        "{r:?}"
    );
    assert!(r.out.contains("daemonset: sidecar-accel-system/accel-daemon image registry.example.invalid/sidecar-accel/accel-daemon:0.1.0"), "{r:?}");
    assert!(r.out.contains("rollout: complete: 3/3 updated"), "{r:?}");
    assert_row(
        &r.out,
        "n1",
        &["yes", "accelerating", "0.1.0", "all probes passed"],
    );
    assert_row(
        &r.out,
        "n2",
        &[" no ", "unaccelerated", "sk_msg redirect: EINVAL"],
    );
    assert_row(&r.out, "n3", &["not reported"]);
    assert_row(&r.out, "vk", &["virtual node"]);
    assert!(r.out.contains("1 of 4 node(s) accelerated"), "{r:?}");

    // A malformed report is shown as such, not a crash.
    let bad = fixtures::with_annotation(env.node("n3"), keys::NODE_STATUS_ANNOTATION, "{not json");
    env.server.upsert(bad);
    let r = env.run(&["status"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        row(&r.out, "n3").contains("unreadable sidecar-accel.io/status annotation"),
        "{r:?}"
    );
}

#[test]
fn a_stuck_rollout_times_out_naming_the_nodes() {
    let env = Env::new().with_workers();
    env.server.upsert(fixtures::virtual_node("vk"));
    env.server.set_rollout(RolloutMode::Stuck);
    let r = env.run(&["install", "--timeout", "1s"]);
    assert_eq!(r.code, 3, "{r:?}");
    assert!(
        r.out.contains("did not finish within 1s (0/3 updated"),
        "{r:?}"
    );
    assert!(
        r.out
            .contains("nodes without a ready daemon pod: n1, n2, n3."),
        "{r:?}"
    );
    assert!(!r.out.contains("NOTE:"), "{r:?}");
}

#[test]
fn the_rollout_wait_rides_out_a_short_api_server_outage() {
    let env = Env::new().with_workers();
    env.server.set_rollout(RolloutMode::Gradual {
        per_step: Duration::from_millis(400),
    });
    let server = env.server.clone();
    let outage = std::thread::spawn(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while server
            .get("apps/v1", "DaemonSet", Some(NS), "accel-daemon")
            .is_none()
        {
            assert!(
                std::time::Instant::now() < deadline,
                "install never applied the DaemonSet"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        server.unavailable(true);
        std::thread::sleep(Duration::from_millis(600));
        server.unavailable(false);
    });
    let r = env.run(&["install", "--timeout", "20s"]);
    outage.join().unwrap();
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.out.contains("is unavailable (503") && r.out.contains("(retrying)"),
        "{r:?}"
    );
    assert!(r.out.contains("rollout complete on 3 node(s)"), "{r:?}");
}
