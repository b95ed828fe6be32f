//! The kustomize base's objects (manifests/base): they parse into their
//! k8s-openapi types without losing a field, every container is bounded,
//! probed and locked down, the DaemonSet reaches the host only where it
//! must, and RBAC is exactly the minimum.

mod common;

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Namespace, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use serde::de::DeserializeOwned;
use serde_json::Value;

use common::manifest_files::{base_objects, of_kind, read};

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
