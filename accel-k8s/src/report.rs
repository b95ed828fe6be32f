//! The daemon's reports on its own node: a label and a status annotation
//! users and the installer read, and an Event when a gate fails. (The
//! installer's unload request arrives by a watch: [`crate::node_watch`].)
//!
//! # API cost
//!
//! The status is written when it changes, and otherwise once per
//! [`HEARTBEAT`] so that a dead daemon's status goes stale: one merge patch
//! of the Node per node every 5 minutes at rest, 0.2 requests per node per
//! minute (200 per minute on 1,000 nodes), the rate of the kubelet's own
//! node status reports when nothing changes.

use std::time::{Duration, Instant};

use k8s_openapi::{
    Resource,
    api::{
        core::v1::{Node, ObjectReference, Pod},
        events::v1::Event,
    },
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
    jiff::Timestamp,
};
use kube::{
    Api, Client,
    api::{Patch, PatchParams, PostParams},
};
use serde_json::json;

use crate::{keys, names, node::NodeStatus};

/// The longest the status annotation goes unwritten while the daemon runs.
pub const HEARTBEAT: Duration = Duration::from_secs(300);

/// The Event API's limit on `reportingInstance`.
pub const REPORTING_INSTANCE_MAX: usize = 128;

/// The longest object name (a DNS subdomain).
const NAME_MAX: usize = 253;

pub struct NodeReporter {
    nodes: Api<Node>,
    client: Client,
    node: String,
    instance: String,
    heartbeat: Duration,
    /// The last status written, without its timestamp, and when: unchanged
    /// reports are not re-sent before the heartbeat is due.
    last: Option<(NodeStatus, Instant)>,
}

impl NodeReporter {
    pub fn new(client: Client, node: &str) -> Self {
        NodeReporter {
            nodes: Api::all(client.clone()),
            client,
            node: node.to_string(),
            instance: reporting_instance(node),
            heartbeat: HEARTBEAT,
            last: None,
        }
    }

    /// A shorter heartbeat (tests).
    pub fn with_heartbeat(mut self, every: Duration) -> Self {
        self.heartbeat = every;
        self
    }

    pub fn heartbeat(&self) -> Duration {
        self.heartbeat
    }

    pub fn node_name(&self) -> &str {
        &self.node
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The Event's `reportingInstance`: `accel-daemon-<node>`, shortened
    /// with a hash when the node's name is too long for the field.
    pub fn reporting_instance(&self) -> &str {
        &self.instance
    }

    /// Labels and annotates the node with `status`, unless it says what the
    /// last report said and the heartbeat is not yet due. The patch carries
    /// the field manager [`keys::FIELD_MANAGER`].
    pub async fn publish(&mut self, status: &NodeStatus) -> Result<bool, kube::Error> {
        let mut status = status.clone();
        status.heartbeat_seconds = u32::try_from(self.heartbeat.as_secs()).unwrap_or(u32::MAX);
        let mut comparable = status.clone();
        comparable.updated.clear();
        if let Some((last, at)) = &self.last
            && *last == comparable
            && at.elapsed() < self.heartbeat
        {
            return Ok(false);
        }
        let body = json!({
            "metadata": {
                "labels": { keys::ACCELERATED_LABEL: status.label_value() },
                "annotations": {
                    keys::NODE_STATUS_ANNOTATION: serde_json::to_string(&status)
                        .unwrap_or_default(),
                },
            }
        });
        let params = PatchParams {
            field_manager: Some(keys::FIELD_MANAGER.into()),
            ..PatchParams::default()
        };
        self.nodes
            .patch(&self.node, &params, &Patch::Merge(&body))
            .await?;
        self.last = Some((comparable, Instant::now()));
        Ok(true)
    }

    /// A Warning Event on the node: the gate failed, traffic stays on TCP.
    ///
    /// Created directly rather than through kube's `Recorder`, which names
    /// the Event `<node>.<nanos>` (too long for a 253-character node name)
    /// and cannot shorten `reportingInstance`.
    pub async fn gate_failed(&self, reason: &str) -> Result<(), kube::Error> {
        let node = ObjectReference {
            api_version: Some(Node::API_VERSION.to_string()),
            kind: Some(Node::KIND.to_string()),
            name: Some(self.node.clone()),
            ..ObjectReference::default()
        };
        // Cluster-scoped objects' Events go to "default", as kubectl looks for them.
        self.event(
            "default",
            node,
            "Warning",
            "AccelerationUnavailable",
            "Gate",
            reason,
        )
        .await
    }

    /// A Normal Event on a pod: the application guard kept some of its
    /// sockets off the redirect path (`why` says which and what to change).
    pub async fn pod_held_back(
        &self,
        namespace: &str,
        pod: &str,
        why: &str,
    ) -> Result<(), kube::Error> {
        let regarding = ObjectReference {
            api_version: Some(Pod::API_VERSION.to_string()),
            kind: Some(Pod::KIND.to_string()),
            namespace: Some(namespace.to_string()),
            name: Some(pod.to_string()),
            ..ObjectReference::default()
        };
        self.event(
            namespace,
            regarding,
            "Normal",
            "ApplicationSocketsOnTcp",
            "Guard",
            why,
        )
        .await
    }

    async fn event(
        &self,
        namespace: &str,
        regarding: ObjectReference,
        type_: &str,
        reason: &str,
        action: &str,
        note: &str,
    ) -> Result<(), kube::Error> {
        let now = Timestamp::now();
        let stamp = format!("{:x}", now.as_nanosecond());
        let who = regarding.name.clone().unwrap_or_default();
        let prefix = names::bounded(&who, NAME_MAX - 1 - stamp.len());
        let event = Event {
            metadata: ObjectMeta {
                name: Some(format!("{prefix}.{stamp}")),
                namespace: Some(namespace.into()),
                ..ObjectMeta::default()
            },
            event_time: Some(MicroTime(now)),
            type_: Some(type_.into()),
            reason: Some(reason.into()),
            action: Some(action.into()),
            note: Some(truncate(note, 1000)),
            regarding: Some(regarding),
            reporting_controller: Some(keys::PRODUCT.into()),
            reporting_instance: Some(self.instance.clone()),
            ..Event::default()
        };
        Api::<Event>::namespaced(self.client.clone(), namespace)
            .create(&PostParams::default(), &event)
            .await?;
        Ok(())
    }
}

/// `accel-daemon-<node>`, at most [`REPORTING_INSTANCE_MAX`] bytes.
pub fn reporting_instance(node: &str) -> String {
    names::bounded(
        &format!("{}-{node}", keys::DAEMONSET),
        REPORTING_INSTANCE_MAX,
    )
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
