//! The manifests under manifests/: they parse into their k8s-openapi types
//! without losing a field, every container is bounded, probed and locked
//! down, RBAC is exactly the minimum, every kustomization lists its files,
//! and `render` is the manifests with only the chosen values changed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Namespace, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use accel_installer::manifests::{self, Monitor, Options};

fn manifests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests")
}

fn read(rel: &str) -> String {
    let p = manifests_dir().join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

fn docs(rel: &str) -> Vec<Value> {
    let text = read(rel);
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(&text).unwrap_or_else(|e| panic!("{rel} does not parse: {e}"));
    docs.into_iter().filter(|d| !d.is_null()).collect()
}

/// Parses `doc` as `T` and back: equal means no field was unknown to the type
/// (a misspelled or misplaced field would silently vanish otherwise).
fn typed<T: DeserializeOwned + serde::Serialize>(doc: &Value) -> T {
    let obj: T = serde_json::from_value(doc.clone())
        .unwrap_or_else(|e| panic!("{} does not parse as its type: {e}", doc["kind"]));
    let back = serde_json::to_value(&obj).unwrap();
    assert_eq!(
        &back, doc,
        "{} lost or changed fields in its typed form",
        doc["kind"]
    );
    obj
}

fn base_objects() -> Vec<Value> {
    [
        "namespace.yaml",
        "serviceaccount.yaml",
        "rbac.yaml",
        "daemonset.yaml",
        "service.yaml",
    ]
    .iter()
    .flat_map(|f| docs(&format!("base/{f}")))
    .collect()
}

fn of_kind(objs: &[Value], kind: &str) -> Value {
    objs.iter()
        .find(|o| o["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind}"))
        .clone()
}

#[test]
fn every_base_document_parses_into_its_type() {
    let objs = base_objects();
    let mut kinds = Vec::new();
    for doc in &objs {
        let kind = doc["kind"].as_str().unwrap().to_string();
        match kind.as_str() {
            "Namespace" => drop(typed::<Namespace>(doc)),
            "ServiceAccount" => drop(typed::<ServiceAccount>(doc)),
            "ClusterRole" => drop(typed::<ClusterRole>(doc)),
            "ClusterRoleBinding" => drop(typed::<ClusterRoleBinding>(doc)),
            "Service" => drop(typed::<Service>(doc)),
            "DaemonSet" => drop(typed::<DaemonSet>(doc)),
            other => panic!("unexpected kind {other} in manifests/base"),
        }
        kinds.push(kind);
    }
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "DaemonSet",
            "Namespace",
            "Service",
            "ServiceAccount"
        ]
    );
}

#[test]
fn monitors_select_the_daemon_and_its_metrics_port() {
    let objs = base_objects();
    let service = of_kind(&objs, "Service");
    let ds = of_kind(&objs, "DaemonSet");
    let sm = &docs("observability/servicemonitor.yaml")[0];
    assert_eq!(sm["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(sm["kind"], "ServiceMonitor");
    for (k, v) in sm["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(
            &service["metadata"]["labels"][k], v,
            "ServiceMonitor selects the Service by {k}"
        );
    }
    assert_eq!(
        sm["spec"]["endpoints"][0]["port"],
        service["spec"]["ports"][0]["name"]
    );
    let pm = &docs("observability/podmonitor/podmonitor.yaml")[0];
    assert_eq!(pm["kind"], "PodMonitor");
    for (k, v) in pm["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(
            &ds["spec"]["template"]["metadata"]["labels"][k], v,
            "PodMonitor selects the daemon pods by {k}"
        );
    }
    assert_eq!(
        pm["spec"]["podMetricsEndpoints"][0]["port"],
        ds["spec"]["template"]["spec"]["containers"][0]["ports"][0]["name"]
    );
    // The plain Prometheus example and the dashboard are well-formed too.
    let scrape = docs("observability/prometheus-scrape.yaml");
    assert_eq!(scrape[0][0]["job_name"], "sidecar-accel");
    let dash: Value = serde_json::from_str(&read("observability/grafana-dashboard.json")).unwrap();
    assert!(!dash["panels"].as_array().unwrap().is_empty());
}

#[test]
fn every_container_is_bounded_probed_and_locked_down() {
    let ds: DaemonSet = typed(&of_kind(&base_objects(), "DaemonSet"));
    let spec = ds.spec.unwrap();
    let pod = spec.template.spec.unwrap();
    let mut containers = pod.containers.clone();
    containers.extend(pod.init_containers.clone().unwrap_or_default());
    assert!(!containers.is_empty());
    for c in &containers {
        let name = &c.name;
        let res = c
            .resources
            .as_ref()
            .unwrap_or_else(|| panic!("{name}: no resources"));
        for (what, list) in [("requests", &res.requests), ("limits", &res.limits)] {
            let list = list.as_ref().unwrap_or_else(|| panic!("{name}: no {what}"));
            for r in ["cpu", "memory"] {
                assert!(list.contains_key(r), "{name}: no {what}.{r}");
            }
        }
        assert!(c.readiness_probe.is_some(), "{name}: no readiness probe");
        assert!(c.liveness_probe.is_some(), "{name}: no liveness probe");
        let sc = c
            .security_context
            .as_ref()
            .unwrap_or_else(|| panic!("{name}: no securityContext"));
        assert_ne!(sc.privileged, Some(true), "{name}: privileged");
        assert_eq!(
            sc.read_only_root_filesystem,
            Some(true),
            "{name}: writable root filesystem"
        );
        let caps = sc
            .capabilities
            .as_ref()
            .unwrap_or_else(|| panic!("{name}: no capabilities"));
        assert_eq!(
            caps.drop.as_deref(),
            Some(&["ALL".to_string()][..]),
            "{name}: must drop ALL"
        );
        // No teardown on pod stop: a preStop hook would unload the datapath on every restart.
        assert!(
            c.lifecycle.as_ref().is_none_or(|l| l.pre_stop.is_none()),
            "{name}: has a preStop hook"
        );
    }
    // Every added capability carries its justification on its line.
    let text = read("base/daemonset.yaml");
    let added: Vec<String> = containers[0]
        .security_context
        .as_ref()
        .and_then(|s| s.capabilities.as_ref())
        .and_then(|c| c.add.clone())
        .unwrap_or_default();
    assert!(!added.is_empty());
    for cap in &added {
        let line = text
            .lines()
            .find(|l| {
                l.trim_start().starts_with(&format!("- {cap} ")) || l.trim() == format!("- {cap}")
            })
            .unwrap_or_else(|| panic!("capability {cap} not found as a list item"));
        let comment = line.split_once('#').map(|(_, c)| c.trim()).unwrap_or("");
        assert!(
            comment.len() > 10,
            "capability {cap} has no justification comment: {line:?}"
        );
    }
}

#[test]
fn daemonset_runs_on_every_node_with_host_access_only_where_needed() {
    let ds: DaemonSet = typed(&of_kind(&base_objects(), "DaemonSet"));
    let spec = ds.spec.unwrap();
    let strategy = spec.update_strategy.unwrap();
    assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
    let pod = spec.template.spec.unwrap();
    assert_eq!(pod.host_network, Some(true));
    // Pod processes (cgroup.procs) read as 0 from a PID namespace of its own.
    assert_eq!(pod.host_pid, Some(true));
    assert_eq!(
        pod.priority_class_name.as_deref(),
        Some("system-node-critical")
    );
    let tolerations = pod.tolerations.unwrap_or_default();
    assert!(
        tolerations
            .iter()
            .any(|t| t.operator.as_deref() == Some("Exists")
                && t.key.is_none()
                && t.effect.is_none()),
        "must tolerate every taint: {tolerations:?}"
    );
    let host_paths: BTreeSet<String> = pod
        .volumes
        .unwrap_or_default()
        .iter()
        .map(|v| {
            v.host_path
                .as_ref()
                .expect("only hostPath volumes")
                .path
                .clone()
        })
        .collect();
    // No hostPath /proc: with hostPID the container's own /proc (with the
    // runtime's masked paths) shows the host's processes.
    let expected: BTreeSet<String> = ["/sys/fs/bpf", "/sys/fs/cgroup", "/run/sidecar-accel"]
        .map(String::from)
        .into();
    assert_eq!(host_paths, expected);
    let c = &pod.containers[0];
    let mounts = c.volume_mounts.clone().unwrap_or_default();
    // Bidirectional propagation is rejected by the API server for unprivileged containers.
    assert!(
        mounts
            .iter()
            .all(|m| m.mount_propagation.as_deref() != Some("Bidirectional"))
    );
    let args = c.args.clone().unwrap_or_default();
    for flag in [
        "run",
        "--endpoint-source=kubernetes",
        "--node-name=$(NODE_NAME)",
        "--cgroup=/host/sys/fs/cgroup",
        "--log-json",
    ] {
        assert!(
            args.iter().any(|a| a == flag),
            "missing daemon argument {flag}: {args:?}"
        );
    }
    let env: Vec<&str> = c
        .env
        .as_ref()
        .unwrap()
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    assert!(
        env.contains(&"NODE_NAME"),
        "the node name comes from the downward API"
    );
}

#[test]
fn rbac_grants_exactly_the_minimum() {
    let objs = base_objects();
    let role: ClusterRole = typed(&of_kind(&objs, "ClusterRole"));
    let mut granted: BTreeSet<(String, String, String)> = BTreeSet::new();
    for rule in role.rules.unwrap_or_default() {
        assert!(rule.resource_names.is_none() && rule.non_resource_urls.is_none());
        for g in rule.api_groups.clone().unwrap_or_default() {
            for r in rule.resources.clone().unwrap_or_default() {
                for v in &rule.verbs {
                    granted.insert((g.clone(), r.clone(), v.clone()));
                }
            }
        }
    }
    let expected: BTreeSet<(String, String, String)> = [
        ("", "pods", "get"),
        ("", "pods", "list"),
        ("", "pods", "watch"),
        ("", "nodes", "get"),
        ("", "nodes", "list"),
        ("", "nodes", "watch"),
        ("", "nodes", "patch"),
        ("", "events", "create"),
        ("", "events", "patch"),
        ("events.k8s.io", "events", "create"),
        ("events.k8s.io", "events", "patch"),
    ]
    .iter()
    .map(|(g, r, v)| (g.to_string(), r.to_string(), v.to_string()))
    .collect();
    assert_eq!(granted, expected);
    let binding: ClusterRoleBinding = typed(&of_kind(&objs, "ClusterRoleBinding"));
    assert_eq!(binding.role_ref.name, role.metadata.name.unwrap());
    let subjects = binding.subjects.unwrap();
    let sa: ServiceAccount = typed(&of_kind(&objs, "ServiceAccount"));
    assert_eq!(subjects.len(), 1);
    assert_eq!(subjects[0].kind, "ServiceAccount");
    assert_eq!(Some(&subjects[0].name), sa.metadata.name.as_ref());
    let ds: DaemonSet = typed(&of_kind(&objs, "DaemonSet"));
    assert_eq!(
        ds.spec.unwrap().template.spec.unwrap().service_account_name,
        sa.metadata.name
    );
}

/// Every YAML file that holds Kubernetes objects is listed by its directory's kustomization.
#[test]
fn kustomizations_list_every_object_file() {
    for dir in ["base", "observability", "observability/podmonitor"] {
        let k = &docs(&format!("{dir}/kustomization.yaml"))[0];
        let listed: BTreeSet<String> = k["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap().to_string())
            .collect();
        let mut on_disk = BTreeSet::new();
        for entry in std::fs::read_dir(manifests_dir().join(dir)).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            if !name.ends_with(".yaml") || name == "kustomization.yaml" {
                continue;
            }
            let objects = docs(&format!("{dir}/{name}"));
            if objects
                .iter()
                .all(|d| d.get("apiVersion").is_some() && d.get("kind").is_some())
            {
                on_disk.insert(name);
            } else {
                // Only the plain Prometheus example is not a Kubernetes object.
                assert_eq!(
                    name, "prometheus-scrape.yaml",
                    "{dir}/{name} is neither object nor example"
                );
            }
        }
        assert_eq!(listed, on_disk, "{dir}/kustomization.yaml resources");
    }
    // The installer embeds the base in the kustomization's order.
    let k = &docs("base/kustomization.yaml")[0];
    let order: Vec<String> = k["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| format!("base/{}", r.as_str().unwrap()))
        .collect();
    let embedded: Vec<String> = manifests::BASE.iter().map(|s| s.path.to_string()).collect();
    assert_eq!(embedded, order);
    for s in manifests::BASE {
        assert_eq!(s.text, read(s.path), "{} embedded copy is current", s.path);
    }
}

/// What `render` must produce: the files, with the kustomization's labels
/// added and only image, namespace and log level changed.
fn expected_render(namespace: &str, image: &str, monitor: Option<&str>) -> Vec<Value> {
    let mut objs = base_objects();
    if let Some(m) = monitor {
        objs.extend(docs(m));
    }
    let mut out = Vec::new();
    for mut o in objs {
        let labels = o["metadata"]["labels"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        let mut labels = json!(labels);
        for k in ["app.kubernetes.io/name", "app.kubernetes.io/part-of"] {
            if labels.get(k).is_none() {
                labels[k] = json!("sidecar-accel");
            }
        }
        o["metadata"]["labels"] = labels;
        match o["kind"].as_str().unwrap() {
            "Namespace" => o["metadata"]["name"] = json!(namespace),
            "ClusterRole" => {}
            "ClusterRoleBinding" => o["subjects"][0]["namespace"] = json!(namespace),
            _ => o["metadata"]["namespace"] = json!(namespace),
        }
        if o["kind"] == "DaemonSet" {
            let c = &mut o["spec"]["template"]["spec"]["containers"][0];
            c["image"] = json!(image);
            for e in c["env"].as_array_mut().unwrap() {
                if e["name"] == "RUST_LOG" {
                    e["value"] = json!("debug");
                }
            }
        }
        out.push(o);
    }
    out
}

fn sorted(mut v: Vec<Value>) -> Vec<Value> {
    v.sort_by_key(|o| format!("{}/{}", o["kind"], o["metadata"]["name"]));
    v
}

#[test]
fn render_is_the_manifests_with_the_chosen_values() {
    for (monitor, file) in [
        (Monitor::None, None),
        (
            Monitor::ServiceMonitor,
            Some("observability/servicemonitor.yaml"),
        ),
        (
            Monitor::PodMonitor,
            Some("observability/podmonitor/podmonitor.yaml"),
        ),
    ] {
        let opts = Options {
            namespace: "mesh-accel".into(),
            image: "example.com/accel-daemon:9.9.9".into(),
            log_level: Some("debug".into()),
            monitor,
        };
        let rendered = manifests::render(&opts).unwrap();
        assert_eq!(
            sorted(rendered.clone()),
            sorted(expected_render(
                "mesh-accel",
                "example.com/accel-daemon:9.9.9",
                file
            )),
            "{monitor:?}"
        );
        // The YAML text says the same (strings that look like booleans stay strings).
        let yaml = manifests::to_yaml(&rendered).unwrap();
        let back: Vec<Value> = serde_saphyr::from_multiple(&yaml).unwrap();
        let back: Vec<Value> = back.into_iter().filter(|d| !d.is_null()).collect();
        assert_eq!(back, rendered);
    }
    // The CLI prints the same document set.
    let mut out = Vec::new();
    let mut err = Vec::new();
    let code = accel_installer::run(
        [
            "accel-installer",
            "render",
            "--namespace",
            "mesh-accel",
            "--image",
            "example.com/accel-daemon:9.9.9",
            "--allow-version-mismatch",
            "--log-level",
            "debug",
            "--observability",
        ],
        &mut out,
        &mut err,
        false,
    );
    assert_eq!(code, 0, "{}", String::from_utf8_lossy(&err));
    let docs: Vec<Value> = serde_saphyr::from_multiple(std::str::from_utf8(&out).unwrap()).unwrap();
    let docs: Vec<Value> = docs.into_iter().filter(|d| !d.is_null()).collect();
    assert_eq!(
        sorted(docs),
        sorted(expected_render(
            "mesh-accel",
            "example.com/accel-daemon:9.9.9",
            Some("observability/servicemonitor.yaml")
        ))
    );
}

#[test]
fn default_render_uses_the_kustomization_image_and_namespace() {
    let objs = manifests::render(&Options::default()).unwrap();
    let ds = of_kind(&objs, "DaemonSet");
    let k = &docs("base/kustomization.yaml")[0];
    let image = format!(
        "{}:{}",
        k["images"][0]["newName"].as_str().unwrap(),
        k["images"][0]["newTag"].as_str().unwrap()
    );
    assert_eq!(
        ds["spec"]["template"]["spec"]["containers"][0]["image"],
        json!(image)
    );
    assert_eq!(ds["metadata"]["namespace"], k["namespace"]);
    assert_eq!(
        of_kind(&objs, "Namespace")["metadata"]["name"],
        k["namespace"]
    );
}
