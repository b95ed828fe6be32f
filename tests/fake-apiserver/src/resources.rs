//! The static table of resource types the fake server knows, and the discovery documents built
//! from it. Kept as data so routing, discovery and the store agree on scope and kind names.

use serde_json::{Value, json};

/// One served resource type (group/version/plural).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceDef {
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    /// Has a `/status` subresource: writes to the main resource keep the stored status.
    pub status: bool,
    /// Only served when the Prometheus operator CRDs are "installed".
    pub prometheus: bool,
}

impl ResourceDef {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

macro_rules! res {
    ($g:expr, $v:expr, $p:expr, $s:expr, $k:expr, $ns:expr, $st:expr, $prom:expr) => {
        ResourceDef {
            group: $g,
            version: $v,
            plural: $p,
            singular: $s,
            kind: $k,
            namespaced: $ns,
            status: $st,
            prometheus: $prom,
        }
    };
}

pub const RESOURCES: &[ResourceDef] = &[
    res!(
        "",
        "v1",
        "namespaces",
        "namespace",
        "Namespace",
        false,
        true,
        false
    ),
    res!("", "v1", "nodes", "node", "Node", false, true, false),
    res!("", "v1", "pods", "pod", "Pod", true, true, false),
    res!(
        "", "v1", "services", "service", "Service", true, true, false
    ),
    res!(
        "",
        "v1",
        "serviceaccounts",
        "serviceaccount",
        "ServiceAccount",
        true,
        false,
        false
    ),
    res!(
        "",
        "v1",
        "configmaps",
        "configmap",
        "ConfigMap",
        true,
        false,
        false
    ),
    res!("", "v1", "events", "event", "Event", true, false, false),
    res!(
        "apps",
        "v1",
        "daemonsets",
        "daemonset",
        "DaemonSet",
        true,
        true,
        false
    ),
    res!(
        "apps",
        "v1",
        "deployments",
        "deployment",
        "Deployment",
        true,
        true,
        false
    ),
    res!(
        "rbac.authorization.k8s.io",
        "v1",
        "clusterroles",
        "clusterrole",
        "ClusterRole",
        false,
        false,
        false
    ),
    res!(
        "rbac.authorization.k8s.io",
        "v1",
        "clusterrolebindings",
        "clusterrolebinding",
        "ClusterRoleBinding",
        false,
        false,
        false
    ),
    res!(
        "rbac.authorization.k8s.io",
        "v1",
        "roles",
        "role",
        "Role",
        true,
        false,
        false
    ),
    res!(
        "rbac.authorization.k8s.io",
        "v1",
        "rolebindings",
        "rolebinding",
        "RoleBinding",
        true,
        false,
        false
    ),
    res!(
        "events.k8s.io",
        "v1",
        "events",
        "event",
        "Event",
        true,
        false,
        false
    ),
    res!(
        "monitoring.coreos.com",
        "v1",
        "servicemonitors",
        "servicemonitor",
        "ServiceMonitor",
        true,
        false,
        true
    ),
    res!(
        "monitoring.coreos.com",
        "v1",
        "podmonitors",
        "podmonitor",
        "PodMonitor",
        true,
        false,
        true
    ),
];

/// Resource index for a URL group/version/plural, honouring whether the operator CRDs exist.
pub fn by_path(group: &str, version: &str, plural: &str, prometheus: bool) -> Option<usize> {
    RESOURCES.iter().position(|r| {
        r.group == group
            && r.version == version
            && r.plural == plural
            && (prometheus || !r.prometheus)
    })
}

/// Resource index for an object's apiVersion and kind.
pub fn by_kind(api_version: &str, kind: &str) -> Option<usize> {
    RESOURCES
        .iter()
        .position(|r| r.api_version() == api_version && r.kind == kind)
}

fn groups(prometheus: bool) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for r in RESOURCES {
        if r.group.is_empty() || (r.prometheus && !prometheus) || out.contains(&r.group) {
            continue;
        }
        out.push(r.group);
    }
    out
}

pub fn version_doc() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "gitVersion": "v1.33.4",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-08-12T00:00:00Z",
        "goVersion": "go1.24.5",
        "compiler": "gc",
        "platform": "linux/amd64"
    })
}

pub fn core_versions_doc() -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:6443"}]
    })
}

pub fn group_list_doc(prometheus: bool) -> Value {
    let groups: Vec<Value> = groups(prometheus)
        .into_iter()
        .map(|g| {
            let gv = json!({"groupVersion": format!("{g}/v1"), "version": "v1"});
            json!({"name": g, "versions": [gv.clone()], "preferredVersion": gv})
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `APIResourceList` for one group/version, or None when that group is not served.
pub fn resource_list_doc(group: &str, version: &str, prometheus: bool) -> Option<Value> {
    let mut resources = Vec::new();
    for r in RESOURCES {
        if r.group != group || r.version != version || (r.prometheus && !prometheus) {
            continue;
        }
        resources.push(json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": VERBS,
        }));
        if r.status {
            resources.push(json!({
                "name": format!("{}/status", r.plural),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": r.kind,
                "verbs": ["get", "patch", "update"],
            }));
        }
    }
    if resources.is_empty() {
        return None;
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    )
}
