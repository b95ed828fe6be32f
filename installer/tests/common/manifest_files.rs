//! The files under manifests/ as the manifest tests (`manifests_*.rs`)
//! read them: raw text, YAML documents, the kustomize base's objects.

use std::path::{Path, PathBuf};

use serde_json::Value;

pub fn manifests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests")
}

pub fn read(rel: &str) -> String {
    let p = manifests_dir().join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

pub fn docs(rel: &str) -> Vec<Value> {
    let text = read(rel);
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(&text).unwrap_or_else(|e| panic!("{rel} does not parse: {e}"));
    docs.into_iter().filter(|d| !d.is_null()).collect()
}

pub fn base_objects() -> Vec<Value> {
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

pub fn of_kind(objs: &[Value], kind: &str) -> Value {
    objs.iter()
        .find(|o| o["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind}"))
        .clone()
}
