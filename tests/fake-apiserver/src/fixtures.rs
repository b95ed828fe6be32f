//! Realistic objects as `serde_json::Value`, shaped like what a 1.33 cluster with Istio 1.24
//! returns (trimmed to the fields tools read). Feed them to `FakeApiServer::upsert`.

use serde_json::{Value, json};

/// Istio proxy version used by the pod fixtures.
pub const ISTIO_VERSION: &str = "1.24.2";
pub const PROXY_IMAGE: &str = "docker.io/istio/proxyv2:1.24.2";

/// A stable 10.0.x.y address for `node`, so a pod's hostIP matches its node's InternalIP.
pub fn node_ip(node: &str) -> String {
    let h = node.bytes().fold(2166136261u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(16777619)
    });
    format!("10.0.{}.{}", (h >> 8) % 250 + 1, h % 250 + 2)
}

fn container_id(seed: &str) -> String {
    let mut h: u64 = 1469598103934665603;
    let mut out = String::from("containerd://");
    for i in 0..4u64 {
        for b in seed.bytes().chain(i.to_le_bytes()) {
            h = (h ^ u64::from(b)).wrapping_mul(1099511628211);
        }
        out.push_str(&format!("{h:016x}"));
    }
    out
}

pub fn namespace(name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name}},
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"}
    })
}

/// A namespace labelled for Istio sidecar injection.
pub fn injected_namespace(name: &str) -> Value {
    with_label(namespace(name), "istio-injection", "enabled")
}

/// A Ready linux worker node (containerd, kubelet v1.33.4).
pub fn node(name: &str, kernel_version: &str, os_image: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "beta.kubernetes.io/arch": "amd64",
                "beta.kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "node.kubernetes.io/instance-type": "ecs.g7.xlarge",
                "topology.kubernetes.io/region": "cn-hangzhou",
                "topology.kubernetes.io/zone": "cn-hangzhou-k"
            },
            "annotations": {
                "node.alpha.kubernetes.io/ttl": "0",
                "volumes.kubernetes.io/controller-managed-attach-detach": "true"
            }
        },
        "spec": {"podCIDR": "172.20.0.0/24", "podCIDRs": ["172.20.0.0/24"]},
        "status": {
            "addresses": [
                {"type": "InternalIP", "address": node_ip(name)},
                {"type": "Hostname", "address": name}
            ],
            "capacity": {"cpu": "4", "memory": "16073124Ki", "pods": "110", "ephemeral-storage": "123722704Ki"},
            "allocatable": {"cpu": "3900m", "memory": "13807524Ki", "pods": "110", "ephemeral-storage": "114022843818"},
            "conditions": [
                {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory",
                 "message": "kubelet has sufficient memory available",
                 "lastHeartbeatTime": "2026-11-23T10:00:00Z", "lastTransitionTime": "2026-11-01T10:00:00Z"},
                {"type": "DiskPressure", "status": "False", "reason": "KubeletHasNoDiskPressure",
                 "message": "kubelet has no disk pressure",
                 "lastHeartbeatTime": "2026-11-23T10:00:00Z", "lastTransitionTime": "2026-11-01T10:00:00Z"},
                {"type": "PIDPressure", "status": "False", "reason": "KubeletHasSufficientPID",
                 "message": "kubelet has sufficient PID available",
                 "lastHeartbeatTime": "2026-11-23T10:00:00Z", "lastTransitionTime": "2026-11-01T10:00:00Z"},
                {"type": "Ready", "status": "True", "reason": "KubeletReady",
                 "message": "kubelet is posting ready status",
                 "lastHeartbeatTime": "2026-11-23T10:00:00Z", "lastTransitionTime": "2026-11-01T10:00:00Z"}
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "architecture": "amd64",
                "bootID": "5c3b4c9e-9a0e-4f53-8a55-6a3c2b1d0e11",
                "containerRuntimeVersion": "containerd://1.7.22",
                "kernelVersion": kernel_version,
                "kubeProxyVersion": "",
                "kubeletVersion": "v1.33.4",
                "machineID": "20231123000000000000000000000001",
                "operatingSystem": "linux",
                "osImage": os_image,
                "systemUUID": "e7b1c1a8-0000-4000-8000-000000000001"
            }
        }
    })
}

/// An ACK virtual-kubelet node (ECI): no kernel of its own, tainted so only pods that
/// tolerate it land there. Assumed shape: label `type=virtual-kubelet`, taint
/// `virtual-kubelet.io/provider=alibabacloud:NoSchedule`, empty kernelVersion/osImage.
pub fn virtual_node(name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "alibabacloud.com/virtual-node": "true",
                "beta.kubernetes.io/arch": "amd64",
                "beta.kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/role": "agent",
                "service.alibabacloud.com/exclude-node": "true",
                "type": "virtual-kubelet"
            }
        },
        "spec": {
            "taints": [{"key": "virtual-kubelet.io/provider", "value": "alibabacloud", "effect": "NoSchedule"}]
        },
        "status": {
            "addresses": [
                {"type": "InternalIP", "address": node_ip(name)},
                {"type": "Hostname", "address": name}
            ],
            "capacity": {"cpu": "2k", "memory": "8Ti", "pods": "20k"},
            "allocatable": {"cpu": "2k", "memory": "8Ti", "pods": "20k"},
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "ok",
                 "lastHeartbeatTime": "2026-11-23T10:00:00Z", "lastTransitionTime": "2026-11-01T10:00:00Z"}
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "architecture": "amd64",
                "bootID": "",
                "containerRuntimeVersion": "",
                "kernelVersion": "",
                "kubeProxyVersion": "",
                "kubeletVersion": "v1.33.4-vk-v2.14.2",
                "machineID": "",
                "operatingSystem": "linux",
                "osImage": "",
                "systemUUID": ""
            }
        }
    })
}

fn app_name(pod: &str) -> String {
    // Deployment pods are named <app>-<rs hash>-<suffix>; the app is what precedes them.
    let parts: Vec<&str> = pod.split('-').collect();
    if parts.len() >= 3 {
        parts[..parts.len() - 2].join("-")
    } else {
        pod.to_string()
    }
}

fn app_container(app: &str) -> Value {
    json!({
        "name": "app",
        "image": format!("registry.example.com/{app}:v1"),
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"containerPort": 8080, "name": "http", "protocol": "TCP"}],
        "resources": {},
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File"
    })
}

fn istio_init() -> Value {
    json!({
        "name": "istio-init",
        "image": PROXY_IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "args": ["istio-iptables", "-p", "15001", "-z", "15006", "-u", "1337", "-m", "REDIRECT",
                 "-i", "*", "-x", "", "-b", "*", "-d", "15090,15021,15020", "--log_output_level=default:info"],
        "resources": {"limits": {"cpu": "2", "memory": "1Gi"}, "requests": {"cpu": "10m", "memory": "40Mi"}},
        "securityContext": {
            "allowPrivilegeEscalation": false,
            "capabilities": {"add": ["NET_ADMIN", "NET_RAW"], "drop": ["ALL"]},
            "privileged": false, "readOnlyRootFilesystem": false,
            "runAsGroup": 0, "runAsNonRoot": false, "runAsUser": 0
        }
    })
}

fn istio_proxy(ns: &str, native: bool) -> Value {
    let mut c = json!({
        "name": "istio-proxy",
        "image": PROXY_IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "args": ["proxy", "sidecar", "--domain", "$(POD_NAMESPACE).svc.cluster.local",
                 "--proxyLogLevel=warning", "--proxyComponentLogLevel=misc:error", "--log_output_level=default:info"],
        "env": [
            {"name": "PILOT_CERT_PROVIDER", "value": "istiod"},
            {"name": "CA_ADDR", "value": "istiod.istio-system.svc:15012"},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}},
            {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}},
            {"name": "INSTANCE_IP", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "status.podIP"}}},
            {"name": "ISTIO_META_CLUSTER_ID", "value": "Kubernetes"},
            {"name": "ISTIO_META_MESH_ID", "value": "cluster.local"},
            {"name": "TRUST_DOMAIN", "value": "cluster.local"},
            {"name": "ISTIO_META_WORKLOAD_NAME", "value": ns}
        ],
        "ports": [{"containerPort": 15090, "name": "http-envoy-prom", "protocol": "TCP"}],
        "readinessProbe": {"failureThreshold": 4, "httpGet": {"path": "/healthz/ready", "port": 15021, "scheme": "HTTP"},
                           "periodSeconds": 15, "successThreshold": 1, "timeoutSeconds": 3},
        "resources": {"limits": {"cpu": "2", "memory": "1Gi"}, "requests": {"cpu": "100m", "memory": "128Mi"}},
        "securityContext": {
            "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]},
            "privileged": false, "readOnlyRootFilesystem": true,
            "runAsGroup": 1337, "runAsNonRoot": true, "runAsUser": 1337
        },
        "volumeMounts": [
            {"mountPath": "/var/run/secrets/workload-spiffe-uds", "name": "workload-socket"},
            {"mountPath": "/var/run/secrets/istio", "name": "istiod-ca-cert"},
            {"mountPath": "/var/lib/istio/data", "name": "istio-data"},
            {"mountPath": "/etc/istio/proxy", "name": "istio-envoy"},
            {"mountPath": "/var/run/secrets/tokens", "name": "istio-token"},
            {"mountPath": "/etc/istio/pod", "name": "istio-podinfo"}
        ]
    });
    if native {
        c["restartPolicy"] = json!("Always");
        c["startupProbe"] = json!({"failureThreshold": 600, "httpGet": {"path": "/healthz/ready", "port": 15021, "scheme": "HTTP"},
                                   "periodSeconds": 1, "successThreshold": 1, "timeoutSeconds": 3});
    }
    c
}

fn istio_volumes() -> Value {
    json!([
        {"name": "workload-socket", "emptyDir": {}},
        {"name": "credential-socket", "emptyDir": {}},
        {"name": "workload-certs", "emptyDir": {}},
        {"name": "istio-envoy", "emptyDir": {"medium": "Memory"}},
        {"name": "istio-data", "emptyDir": {}},
        {"name": "istio-podinfo", "downwardAPI": {"defaultMode": 420, "items": [
            {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.labels"}, "path": "labels"},
            {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.annotations"}, "path": "annotations"}]}},
        {"name": "istio-token", "projected": {"defaultMode": 420, "sources": [
            {"serviceAccountToken": {"audience": "istio-ca", "expirationSeconds": 43200, "path": "istio-token"}}]}},
        {"name": "istiod-ca-cert", "configMap": {"defaultMode": 420, "name": "istio-ca-root-cert"}}
    ])
}

fn container_status(name: &str, image: &str, pod: &str, ready: bool, restart: bool) -> Value {
    let mut s = json!({
        "name": name,
        "image": image,
        "imageID": format!("{image}@sha256:0000000000000000000000000000000000000000000000000000000000000000"),
        "containerID": container_id(&format!("{pod}/{name}")),
        "ready": ready,
        "restartCount": 0,
        "started": ready,
        "state": if ready {
            json!({"running": {"startedAt": "2026-11-23T10:00:05Z"}})
        } else {
            json!({"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": "2026-11-23T10:00:01Z",
                                  "finishedAt": "2026-11-23T10:00:02Z",
                                  "containerID": container_id(&format!("{pod}/{name}"))}})
        }
    });
    if restart {
        s["started"] = json!(true);
    }
    s
}

fn base_pod(ns: &str, name: &str, node: &str, ips: &[&str]) -> Value {
    let app = app_name(name);
    let pod_ips: Vec<Value> = ips.iter().map(|ip| json!({"ip": ip})).collect();
    let mut status = json!({
        "phase": "Running",
        "hostIP": node_ip(node),
        "hostIPs": [{"ip": node_ip(node)}],
        "qosClass": "Burstable",
        "startTime": "2026-11-23T10:00:00Z",
        "conditions": [
            {"type": "PodReadyToStartContainers", "status": "True", "lastTransitionTime": "2026-11-23T10:00:02Z"},
            {"type": "Initialized", "status": "True", "lastTransitionTime": "2026-11-23T10:00:03Z"},
            {"type": "Ready", "status": "True", "lastTransitionTime": "2026-11-23T10:00:08Z"},
            {"type": "ContainersReady", "status": "True", "lastTransitionTime": "2026-11-23T10:00:08Z"},
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-11-23T10:00:00Z"}
        ],
        "containerStatuses": [container_status("app", &format!("registry.example.com/{app}:v1"), name, true, false)]
    });
    if let Some(first) = ips.first() {
        status["podIP"] = json!(first);
        status["podIPs"] = json!(pod_ips);
    }
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": ns,
            "generateName": format!("{}-", name.rsplit_once('-').map(|(p, _)| p).unwrap_or(name)),
            "labels": {"app": app, "pod-template-hash": "7d4b9c8f6d"},
            "annotations": {}
        },
        "spec": {
            "containers": [app_container(&app)],
            "dnsPolicy": "ClusterFirst",
            "enableServiceLinks": true,
            "nodeName": node,
            "preemptionPolicy": "PreemptLowerPriority",
            "priority": 0,
            "restartPolicy": "Always",
            "schedulerName": "default-scheduler",
            "securityContext": {},
            "serviceAccount": "default",
            "serviceAccountName": "default",
            "terminationGracePeriodSeconds": 30,
            "tolerations": [
                {"effect": "NoExecute", "key": "node.kubernetes.io/not-ready", "operator": "Exists", "tolerationSeconds": 300},
                {"effect": "NoExecute", "key": "node.kubernetes.io/unreachable", "operator": "Exists", "tolerationSeconds": 300}
            ]
        },
        "status": status
    })
}

/// A running pod without a mesh sidecar.
pub fn plain_pod(ns: &str, name: &str, node: &str, ips: &[&str]) -> Value {
    base_pod(ns, name, node, ips)
}

fn istio_labels_annotations(pod: &mut Value, sidecar_status: Value) {
    let app = pod["metadata"]["labels"]["app"].clone();
    let labels = &mut pod["metadata"]["labels"];
    labels["security.istio.io/tlsMode"] = json!("istio");
    labels["service.istio.io/canonical-name"] = app;
    labels["service.istio.io/canonical-revision"] = json!("latest");
    let ann = &mut pod["metadata"]["annotations"];
    ann["istio.io/rev"] = json!("default");
    ann["kubectl.kubernetes.io/default-container"] = json!("app");
    ann["kubectl.kubernetes.io/default-logs-container"] = json!("app");
    ann["prometheus.io/path"] = json!("/stats/prometheus");
    ann["prometheus.io/port"] = json!("15020");
    ann["prometheus.io/scrape"] = json!("true");
    ann["sidecar.istio.io/status"] = json!(sidecar_status.to_string());
}

/// A pod injected by Istio with the classic sidecar: init container `istio-init`, containers
/// `app` and `istio-proxy`.
pub fn istio_pod(ns: &str, name: &str, node: &str, ips: &[&str]) -> Value {
    let mut pod = base_pod(ns, name, node, ips);
    istio_labels_annotations(
        &mut pod,
        json!({"initContainers": ["istio-init"], "containers": ["istio-proxy"],
               "volumes": ["workload-socket", "credential-socket", "workload-certs", "istio-envoy",
                           "istio-data", "istio-podinfo", "istio-token", "istiod-ca-cert"],
               "imagePullSecrets": null, "revision": "default"}),
    );
    pod["spec"]["initContainers"] = json!([istio_init()]);
    if let Some(cs) = pod["spec"]["containers"].as_array_mut() {
        cs.push(istio_proxy(ns, false));
    }
    pod["spec"]["volumes"] = istio_volumes();
    pod["status"]["initContainerStatuses"] = json!([container_status(
        "istio-init",
        PROXY_IMAGE,
        name,
        false,
        false
    )]);
    if let Some(cs) = pod["status"]["containerStatuses"].as_array_mut() {
        cs.push(container_status(
            "istio-proxy",
            PROXY_IMAGE,
            name,
            true,
            false,
        ));
    }
    pod
}

/// A pod injected with Istio native sidecars (Kubernetes sidecar containers): `istio-proxy`
/// is an init container with `restartPolicy: Always`, and `containers` holds only the app.
pub fn native_sidecar_pod(ns: &str, name: &str, node: &str, ips: &[&str]) -> Value {
    let mut pod = base_pod(ns, name, node, ips);
    istio_labels_annotations(
        &mut pod,
        json!({"initContainers": ["istio-init", "istio-proxy"], "containers": null,
               "volumes": ["workload-socket", "credential-socket", "workload-certs", "istio-envoy",
                           "istio-data", "istio-podinfo", "istio-token", "istiod-ca-cert"],
               "imagePullSecrets": null, "revision": "default"}),
    );
    pod["spec"]["initContainers"] = json!([istio_init(), istio_proxy(ns, true)]);
    pod["spec"]["volumes"] = istio_volumes();
    pod["status"]["initContainerStatuses"] = json!([
        container_status("istio-init", PROXY_IMAGE, name, false, false),
        container_status("istio-proxy", PROXY_IMAGE, name, true, true)
    ]);
    pod
}

fn deployment(ns: &str, name: &str, labels: Value, image: &str, replicas: i64) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "labels": labels.clone()},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": labels["app"], "istio.io/rev": labels["istio.io/rev"]}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "100%", "maxUnavailable": "25%"}},
            "template": {
                "metadata": {"labels": labels, "annotations": {"sidecar.istio.io/inject": "false"}},
                "spec": {
                    "serviceAccountName": "istiod",
                    "containers": [{
                        "name": "discovery",
                        "image": image,
                        "args": ["discovery", "--monitoringAddr=:15014", "--log_output_level=default:info",
                                 "--domain", "cluster.local", "--keepaliveMaxServerConnectionAge", "30m"],
                        "ports": [
                            {"containerPort": 8080, "name": "http-debug", "protocol": "TCP"},
                            {"containerPort": 15010, "name": "grpc-xds", "protocol": "TCP"},
                            {"containerPort": 15012, "name": "tls-xds", "protocol": "TCP"},
                            {"containerPort": 15017, "name": "https-webhooks", "protocol": "TCP"},
                            {"containerPort": 15014, "name": "http-monitoring", "protocol": "TCP"}
                        ]
                    }]
                }
            }
        }
    })
}

/// The upstream istiod Deployment: named `istiod` for revision "default" (or ""), otherwise
/// `istiod-<revision>`, labels app=istiod, istio=pilot, istio.io/rev.
pub fn istiod_deployment(ns: &str, revision: &str) -> Value {
    let rev = if revision.is_empty() {
        "default"
    } else {
        revision
    };
    let name = if rev == "default" {
        "istiod".to_string()
    } else {
        format!("istiod-{rev}")
    };
    let labels = json!({
        "app": "istiod", "istio": "pilot", "istio.io/rev": rev,
        "install.operator.istio.io/owning-resource": "unknown",
        "operator.istio.io/component": "Pilot",
        "app.kubernetes.io/name": "istiod", "app.kubernetes.io/version": ISTIO_VERSION
    });
    deployment(
        ns,
        &name,
        labels,
        &format!("docker.io/istio/pilot:{ISTIO_VERSION}"),
        1,
    )
}

/// ASSUMED shape of an Alibaba Cloud Service Mesh (ASM) data-plane-side istiod: nothing in the
/// project's reference material shows ASM objects, so this mirrors upstream with ASM-style
/// naming (revision like "1-22-6", image from the ACS registry, label `provider=asm`).
pub fn asm_istiod_deployment(ns: &str, revision: &str) -> Value {
    let rev = if revision.is_empty() {
        "1-22-6"
    } else {
        revision
    };
    let labels = json!({
        "app": "istiod", "istio": "pilot", "istio.io/rev": rev, "provider": "asm"
    });
    deployment(
        ns,
        &format!("istiod-{rev}"),
        labels,
        "registry-cn-hangzhou-vpc.ack.aliyuncs.com/acs/pilot:v1.22.6.43-g4d1a7b5c-aliyun",
        1,
    )
}

/// The running pod the DaemonSet `ds` (as stored: apply it first) would create on `node`:
/// named `<ds>-<node>`, labelled and specified by its template, owned by it, Ready, with the
/// node's address (a hostNetwork daemon's). The fake server runs no DaemonSet controller.
pub fn daemonset_pod(ds: &Value, node: &str) -> Value {
    let ds_name = ds["metadata"]["name"].as_str().unwrap_or("daemonset");
    let name = format!("{ds_name}-{node}");
    let template = &ds["spec"]["template"];
    let mut spec = template["spec"].clone();
    spec["nodeName"] = json!(node);
    let statuses: Vec<Value> = spec["containers"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .map(|c| {
                    let cname = c["name"].as_str().unwrap_or("c");
                    container_status(cname, c["image"].as_str().unwrap_or(""), &name, true, false)
                })
                .collect()
        })
        .unwrap_or_default();
    let ip = node_ip(node);
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": ds["metadata"]["namespace"],
            "labels": template["metadata"]["labels"],
            "annotations": template["metadata"]["annotations"],
            "ownerReferences": [{
                "apiVersion": "apps/v1", "kind": "DaemonSet", "name": ds_name,
                "uid": ds["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true
            }]
        },
        "spec": spec,
        "status": {
            "phase": "Running",
            "hostIP": ip, "hostIPs": [{"ip": ip}],
            "podIP": ip, "podIPs": [{"ip": ip}],
            "startTime": "2026-11-23T10:00:00Z",
            "conditions": [
                {"type": "Ready", "status": "True", "lastTransitionTime": "2026-11-23T10:00:08Z"},
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-11-23T10:00:00Z"}
            ],
            "containerStatuses": statuses
        }
    })
}

fn set_meta(mut obj: Value, field: &str, k: &str, v: &str) -> Value {
    if !obj["metadata"][field].is_object() {
        obj["metadata"][field] = json!({});
    }
    obj["metadata"][field][k] = json!(v);
    obj
}

pub fn with_annotation(obj: Value, k: &str, v: &str) -> Value {
    set_meta(obj, "annotations", k, v)
}

pub fn with_label(obj: Value, k: &str, v: &str) -> Value {
    set_meta(obj, "labels", k, v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_deserialize_as_typed_objects() {
        let status = istio_pod("ns", "web-7d4b9c8f6d-abcde", "n1", &["172.20.0.5"]);
        assert_eq!(status["metadata"]["labels"]["app"], "web");
        let ann = status["metadata"]["annotations"]["sidecar.istio.io/status"]
            .as_str()
            .unwrap();
        let parsed: Value = serde_json::from_str(ann).unwrap();
        assert_eq!(parsed["containers"][0], "istio-proxy");
        let native = native_sidecar_pod("ns", "a", "n1", &["172.20.0.6", "fd00::6"]);
        assert_eq!(
            native["spec"]["initContainers"][1]["restartPolicy"],
            "Always"
        );
        assert_eq!(native["status"]["podIPs"][1]["ip"], "fd00::6");
        assert_eq!(
            node("n1", "6.6.0", "x")["status"]["addresses"][0]["address"],
            node_ip("n1")
        );
        assert_eq!(
            istiod_deployment("istio-system", "default")["metadata"]["name"],
            "istiod"
        );
    }
}
