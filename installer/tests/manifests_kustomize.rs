//! The kustomize directories (base, observability): every kustomization
//! lists its object files, the installer embeds the base in the
//! kustomization's order, and the monitors select the daemon and its
//! metrics port.

mod common;

use std::collections::BTreeSet;

use serde_json::Value;

use accel_installer::manifests;
use common::manifest_files::{base_objects, docs, manifests_dir, of_kind, read};

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
