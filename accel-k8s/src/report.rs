//! The daemon's reports on its own node: a label and a status annotation
//! users and the installer read, an Event when a gate fails, and the
//! installer's unload request.

use k8s_openapi::{
    Resource,
    api::core::v1::{Node, ObjectReference},
};
use kube::{
    Api, Client,
    api::{Patch, PatchParams},
    runtime::events::{Event, EventType, Recorder, Reporter},
};
use serde_json::json;

use crate::{
    keys,
    node::{self, NodeStatus},
};

pub struct NodeReporter {
    nodes: Api<Node>,
    node: String,
    recorder: Recorder,
    /// The last status written, without its timestamp: unchanged reports are not re-sent.
    last: Option<NodeStatus>,
}

impl NodeReporter {
    pub fn new(client: Client, node: &str) -> Self {
        let reporter = Reporter {
            controller: keys::PRODUCT.into(),
            instance: Some(format!("{}-{node}", keys::DAEMONSET)),
        };
        NodeReporter {
            nodes: Api::all(client.clone()),
            node: node.to_string(),
            recorder: Recorder::new(client, reporter),
            last: None,
        }
    }

    pub fn node_name(&self) -> &str {
        &self.node
    }

    /// Labels and annotates the node with `status`, unless it says what the
    /// last report said.
    pub async fn publish(&mut self, status: &NodeStatus) -> Result<bool, kube::Error> {
        let mut comparable = status.clone();
        comparable.updated.clear();
        if self.last.as_ref() == Some(&comparable) {
            return Ok(false);
        }
        let body = json!({
            "metadata": {
                "labels": { keys::ACCELERATED_LABEL: status.label_value() },
                "annotations": {
                    keys::NODE_STATUS_ANNOTATION: serde_json::to_string(status)
                        .unwrap_or_default(),
                },
            }
        });
        self.nodes
            .patch(&self.node, &PatchParams::default(), &Patch::Merge(&body))
            .await?;
        self.last = Some(comparable);
        Ok(true)
    }

    /// A Warning Event on the node: the gate failed, traffic stays on TCP.
    pub async fn gate_failed(&self, reason: &str) -> Result<(), kube::Error> {
        let reference = ObjectReference {
            api_version: Some(Node::API_VERSION.to_string()),
            kind: Some(Node::KIND.to_string()),
            name: Some(self.node.clone()),
            ..Default::default()
        };
        self.recorder
            .publish(
                &Event {
                    type_: EventType::Warning,
                    reason: "AccelerationUnavailable".into(),
                    note: Some(truncate(reason, 1000)),
                    action: "Gate".into(),
                    secondary: None,
                },
                &reference,
            )
            .await
    }

    /// The installer's pending unload request on this node, if any.
    pub async fn unload_request(&self) -> Result<Option<String>, kube::Error> {
        let node = self.nodes.get(&self.node).await?;
        Ok(node::unload_request(&node).map(str::to_string))
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}
