//! `accel-installer verify NAMESPACE/POD` against the fake API server: the
//! exec goes through kube's WebSocket client to the fake server's pods/exec,
//! where a handler plays the daemon's `verify`. Success prints the daemon's
//! table; every way it can fail gives one line that says what to do.

mod common;

use std::time::{Duration, Instant};

use accel_fake_apiserver::{ExecExit, ExecReply, ExecRequest, fixtures};
use accel_k8s::keys;
use serde_json::{Value, json};

use common::{Env, NS, Run};

/// What `accel-daemon verify --pod shop/cart-0 --port 9080` prints (the
/// format of a real run, the namespace the daemon found for the pod).
const TABLE: &str = "\
CONNECTION                         PACKETS  PSH DATA  PAYLOAD BYTES  HANDSHAKE  VERDICT          REASON
127.0.0.1:41236 -> 127.0.0.1:9080        9         0              0  yes        accelerated
127.0.0.6:52910 -> 172.20.0.5:9080      16         6            600  yes        NOT accelerated  pod opt-out: shop/cart-0 excludes inbound port 9080

2 connection(s) on lo in /host/proc/4242/ns/net: 1 accelerated, 1 not accelerated, 0 unknown (handshake not in the capture window)
captured 25 TCP segment(s) in 3000 ms (stopped: Duration; kernel drops: 0)
cross-check: nsenter --net=/host/proc/4242/ns/net tcpdump -ni lo '(tcp[tcpflags] & tcp-push != 0 or (ip6[6] == 6 and ip6[53] & 0x08 != 0)) and port 9080'
";

const POD: &str = "shop/cart-0";

/// Installed add-on, three workers, a daemon pod (from the applied
/// DaemonSet) on each, and the meshed pod shop/cart-0 on n2.
fn cluster() -> Env {
    let env = Env::new().with_workers();
    let r = env.run(&["install"]);
    assert_eq!(r.code, 0, "{r:?}");
    let ds = daemonset(&env);
    for node in ["n1", "n2", "n3"] {
        env.server.upsert(fixtures::daemonset_pod(&ds, node));
    }
    env.server
        .upsert(fixtures::istio_pod("shop", "cart-0", "n2", &["172.20.0.5"]));
    env
}

fn daemonset(env: &Env) -> Value {
    env.server
        .get("apps/v1", "DaemonSet", Some(NS), keys::DAEMONSET)
        .expect("install applied the DaemonSet")
}

fn pod(env: &Env, ns: &str, name: &str) -> Value {
    env.server.get("v1", "Pod", Some(ns), name).unwrap()
}

/// The one error line, for the exit code 1 cases.
fn error(r: &Run) -> &str {
    assert_eq!(r.code, 1, "{r:?}");
    let lines: Vec<&str> = r.err.lines().collect();
    assert_eq!(lines.len(), 1, "one error line: {r:?}");
    lines[0]
}

#[test]
fn verify_runs_the_daemons_verify_on_the_pods_node_and_prints_its_table() {
    let env = cluster();
    env.server
        .set_exec_handler(|_: &ExecRequest| ExecReply::exit(0, TABLE, ""));
    env.server.clear_requests();

    let r = env.run(&["verify", POD, "--port", "9080", "--duration", "3s"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.out.contains(
            "pod shop/cart-0 runs on node n2; capturing port 9080 for 3s in its network \
             namespace through daemon pod sidecar-accel-system/accel-daemon-n2"
        ),
        "{r:?}"
    );
    assert!(
        r.out.ends_with(TABLE),
        "the daemon's table, as it printed it: {r:?}"
    );
    assert!(r.err.is_empty(), "{r:?}");

    let execs = env.server.exec_requests();
    assert_eq!(execs.len(), 1, "{execs:?}");
    let e = &execs[0];
    assert_eq!(
        (e.namespace.as_str(), e.pod.as_str(), e.container.as_str()),
        (NS, "accel-daemon-n2", keys::DAEMONSET),
        "the daemon pod on the pod's node, the daemon's container"
    );
    assert_eq!(
        e.command,
        [
            "accel-daemon",
            "verify",
            "--pod",
            "shop/cart-0",
            "--port",
            "9080",
            "--duration",
            "3000ms"
        ]
    );
    assert!(e.stdout && e.stderr && !e.stdin && !e.tty, "{e:?}");
    assert_eq!(e.protocol, "v5.channel.k8s.io");

    // It only reads (and execs), and asks for the daemon pods of one node.
    let requests = env.server.requests();
    assert!(
        requests.iter().all(|q| q.method == "GET"),
        "{:?}",
        requests
            .iter()
            .map(|q| (&q.method, &q.path))
            .collect::<Vec<_>>()
    );
    let daemon_list = requests
        .iter()
        .find(|q| q.path == format!("/api/v1/namespaces/{NS}/pods"))
        .expect("listed the daemon pods");
    assert_eq!(daemon_list.param("fieldSelector"), Some("spec.nodeName=n2"));
    assert_eq!(
        daemon_list.param("labelSelector"),
        Some("app.kubernetes.io/component=node-daemon,app.kubernetes.io/name=sidecar-accel"),
        "the DaemonSet's own selector"
    );

    // Without flags the daemon's defaults apply.
    let r = env.run(&["verify", POD]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.out.contains("for the daemon's default time"), "{r:?}");
    let last = env.server.exec_requests().pop().unwrap();
    assert_eq!(
        last.command,
        ["accel-daemon", "verify", "--pod", "shop/cart-0"]
    );
}

#[test]
fn a_missing_unscheduled_or_finished_pod_is_named() {
    let env = cluster();
    env.server
        .set_exec_handler(|_: &ExecRequest| ExecReply::exit(0, TABLE, ""));

    let r = env.run(&["verify", "shop/nope"]);
    let e = error(&r);
    assert!(
        e.contains("pod shop/nope not found in context a")
            && e.contains("kubectl get pods -n shop"),
        "{e}"
    );

    let mut pending = pod(&env, "shop", "cart-0");
    pending["metadata"]["name"] = json!("cart-1");
    pending["spec"].as_object_mut().unwrap().remove("nodeName");
    pending["status"] = json!({"phase": "Pending"});
    env.server.upsert(pending);
    let e = error(&env.run(&["verify", "shop/cart-1"])).to_string();
    assert!(
        e.contains("pod shop/cart-1 is not scheduled to a node yet (phase Pending)"),
        "{e}"
    );

    let mut done = pod(&env, "shop", "cart-0");
    done["status"]["phase"] = json!("Succeeded");
    env.server.upsert(done);
    let e = error(&env.run(&["verify", POD])).to_string();
    assert!(e.contains("has finished (phase Succeeded)"), "{e}");
    assert!(env.server.exec_requests().is_empty());
}

#[test]
fn no_daemon_pod_on_the_node_says_why() {
    // Not installed at all.
    let env = Env::new().with_workers();
    env.server
        .upsert(fixtures::istio_pod("shop", "cart-0", "n2", &["172.20.0.5"]));
    let e = error(&env.run(&["verify", POD])).to_string();
    assert!(
        e.contains("the add-on is not installed in context a: no DaemonSet sidecar-accel-system/accel-daemon")
            && e.contains("--namespace"),
        "{e}"
    );

    // Installed, but its pod has not started on n2.
    let env = cluster();
    env.server.delete("v1", "Pod", Some(NS), "accel-daemon-n2");
    let e = error(&env.run(&["verify", POD])).to_string();
    assert!(
        e.contains("no daemon pod of the add-on on node n2")
            && e.contains("has not started one there")
            && e.contains("kubectl get pods -n sidecar-accel-system -o wide -l"),
        "{e}"
    );

    // Gated off by the chart's nodeSelector.
    let mut ds = daemonset(&env);
    ds["spec"]["template"]["spec"]["nodeSelector"] = json!({"pool": "accel"});
    env.server.upsert(ds);
    let e = error(&env.run(&["verify", POD])).to_string();
    assert!(
        e.contains("the DaemonSet's nodeSelector pool=accel leaves it out"),
        "{e}"
    );

    // A virtual node: the DaemonSet never runs there.
    env.server
        .upsert(fixtures::virtual_node("virtual-kubelet-cn-hangzhou-k"));
    env.server.upsert(fixtures::istio_pod(
        "shop",
        "eci-0",
        "virtual-kubelet-cn-hangzhou-k",
        &["172.20.9.5"],
    ));
    let e = error(&env.run(&["verify", "shop/eci-0"])).to_string();
    assert!(
        e.contains("on node virtual-kubelet-cn-hangzhou-k: the DaemonSet does not run there (")
            && e.contains("never accelerated"),
        "{e}"
    );

    // A daemon pod that is not running yet.
    let env = cluster();
    let mut starting = pod(&env, NS, "accel-daemon-n2");
    starting["status"] = json!({"phase": "Pending"});
    env.server.upsert(starting);
    let e = error(&env.run(&["verify", POD])).to_string();
    assert!(
        e.contains(
            "the daemon pod sidecar-accel-system/accel-daemon-n2 on node n2 is Pending, not running"
        ),
        "{e}"
    );
    assert!(env.server.exec_requests().is_empty());
}

#[test]
fn forbidden_exec_names_the_verb_the_resource_and_what_verify_needs() {
    let env = cluster();
    env.server
        .set_exec_handler(|_: &ExecRequest| ExecReply::exit(0, TABLE, ""));
    for verb in ["get", "create"] {
        env.server.forbid(verb, "pods/exec");
        let e = error(&env.run(&["verify", POD])).to_string();
        assert!(
            e.contains(
                "forbidden: the credentials of context a may not get and create pods/exec in \
                 namespace sidecar-accel-system"
            ) && e.contains(&format!(
                "cannot {verb} resource \"pods/exec\" in API group \"\" in the namespace \"sidecar-accel-system\""
            )) && e.contains("verify needs")
                && e.contains("installer/README.md, Permissions"),
            "{e}"
        );
        env.server.allow(verb, "pods/exec");
    }
    env.server.forbid("get", "pods");
    let e = error(&env.run(&["verify", POD])).to_string();
    assert!(
        e.contains("may not get pods in namespace shop") && e.contains("verify needs"),
        "{e}"
    );
    assert!(env.server.exec_requests().is_empty());
}

#[test]
fn a_failing_daemon_verify_shows_its_stderr_and_exit_status() {
    let env = cluster();
    env.server.set_exec_handler(|req: &ExecRequest| {
        match req.command.iter().any(|a| a == "--port") {
            true => ExecReply {
                stdout: Vec::new(),
                stderr: Vec::new(),
                exit: ExecExit::Dropped,
            },
            false => ExecReply::exit(
                1,
                "",
                "error: pod shop/cart-0 is not a meshed pod of this node's daemon (meshed pods \
                 here: none); only pods with a sidecar on this node take part\n",
            ),
        }
    });
    let e = error(&env.run(&["verify", POD])).to_string();
    assert!(
        e.contains(
            "`accel-daemon verify --pod shop/cart-0` failed in daemon pod \
             sidecar-accel-system/accel-daemon-n2 on node n2 (exit status 1): pod shop/cart-0 \
             is not a meshed pod of this node's daemon"
        ),
        "{e}"
    );

    let e = error(&env.run(&["verify", POD, "--port", "80"])).to_string();
    assert!(
        e.contains("ended without an exit status") && e.contains("run verify again"),
        "{e}"
    );

    env.server.set_exec_handler(|_: &ExecRequest| ExecReply {
        stdout: Vec::new(),
        stderr: Vec::new(),
        exit: ExecExit::Error(
            "OCI runtime exec failed: exec: \"accel-daemon\": executable file not found in $PATH"
                .into(),
        ),
    });
    let e = error(&env.run(&["verify", POD])).to_string();
    assert!(
        e.contains("cannot run `accel-daemon verify --pod shop/cart-0` in daemon pod")
            && e.contains("executable file not found")
            && e.contains("accel-installer status"),
        "{e}"
    );
}

#[test]
fn a_stream_cut_while_the_daemon_runs_fails_at_once_instead_of_hanging() {
    let env = cluster();
    env.server.set_exec_handler(|_: &ExecRequest| {
        std::thread::sleep(Duration::from_millis(1500));
        ExecReply::exit(0, TABLE, "")
    });
    let server = env.server.clone();
    let cut = std::thread::spawn(move || {
        // The exec is under way once the server has accepted it.
        let end = Instant::now() + Duration::from_secs(10);
        while server.exec_requests().is_empty() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(20));
        }
        server.stop();
    });
    let started = Instant::now();
    let r = env.run(&["verify", POD]);
    let took = started.elapsed();
    cut.join().unwrap();
    let e = error(&r);
    assert!(
        e.contains("`accel-daemon verify --pod shop/cart-0` in daemon pod")
            && e.contains("the exec stream broke"),
        "{e}"
    );
    // kube leaves the output pipes open on a broken stream; waiting for
    // them would last until the exec deadline (a minute and more).
    assert!(took < Duration::from_secs(15), "took {took:?}");
}

#[test]
fn a_warning_on_stderr_does_not_fail_a_successful_verify() {
    let env = cluster();
    env.server.set_exec_handler(|_: &ExecRequest| {
        std::thread::sleep(Duration::from_millis(300));
        ExecReply::exit(0, TABLE, "WARN cannot install Ctrl-C handler\n")
    });
    let r = env.run(&["verify", POD]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.out
            .contains("warning: accel-daemon also said: WARN cannot install Ctrl-C handler"),
        "{r:?}"
    );
}

#[test]
fn bad_verify_arguments_are_usage_errors() {
    let env = Env::new();
    for args in [
        vec!["verify"],
        vec!["verify", "cart-0"],
        vec!["verify", POD, "--port", "0"],
        vec!["verify", POD, "--duration", "0"],
        vec!["verify", POD, "--duration", "soon"],
    ] {
        let r = env.run(&args);
        assert_eq!(r.code, 2, "{args:?}: {r:?}");
    }
    let r = env.run(&["verify", "cart-0"]);
    assert!(r.err.contains("NAMESPACE/POD"), "{r:?}");
    assert!(env.server.requests().is_empty(), "nothing sent");
}

/// The operator Role in manifests/README.md ("Verify from kubectl") parses
/// and grants what verify does in the add-on's namespace.
#[test]
fn the_documented_operator_role_grants_what_verify_uses() {
    use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
    let readme = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests/README.md"),
    )
    .unwrap();
    let section = readme
        .split("## Verify from kubectl")
        .nth(1)
        .expect("the section");
    let yaml = section
        .split("```yaml\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a yaml block");
    let docs: Vec<Value> = yaml
        .split("\n---\n")
        .map(|d| serde_saphyr::from_str(d).unwrap())
        .collect();
    let role: Role = serde_json::from_value(docs[0].clone()).unwrap();
    let binding: RoleBinding = serde_json::from_value(docs[1].clone()).unwrap();
    assert_eq!(role.metadata.namespace.as_deref(), Some(NS));
    assert_eq!(binding.metadata.namespace.as_deref(), Some(NS));
    assert_eq!(binding.role_ref.name, role.metadata.name.unwrap());
    let grants = |group: &str, resource: &str, verb: &str| {
        role.rules.iter().flatten().any(|r| {
            r.api_groups.iter().flatten().any(|g| g == group)
                && r.resources.iter().flatten().any(|x| x == resource)
                && r.verbs.iter().any(|v| v == verb)
        })
    };
    for (group, resource, verb) in [
        ("apps", "daemonsets", "get"),
        ("", "pods", "list"),
        ("", "pods/exec", "get"),
        ("", "pods/exec", "create"),
    ] {
        assert!(grants(group, resource, verb), "{verb} {resource}");
    }
}
