//! Pods as the API server (or anyone who can create a pod) hands them to
//! the daemon's watcher: either a whole JSON object, or a meshed pod whose
//! annotations (opt-out, Istio exclusions) carry the fuzzer's strings.
//! Classification must never panic, and a pod it accepts must be sane.
#![no_main]

use std::collections::BTreeMap;

use accel_k8s::{
    keys,
    mesh::{self, PodClass},
};
use k8s_openapi::api::core::v1::{Container, Pod, PodIP, PodSpec, PodStatus};
use libfuzzer_sys::fuzz_target;

/// A running pod with an istio-proxy sidecar and the given annotations.
fn meshed_pod(annotations: BTreeMap<String, String>) -> Pod {
    let mut pod = Pod::default();
    pod.metadata.name = Some("p".into());
    pod.metadata.namespace = Some("ns".into());
    pod.metadata.annotations = Some(annotations);
    pod.spec = Some(PodSpec {
        containers: vec![
            Container {
                name: "app".into(),
                ..Default::default()
            },
            Container {
                name: keys::ISTIO_PROXY_CONTAINER.into(),
                ..Default::default()
            },
        ],
        ..Default::default()
    });
    pod.status = Some(PodStatus {
        phase: Some("Running".into()),
        pod_ip: Some("10.244.0.7".into()),
        pod_ips: Some(vec![PodIP {
            ip: "10.244.0.7".into(),
        }]),
        ..Default::default()
    });
    pod
}

fn check(pod: &Pod) {
    if let PodClass::Meshed(m) = mesh::classify(pod) {
        assert!(!m.ips.is_empty(), "meshed without an address: {m:?}");
        assert!(!m.exclude_inbound_ports.contains(&0));
        assert!(!m.exclude_outbound_ports.contains(&0));
        for c in &m.exclude_outbound_ip_ranges {
            assert!(c.prefix <= if c.addr.is_ipv4() { 32 } else { 128 });
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        if let Ok(pod) = serde_json::from_slice::<Pod>(rest) {
            check(&pod);
        }
        return;
    }
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let keys = [
        keys::POD_OPT_OUT_ANNOTATION,
        keys::ISTIO_EXCLUDE_INBOUND_PORTS,
        keys::ISTIO_EXCLUDE_OUTBOUND_PORTS,
        keys::ISTIO_EXCLUDE_OUTBOUND_IP_RANGES,
        keys::ISTIO_SIDECAR_STATUS,
    ];
    let annotations = keys
        .iter()
        .zip(text.split('\n'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    check(&meshed_pod(annotations));
});
