//! The Helm chart (manifests/helm/sidecar-accel), rendered without helm:
//! its defaults are the kustomize base object by object, each value lands
//! where it should, and bad values fail naming the value.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use accel_installer::chart::{Chart, ChartError, Request};
use accel_installer::manifests::{self, Monitor, Options};

fn chart_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests/helm/sidecar-accel")
}

fn chart() -> Chart {
    Chart::load(&chart_dir()).unwrap()
}

fn request(sets: &[&str]) -> Request {
    Request {
        release: "sidecar-accel".into(),
        namespace: "sidecar-accel-system".into(),
        sets: sets.iter().map(|s| s.to_string()).collect(),
        ..Request::default()
    }
}

fn render(sets: &[&str]) -> Vec<Value> {
    chart()
        .render(&request(sets))
        .unwrap_or_else(|e| panic!("render {sets:?}: {e}"))
}

fn render_err(sets: &[&str]) -> String {
    match chart().render(&request(sets)) {
        Ok(objs) => panic!("{sets:?} rendered: {objs:?}"),
        Err(e) => e.to_string(),
    }
}

fn sorted(mut v: Vec<Value>) -> Vec<Value> {
    v.sort_by_key(|o| format!("{}/{}", o["kind"], o["metadata"]["name"]));
    v
}

fn of_kind(objs: &[Value], kind: &str) -> Value {
    objs.iter()
        .find(|o| o["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind}"))
        .clone()
}

fn pod_spec(objs: &[Value]) -> Value {
    of_kind(objs, "DaemonSet")["spec"]["template"]["spec"].clone()
}

fn container(objs: &[Value]) -> Value {
    pod_spec(objs)["containers"][0].clone()
}

/// Object by object, so a difference names its object.
fn assert_same_objects(chart: Vec<Value>, base: Vec<Value>) {
    let (chart, base) = (sorted(chart), sorted(base));
    let names = |v: &[Value]| -> Vec<String> { v.iter().map(manifests::describe).collect() };
    assert_eq!(names(&chart), names(&base), "the same objects");
    for (c, b) in chart.iter().zip(&base) {
        assert_eq!(
            c,
            b,
            "{} differs from the kustomize base",
            manifests::describe(b)
        );
    }
}

#[test]
fn default_values_render_the_kustomize_base() {
    assert_same_objects(render(&[]), manifests::render(&Options::default()).unwrap());
}

#[test]
fn monitor_toggles_render_the_observability_objects() {
    for (set, monitor) in [
        (
            "metrics.serviceMonitor.enabled=true",
            Monitor::ServiceMonitor,
        ),
        ("metrics.podMonitor.enabled=true", Monitor::PodMonitor),
    ] {
        let base = manifests::render(&Options {
            monitor,
            ..Options::default()
        })
        .unwrap();
        assert_same_objects(render(&[set]), base);
    }
    let e = render_err(&[
        "metrics.serviceMonitor.enabled=true",
        "metrics.podMonitor.enabled=true",
    ]);
    assert!(e.contains("enable one or the other"), "{e}");
}

/// The daemon refuses `--flow-budget-bytes 0` without
/// `--allow-no-flow-control`; the chart says so at install time instead of
/// rendering a DaemonSet whose pods would crash-loop.
#[test]
fn flow_control_off_needs_the_allow_flag_in_extra_args() {
    let e = render_err(&["flowBudgetBytes=0"]);
    assert!(
        e.contains("flowBudgetBytes") && e.contains("--allow-no-flow-control"),
        "{e}"
    );
    let objs = render(&[
        "flowBudgetBytes=0",
        "extraArgs={--log-json,--allow-no-flow-control}",
    ]);
    let args = container(&objs)["args"].clone();
    for flag in ["--flow-budget-bytes=0", "--allow-no-flow-control"] {
        assert!(
            args.as_array().is_some_and(|a| a.iter().any(|x| x == flag)),
            "{flag} in {args}"
        );
    }
}

#[test]
fn chart_version_is_the_workspace_version() {
    let c = chart();
    assert_eq!(c.meta["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(c.meta["appVersion"], env!("CARGO_PKG_VERSION"));
}

#[test]
fn values_land_where_expected() {
    let objs = chart()
        .render(&Request {
            files: vec![json!({
                "tolerations": [
                    {"key": "dedicated", "operator": "Equal", "value": "mesh", "effect": "NoSchedule"},
                    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "tolerationSeconds": 300}
                ],
                "nodeSelector": {"node.kubernetes.io/instance-type": "ecs.g7.large"},
                // Maps merge key by key, as in Helm; null drops a default.
                "resources": {"requests": {"cpu": "50m"}, "limits": {"cpu": null, "memory": "256Mi"}},
                "imagePullSecrets": [{"name": "acr"}],
                "extraArgs": ["--allow-no-flow-control"],
            })],
            ..request(&[
                "podAcceleration=proxy-only",
                "proxyUid=1500",
                "flowBudgetBytes=0",
                "metrics.port=19464",
                "priorityClassName=",
                "logLevel=debug",
                "namespace.name=mesh-accel",
                "namespace.create=false",
                "image.repository=example.com/accel",
                "image.tag=v0.1.0",
                "image.pullPolicy=Always",
                "metrics.serviceMonitor.enabled=true",
                "metrics.serviceMonitor.interval=15s",
            ])
        })
        .unwrap();
    let pod = pod_spec(&objs);
    assert_eq!(
        pod["tolerations"],
        json!([
            {"key": "dedicated", "operator": "Equal", "value": "mesh", "effect": "NoSchedule"},
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "tolerationSeconds": 300}
        ])
    );
    assert_eq!(
        pod["nodeSelector"],
        json!({"node.kubernetes.io/instance-type": "ecs.g7.large"})
    );
    assert!(pod.get("priorityClassName").is_none(), "{pod}");
    assert_eq!(pod["imagePullSecrets"], json!([{"name": "acr"}]));
    // The built-in affinity stays: virtual nodes are never targeted.
    assert!(pod["affinity"].to_string().contains("virtual-kubelet"));
    let c = container(&objs);
    assert_eq!(c["image"], "example.com/accel:v0.1.0");
    assert_eq!(c["imagePullPolicy"], "Always");
    assert_eq!(
        c["resources"],
        json!({"requests": {"cpu": "50m", "memory": "32Mi"}, "limits": {"memory": "256Mi"}})
    );
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    for flag in [
        "--pod-acceleration=proxy-only",
        "--proxy-uid=1500",
        "--flow-budget-bytes=0",
        "--metrics-addr=$(HOST_IP):19464",
        "--allow-no-flow-control",
    ] {
        assert!(args.contains(&flag), "{flag} in {args:?}");
    }
    assert_eq!(c["ports"][0]["containerPort"], 19464);
    assert_eq!(c["env"][2], json!({"name": "RUST_LOG", "value": "debug"}));
    let svc = of_kind(&objs, "Service");
    assert_eq!(svc["spec"]["ports"][0]["port"], 19464);
    // Every namespaced object in the chosen namespace, which is not created.
    assert!(objs.iter().all(|o| o["kind"] != "Namespace"));
    for o in &objs {
        if !o["kind"].as_str().unwrap().starts_with("Cluster") {
            assert_eq!(
                o["metadata"]["namespace"],
                "mesh-accel",
                "{}",
                manifests::describe(o)
            );
        }
    }
    assert_eq!(
        of_kind(&objs, "ClusterRoleBinding")["subjects"][0]["namespace"],
        "mesh-accel"
    );
    let sm = of_kind(&objs, "ServiceMonitor");
    assert_eq!(sm["spec"]["endpoints"][0]["interval"], "15s");
    assert!(objs.iter().all(|o| o["kind"] != "PodMonitor"));
}

#[test]
fn image_is_repository_tag_and_digest() {
    let digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    for (sets, want) in [
        (
            vec![],
            "registry.example.invalid/sidecar-accel/accel-daemon:0.1.0".to_string(),
        ),
        (
            vec!["image.repository=r.example:5000/a".to_string()],
            "r.example:5000/a:0.1.0".to_string(),
        ),
        (
            vec![format!("image.digest={digest}")],
            format!("registry.example.invalid/sidecar-accel/accel-daemon@{digest}"),
        ),
        (
            vec![
                format!("image.digest={digest}"),
                "image.tag=0.1.0".to_string(),
            ],
            format!("registry.example.invalid/sidecar-accel/accel-daemon:0.1.0@{digest}"),
        ),
    ] {
        let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
        assert_eq!(container(&render(&sets))["image"], want, "{sets:?}");
    }
}

#[test]
fn every_mode_renders() {
    for mode in ["auto", "app-safe", "all", "proxy-only"] {
        let args = container(&render(&[&format!("podAcceleration={mode}")]))["args"].clone();
        let flag = format!("--pod-acceleration={mode}");
        assert!(
            args.as_array().unwrap().iter().any(|a| a == &flag),
            "{args}"
        );
    }
}

#[test]
fn bad_values_fail_naming_the_value() {
    for (set, want) in [
        (
            "podAcceleration=fast",
            r#"podAcceleration: "fast" is not one of auto, app-safe, all, proxy-only"#,
        ),
        (
            "flowBudgetBytes=lots",
            r#"flowBudgetBytes: "lots" is not an integer"#,
        ),
        ("proxyUid=-1", "proxyUid: -1 is below the minimum 0"),
        (
            "metrics.port=70000",
            "metrics.port: 70000 is above the maximum 65535",
        ),
        (
            "metrics.serviceMonitor.enabled=yes",
            r#"metrics.serviceMonitor.enabled: "yes" is not a boolean"#,
        ),
        (
            "tolerations=Exists",
            r#"tolerations: "Exists" is not an array"#,
        ),
        (
            "image.repository=",
            r#"image.repository: "" is shorter than 1 character(s)"#,
        ),
        (
            "podAccelaration=all",
            "podAccelaration: unknown value (the chart has no such setting)",
        ),
    ] {
        let e = render_err(&[set]);
        assert_eq!(e, format!("invalid values: {want}"), "{set}");
    }
    // A --set that is not KEY=VALUE names itself.
    assert!(render_err(&["podAcceleration"]).contains("--set podAcceleration"));
    // A values file of the wrong shape too.
    let err = chart()
        .render(&Request {
            files: vec![json!({"nodeSelector": {"zone": 1}})],
            ..request(&[])
        })
        .unwrap_err();
    assert!(matches!(err, ChartError::Values(_)), "{err}");
    assert!(
        err.to_string()
            .contains("nodeSelector.zone: 1 is not a string"),
        "{err}"
    );
}
