//! Which nodes qualify, and what a node's daemon says about itself.
//!
//! The installer's preflight judges a node from its API object alone
//! ([`eligibility`]); the daemon on the node then decides for real (probes,
//! self-test) and publishes the outcome as [`NodeStatus`].

use k8s_openapi::api::core::v1::Node;
use serde::{Deserialize, Serialize};

use crate::{
    kernel::{self, KernelRelease},
    keys,
};

/// Can this node carry the datapath, judged from its API object?
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Eligibility {
    Eligible,
    NotEligible(String),
}

impl Eligibility {
    pub fn is_eligible(&self) -> bool {
        matches!(self, Eligibility::Eligible)
    }

    /// The reason, or "eligible".
    pub fn describe(&self) -> &str {
        match self {
            Eligibility::Eligible => "eligible",
            Eligibility::NotEligible(why) => why,
        }
    }
}

/// Virtual nodes (ACK virtual-kubelet / ECI, other virtual-kubelet
/// providers) run pods without a kernel of ours to load programs into.
pub fn is_virtual(node: &Node) -> bool {
    let labels = node.metadata.labels.as_ref();
    let label = |k: &str| labels.and_then(|l| l.get(k)).map(String::as_str);
    if label("type") == Some("virtual-kubelet")
        || label("alibabacloud.com/virtual-node") == Some("true")
    {
        return true;
    }
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|taints| {
            taints
                .iter()
                .any(|t| t.key.starts_with("virtual-kubelet.io/"))
        })
}

/// The node's `kubernetes.io/os` label.
pub fn os(node: &Node) -> Option<&str> {
    node.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get("kubernetes.io/os"))
        .map(String::as_str)
}

/// The node's kernel release as the kubelet reports it.
pub fn kernel_version(node: &Node) -> Option<&str> {
    node.status
        .as_ref()
        .and_then(|s| s.node_info.as_ref())
        .map(|i| i.kernel_version.as_str())
        .filter(|v| !v.trim().is_empty())
}

pub fn os_image(node: &Node) -> Option<&str> {
    node.status
        .as_ref()
        .and_then(|s| s.node_info.as_ref())
        .map(|i| i.os_image.as_str())
        .filter(|v| !v.trim().is_empty())
}

/// Judges a node from its API object: virtual nodes, non-Linux nodes,
/// kernels older than the gate and kernel versions that cannot be read are
/// not eligible. The daemon's probes on the node have the last word.
pub fn eligibility(node: &Node) -> Eligibility {
    if is_virtual(node) {
        return Eligibility::NotEligible(
            "virtual node (virtual-kubelet): no node kernel to accelerate".into(),
        );
    }
    if let Some(os) = os(node).filter(|os| *os != "linux") {
        return Eligibility::NotEligible(format!("operating system {os:?} is not Linux"));
    }
    let Some(raw) = kernel_version(node) else {
        return Eligibility::NotEligible(
            "the node reports no kernel version (status.nodeInfo.kernelVersion)".into(),
        );
    };
    match raw.parse::<KernelRelease>() {
        Err(e) => Eligibility::NotEligible(e.to_string()),
        Ok(release) => match kernel::gate_reason(&release) {
            Some(why) => Eligibility::NotEligible(why),
            None => Eligibility::Eligible,
        },
    }
}

/// What the daemon is doing on its node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeState {
    /// The datapath is attached and new connections between meshed pods are accelerated.
    Accelerating,
    /// No datapath: the gate failed (kernel, probe, self-test); traffic is untouched.
    Unaccelerated,
    /// An uninstall asked for the datapath to go; waiting for receive queues to drain.
    Unloading,
    /// The datapath is gone after an uninstall request; the daemon stays idle.
    Unloaded,
    /// Unloading was refused: bytes still queued in accelerated sockets after the drain timeout.
    UnloadRefused,
}

impl NodeState {
    pub fn accelerated(self) -> bool {
        matches!(self, NodeState::Accelerating | NodeState::Unloading)
    }
}

/// The daemon's report on its node, kept in the [`keys::NODE_STATUS_ANNOTATION`] annotation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeStatus {
    pub state: NodeState,
    /// Why the node is (not) accelerated, in words an operator can act on.
    pub reason: String,
    pub daemon_version: String,
    pub kernel: String,
    /// Meshed pods whose new connections the datapath accelerates: those
    /// applied to the datapath while the node is accelerated
    /// ([`NodeState::accelerated`]); 0 otherwise, however many meshed pods
    /// the node runs.
    #[serde(default)]
    pub meshed_pods: u32,
    /// Failed checks and probes, by name, with details.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_checks: Vec<String>,
    /// The unload request this status answers, once handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unload_token: Option<String>,
    /// RFC 3339 time of the report: rewritten when the status changes and
    /// at least every [`heartbeat_seconds`](Self::heartbeat_seconds).
    pub updated: String,
    /// The daemon rewrites this status at least this often while it runs
    /// (0: a daemon without a heartbeat). See [`NodeStatus::is_stale`].
    #[serde(default, skip_serializing_if = "is_zero")]
    pub heartbeat_seconds: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl NodeStatus {
    /// Value of [`keys::ACCELERATED_LABEL`].
    pub fn label_value(&self) -> &'static str {
        if self.state.accelerated() {
            "true"
        } else {
            "false"
        }
    }

    /// The daemon has not rewritten this status for two heartbeats and a
    /// minute: it is gone, stuck, or cut off from the API server. Statuses
    /// without a heartbeat, or with an unreadable time, are never stale.
    pub fn is_stale(&self, now: jiff::Timestamp) -> bool {
        if self.heartbeat_seconds == 0 {
            return false;
        }
        let Ok(updated) = self.updated.parse::<jiff::Timestamp>() else {
            return false;
        };
        let limit = jiff::SignedDuration::from_secs(2 * i64::from(self.heartbeat_seconds) + 60);
        now.duration_since(updated) > limit
    }

    /// The status a node's daemon last published, if any and readable.
    pub fn of(node: &Node) -> Option<Result<NodeStatus, serde_json::Error>> {
        node.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(keys::NODE_STATUS_ANNOTATION))
            .map(|v| serde_json::from_str(v))
    }
}

/// Now, as RFC 3339 UTC with second precision (the status's `updated`).
pub fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// The pending unload request on a node, if any.
pub fn unload_request(node: &Node) -> Option<&str> {
    node.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(keys::UNLOAD_REQUEST_ANNOTATION))
        .map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        NodeSpec, NodeStatus as K8sNodeStatus, NodeSystemInfo, Taint,
    };
    use std::collections::BTreeMap;

    fn node(kernel: &str, labels: &[(&str, &str)]) -> Node {
        let mut n = Node::default();
        n.metadata.name = Some("n1".into());
        n.metadata.labels = Some(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
        );
        n.status = Some(K8sNodeStatus {
            node_info: Some(NodeSystemInfo {
                kernel_version: kernel.into(),
                os_image: "Alibaba Cloud Linux 3".into(),
                ..Default::default()
            }),
            ..Default::default()
        });
        n
    }

    #[test]
    fn kernels_are_gated_like_the_daemon_gates_them() {
        let linux = [("kubernetes.io/os", "linux")];
        assert!(eligibility(&node("5.10.134-16.al8.x86_64", &linux)).is_eligible());
        assert!(eligibility(&node("6.1.0-18-cloud-amd64", &linux)).is_eligible());
        let old = eligibility(&node("4.19.91-26.al7.x86_64", &linux));
        assert!(old.describe().contains("older than 5.10"), "{old:?}");
        let garbage = eligibility(&node("unknown", &linux));
        assert!(
            garbage.describe().contains("cannot parse kernel release"),
            "{garbage:?}"
        );
        let empty = eligibility(&node("", &linux));
        assert!(empty.describe().contains("no kernel version"), "{empty:?}");
    }

    #[test]
    fn virtual_and_windows_nodes_are_not_eligible() {
        let vk = node("5.10.0", &[("type", "virtual-kubelet")]);
        assert!(eligibility(&vk).describe().contains("virtual node"));
        let mut tainted = node("5.10.0", &[]);
        tainted.spec = Some(NodeSpec {
            taints: Some(vec![Taint {
                key: "virtual-kubelet.io/provider".into(),
                effect: "NoSchedule".into(),
                ..Default::default()
            }]),
            ..Default::default()
        });
        assert!(!eligibility(&tainted).is_eligible());
        let win = node("10.0.17763.2061", &[("kubernetes.io/os", "windows")]);
        assert!(eligibility(&win).describe().contains("not Linux"));
    }

    #[test]
    fn status_round_trips_through_the_annotation() {
        let s = NodeStatus {
            state: NodeState::Unaccelerated,
            reason: "kernel 5.4.0 is older than 5.10".into(),
            daemon_version: "0.1.0".into(),
            kernel: "5.4.0".into(),
            meshed_pods: 0,
            failed_checks: vec!["kernel >= 5.10: running 5.4.0".into()],
            unload_token: None,
            updated: "2026-11-23T16:00:00Z".into(),
            heartbeat_seconds: 300,
        };
        let mut n = node("5.4.0", &[]);
        n.metadata.annotations = Some(BTreeMap::from([(
            keys::NODE_STATUS_ANNOTATION.to_string(),
            serde_json::to_string(&s).unwrap(),
        )]));
        let back = NodeStatus::of(&n).unwrap().unwrap();
        assert_eq!(back, s);
        assert_eq!(back.label_value(), "false");
    }

    #[test]
    fn a_status_goes_stale_after_two_missed_heartbeats() {
        let mut s = NodeStatus {
            state: NodeState::Accelerating,
            reason: String::new(),
            daemon_version: "0.1.0".into(),
            kernel: "6.1.0".into(),
            meshed_pods: 3,
            failed_checks: vec![],
            unload_token: None,
            updated: "2026-11-23T16:00:00Z".into(),
            heartbeat_seconds: 300,
        };
        let at = |t: &str| t.parse::<jiff::Timestamp>().unwrap();
        assert!(!s.is_stale(at("2026-11-23T16:10:59Z")));
        assert!(s.is_stale(at("2026-11-23T16:11:01Z")));
        // Written by a daemon without a heartbeat: unknown, not stale.
        s.heartbeat_seconds = 0;
        assert!(!s.is_stale(at("2027-01-01T00:00:00Z")));
        let old: NodeStatus = serde_json::from_str(
            r#"{"state":"accelerating","reason":"","daemonVersion":"0.1.0","kernel":"6.1.0","updated":"2026-11-23T16:00:00Z"}"#,
        )
        .unwrap();
        assert_eq!(old.heartbeat_seconds, 0);
    }
}
