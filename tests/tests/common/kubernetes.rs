//! Helpers shared by the kubernetes suites.

#![allow(dead_code)]

use std::{collections::BTreeSet, net::IpAddr, path::Path, process::Command};

use accel_fake_apiserver::{FakeApiServer, fixtures};
use accel_test_harness::TestEnv;
use serde_json::{Value, json};

pub const NS: &str = "shop";

pub fn bpftool_dump(pin: &Path) -> Vec<Value> {
    let out = Command::new("bpftool")
        .args(["-j", "map", "dump", "pinned"])
        .arg(pin)
        .output()
        .expect("run bpftool");
    assert!(
        out.status.success(),
        "bpftool map dump {}: {}",
        pin.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Vec<Value>>(&out.stdout).unwrap_or_default()
}

/// The 16 address bytes of a key, whether bpftool printed it with BTF
/// (`{"addr": [..]}`) or raw (`["0x0a", ..]`).
pub fn key_bytes(entry: &Value, field: &str) -> Vec<u8> {
    let formatted = entry.get("formatted").unwrap_or(entry);
    let key = &formatted["key"];
    let arr = key.get(field).unwrap_or(key);
    arr.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| {
                    v.as_u64().map(|n| n as u8).or_else(|| {
                        v.as_str()
                            .and_then(|s| u8::from_str_radix(s.trim_start_matches("0x"), 16).ok())
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

pub fn ip_of(bytes: &[u8]) -> Option<IpAddr> {
    let b: [u8; 16] = bytes.get(..16)?.try_into().ok()?;
    let v6 = std::net::Ipv6Addr::from(b);
    Some(match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    })
}

pub fn endpoint_ips(env: &TestEnv) -> BTreeSet<IpAddr> {
    bpftool_dump(&env.pin_dir.join("accel_endpoints"))
        .iter()
        .filter_map(|e| ip_of(&key_bytes(e, "addr")))
        .collect()
}

/// (address, port) of every excluded-port entry.
pub fn excluded_ports(env: &TestEnv) -> BTreeSet<(IpAddr, u16)> {
    bpftool_dump(&env.pin_dir.join("accel_excluded_ports"))
        .iter()
        .filter_map(|e| {
            let bytes = key_bytes(e, "addr");
            let formatted = e.get("formatted").unwrap_or(e);
            let port = match formatted["key"].get("port") {
                Some(p) => p.as_u64()? as u16,
                // Raw key: addr[16], port (host order, little endian here).
                None => u16::from_le_bytes([*bytes.get(16)?, *bytes.get(17)?]),
            };
            Some((ip_of(&bytes)?, port))
        })
        .collect()
}

pub fn map_entries(env: &TestEnv, map: &str) -> u64 {
    let status = env.status_json();
    status["datapath"]["maps"]
        .as_array()
        .and_then(|maps| maps.iter().find(|m| m["name"] == map))
        .and_then(|m| m["entries"].as_u64())
        .unwrap_or(u64::MAX)
}

pub fn node_object(api: &FakeApiServer, name: &str) -> Value {
    api.get("v1", "Node", None, name).expect("node exists")
}

pub fn node_status(api: &FakeApiServer, name: &str) -> Option<Value> {
    let node = node_object(api, name);
    let text = node["metadata"]["annotations"]["sidecar-accel.io/status"].as_str()?;
    serde_json::from_str(text).ok()
}

pub fn node_label(api: &FakeApiServer, name: &str) -> Option<String> {
    node_object(api, name)["metadata"]["labels"]["sidecar-accel.io/accelerated"]
        .as_str()
        .map(str::to_string)
}

pub fn set_node_annotation(api: &FakeApiServer, name: &str, key: &str, value: Option<&str>) {
    let mut node = node_object(api, name);
    let ann = &mut node["metadata"]["annotations"];
    if !ann.is_object() {
        *ann = json!({});
    }
    match value {
        Some(v) => ann[key] = json!(v),
        None => {
            if let Some(m) = ann.as_object_mut() {
                m.remove(key);
            }
        }
    }
    api.upsert(node);
}

pub fn start_api(env: &TestEnv, node_name: &str, kernel: &str) -> (FakeApiServer, String) {
    let api = FakeApiServer::start().expect("start the fake API server");
    api.upsert(fixtures::node(
        node_name,
        kernel,
        "Debian GNU/Linux 12 (bookworm)",
    ));
    let kubeconfig = env.state_dir.with_extension("kubeconfig");
    api.write_kubeconfig(&kubeconfig, "fake")
        .expect("kubeconfig");
    (api, kubeconfig.display().to_string())
}

pub fn k8s_args<'a>(node_name: &'a str, kubeconfig: &'a str) -> Vec<&'a str> {
    vec![
        "--endpoint-source",
        "kubernetes",
        "--node-name",
        node_name,
        "--kubeconfig",
        kubeconfig,
        "--endpoint-sync-secs",
        "30", // changes must arrive by the watch, not by the periodic sync
    ]
}

pub fn metric(body: &str, prefix: &str) -> Option<f64> {
    body.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}
