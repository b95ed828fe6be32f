//! The add-on's Kubernetes objects. `manifests/` is the single source: its
//! YAML is embedded here, parsed, and changed structurally (image, namespace,
//! options), so `kubectl apply -k manifests/base`, `render` and `install`
//! produce the same objects.

use serde_json::{Map, Value, json};

use accel_k8s::keys;

/// One embedded manifest file.
#[derive(Clone, Copy, Debug)]
pub struct Source {
    /// Path below `manifests/`.
    pub path: &'static str,
    pub text: &'static str,
}

macro_rules! source {
    ($path:literal) => {
        Source {
            path: $path,
            text: include_str!(concat!("../../manifests/", $path)),
        }
    };
}

/// `manifests/base`, in the order of its kustomization's `resources`.
pub const BASE: &[Source] = &[
    source!("base/namespace.yaml"),
    source!("base/serviceaccount.yaml"),
    source!("base/rbac.yaml"),
    source!("base/daemonset.yaml"),
    source!("base/service.yaml"),
];
pub const BASE_KUSTOMIZATION: Source = source!("base/kustomization.yaml");
pub const SERVICE_MONITOR: Source = source!("observability/servicemonitor.yaml");
pub const POD_MONITOR: Source = source!("observability/podmonitor/podmonitor.yaml");

/// The Prometheus Operator API group the monitors belong to.
pub const MONITORING_GROUP: &str = "monitoring.coreos.com";

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("embedded manifest {path} does not parse: {reason}")]
    Parse { path: &'static str, reason: String },
    #[error("embedded manifest {path}: {reason}")]
    Shape { path: &'static str, reason: String },
    #[error("cannot serialize {what} as YAML: {reason}")]
    Serialize { what: String, reason: String },
}

/// Which Prometheus Operator object scrapes the daemons.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Monitor {
    None,
    ServiceMonitor,
    PodMonitor,
}

/// What `render` and `install` may change in the manifests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    pub namespace: String,
    pub image: String,
    /// `RUST_LOG` of the daemon; None keeps the manifest's.
    pub log_level: Option<String>,
    pub monitor: Monitor,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            namespace: keys::DEFAULT_NAMESPACE.to_string(),
            image: default_image(),
            log_level: None,
            monitor: Monitor::None,
        }
    }
}

/// How the API serves a kind: plural, scope, and where it goes in the apply order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KindInfo {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub namespaced: bool,
    /// Applied in ascending, deleted in descending order: what others refer to first.
    pub rank: u8,
}

#[rustfmt::skip]
pub const KINDS: &[KindInfo] = &[
    KindInfo { api_version: "v1", kind: "Namespace", plural: "namespaces", namespaced: false, rank: 0 },
    KindInfo { api_version: "v1", kind: "ServiceAccount", plural: "serviceaccounts", namespaced: true, rank: 1 },
    KindInfo { api_version: "rbac.authorization.k8s.io/v1", kind: "ClusterRole", plural: "clusterroles", namespaced: false, rank: 2 },
    KindInfo { api_version: "rbac.authorization.k8s.io/v1", kind: "ClusterRoleBinding", plural: "clusterrolebindings", namespaced: false, rank: 3 },
    KindInfo { api_version: "v1", kind: "Service", plural: "services", namespaced: true, rank: 4 },
    KindInfo { api_version: "apps/v1", kind: "DaemonSet", plural: "daemonsets", namespaced: true, rank: 5 },
    KindInfo { api_version: "monitoring.coreos.com/v1", kind: "ServiceMonitor", plural: "servicemonitors", namespaced: true, rank: 6 },
    KindInfo { api_version: "monitoring.coreos.com/v1", kind: "PodMonitor", plural: "podmonitors", namespaced: true, rank: 6 },
];

pub fn kind_info(api_version: &str, kind: &str) -> Option<&'static KindInfo> {
    KINDS
        .iter()
        .find(|k| k.api_version == api_version && k.kind == kind)
}

/// Parses one embedded file into its documents (empty documents dropped).
pub fn parse(source: &Source) -> Result<Vec<Value>, ManifestError> {
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(source.text).map_err(|e| ManifestError::Parse {
            path: source.path,
            reason: e.to_string(),
        })?;
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}

fn kustomization() -> Result<Value, ManifestError> {
    parse(&BASE_KUSTOMIZATION)?
        .into_iter()
        .next()
        .ok_or(ManifestError::Shape {
            path: BASE_KUSTOMIZATION.path,
            reason: "empty".into(),
        })
}

/// The image `kubectl apply -k manifests/base` deploys (the kustomization's
/// `images` entry); a placeholder registry until the project publishes one.
pub fn default_image() -> String {
    let fallback = format!(
        "registry.example.invalid/sidecar-accel/accel-daemon:{}",
        env!("CARGO_PKG_VERSION")
    );
    let Ok(k) = kustomization() else {
        return fallback;
    };
    let entry = k["images"].as_array().and_then(|a| a.first()).cloned();
    match entry {
        Some(e) => match (e["newName"].as_str(), e["newTag"].as_str()) {
            (Some(name), Some(tag)) => format!("{name}:{tag}"),
            (Some(name), None) => name.to_string(),
            _ => fallback,
        },
        None => fallback,
    }
}

/// Labels the kustomization adds to every object (`labels[].pairs`).
fn common_labels() -> Result<Map<String, Value>, ManifestError> {
    let k = kustomization()?;
    let mut out = Map::new();
    for entry in k["labels"].as_array().into_iter().flatten() {
        if let Some(pairs) = entry["pairs"].as_object() {
            out.extend(pairs.clone());
        }
    }
    Ok(out)
}

fn shape(path: &'static str, reason: impl Into<String>) -> ManifestError {
    ManifestError::Shape {
        path,
        reason: reason.into(),
    }
}

/// Every object to apply, in apply order, with `opts` substituted.
pub fn render(opts: &Options) -> Result<Vec<Value>, ManifestError> {
    let mut sources: Vec<Source> = BASE.to_vec();
    match opts.monitor {
        Monitor::None => {}
        Monitor::ServiceMonitor => sources.push(SERVICE_MONITOR),
        Monitor::PodMonitor => sources.push(POD_MONITOR),
    }
    let labels = common_labels()?;
    let mut out = Vec::new();
    for src in &sources {
        for mut doc in parse(src)? {
            customize(src.path, &mut doc, opts, &labels)?;
            out.push(doc);
        }
    }
    sort_for_apply(&mut out);
    Ok(out)
}

/// Apply order: what others refer to first. Stable: objects of one rank
/// keep their order.
pub fn sort_for_apply(objects: &mut [Value]) {
    objects.sort_by_key(|d| {
        kind_info(
            d["apiVersion"].as_str().unwrap_or_default(),
            d["kind"].as_str().unwrap_or_default(),
        )
        .map_or(u8::MAX, |k| k.rank)
    });
}

fn customize(
    path: &'static str,
    doc: &mut Value,
    opts: &Options,
    labels: &Map<String, Value>,
) -> Result<(), ManifestError> {
    let api_version = doc["apiVersion"].as_str().unwrap_or_default().to_string();
    let kind = doc["kind"].as_str().unwrap_or_default().to_string();
    let info = kind_info(&api_version, &kind)
        .ok_or_else(|| shape(path, format!("unexpected object {api_version} {kind}")))?;
    let meta = doc
        .get_mut("metadata")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| shape(path, format!("{kind} without metadata")))?;
    let obj_labels = meta
        .entry("labels")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .ok_or_else(|| shape(path, "metadata.labels is not a map"))?;
    for (k, v) in labels {
        obj_labels.entry(k.clone()).or_insert_with(|| v.clone());
    }
    if info.namespaced {
        meta.insert("namespace".into(), json!(opts.namespace));
    }
    match kind.as_str() {
        "Namespace" => {
            meta.insert("name".into(), json!(opts.namespace));
        }
        "ClusterRoleBinding" => {
            let subjects = doc["subjects"]
                .as_array_mut()
                .ok_or_else(|| shape(path, "ClusterRoleBinding without subjects"))?;
            for s in subjects {
                if s["kind"] == "ServiceAccount" {
                    s["namespace"] = json!(opts.namespace);
                }
            }
        }
        "DaemonSet" => {
            let containers = doc
                .pointer_mut("/spec/template/spec/containers")
                .and_then(Value::as_array_mut)
                .ok_or_else(|| shape(path, "DaemonSet without containers"))?;
            let daemon = containers
                .iter_mut()
                .find(|c| c["name"] == keys::DAEMONSET)
                .ok_or_else(|| shape(path, format!("no container named {}", keys::DAEMONSET)))?;
            daemon["image"] = json!(opts.image);
            if let Some(level) = &opts.log_level {
                let env = daemon
                    .get_mut("env")
                    .and_then(Value::as_array_mut)
                    .ok_or_else(|| shape(path, "daemon container without env"))?;
                match env.iter_mut().find(|e| e["name"] == "RUST_LOG") {
                    Some(e) => e["value"] = json!(level),
                    None => env.push(json!({"name": "RUST_LOG", "value": level})),
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// Multi-document YAML, for GitOps.
pub fn to_yaml(objects: &[Value]) -> Result<String, ManifestError> {
    let mut out = String::new();
    for obj in objects {
        let text = serde_saphyr::to_string(obj).map_err(|e| ManifestError::Serialize {
            what: format!("{} {}", obj["kind"], obj["metadata"]["name"]),
            reason: e.to_string(),
        })?;
        out.push_str("---\n");
        out.push_str(&text);
        if !text.ends_with('\n') {
            out.push('\n');
        }
    }
    Ok(out)
}

/// `Kind/name` for messages.
pub fn describe(obj: &Value) -> String {
    format!(
        "{}/{}",
        obj["kind"].as_str().unwrap_or("?"),
        obj["metadata"]["name"].as_str().unwrap_or("?")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_image_comes_from_the_kustomization() {
        assert_eq!(
            default_image(),
            "registry.example.invalid/sidecar-accel/accel-daemon:0.1.0"
        );
    }

    #[test]
    fn apply_order_puts_referenced_objects_first() {
        let opts = Options {
            monitor: Monitor::ServiceMonitor,
            ..Options::default()
        };
        let kinds: Vec<String> = render(&opts)
            .unwrap()
            .iter()
            .map(|o| o["kind"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(
            kinds,
            [
                "Namespace",
                "ServiceAccount",
                "ClusterRole",
                "ClusterRoleBinding",
                "Service",
                "DaemonSet",
                "ServiceMonitor"
            ]
        );
    }
}
