//! `render` (and the `render` command): the manifests with only the chosen
//! values (image, namespace, log level, monitor) changed, and by default
//! the kustomization's image and namespace.

mod common;

use serde_json::{Value, json};

use accel_installer::manifests::{self, Monitor, Options};
use common::manifest_files::{base_objects, docs, of_kind};

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
