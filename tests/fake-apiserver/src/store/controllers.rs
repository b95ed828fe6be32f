//! The controllers the fake server simulates after writes: DaemonSet rollouts (started by
//! spec or node changes, stepped for `Gradual`) and Deployments settling at once.

use serde_json::{Value, json};

use super::{EventType, ObjKey, State, res_index};
use crate::resources::RESOURCES;
use crate::rollout::{self, RolloutMode};
use crate::util;

impl State {
    /// Controllers reacting to a write: the DaemonSet/Deployment status simulators.
    pub(super) fn after_write(&mut self, key: &ObjKey, spec_changed: bool) {
        match RESOURCES[key.res].kind {
            "DaemonSet" if spec_changed => self.start_rollout(key),
            "Deployment" => self.settle_deployment(key),
            "Node" => self.nodes_changed(),
            _ => {}
        }
    }

    pub(super) fn nodes_changed(&mut self) {
        let ds = res_index("DaemonSet");
        // Nothing to reschedule: skip copying every node (load tests write thousands).
        if !self.objects.keys().any(|k| k.res == ds) {
            return;
        }
        let nodes: Vec<Value> = self.nodes().into_iter().cloned().collect();
        let node_refs: Vec<&Value> = nodes.iter().collect();
        // Only a change in the selected node count restarts a rollout: node heartbeats or
        // unrelated label edits must not reset a Gradual rollout's progress.
        let keys: Vec<ObjKey> = self
            .objects
            .iter()
            .filter(|(k, v)| {
                k.res == ds
                    && v.pointer("/status/desiredNumberScheduled")
                        .and_then(Value::as_i64)
                        != Some(rollout::desired_nodes(v, &node_refs))
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in keys {
            self.start_rollout(&k);
        }
    }

    pub fn nodes(&self) -> Vec<&Value> {
        let node = res_index("Node");
        self.objects
            .iter()
            .filter(|(k, _)| k.res == node)
            .map(|(_, v)| v)
            .collect()
    }

    fn start_rollout(&mut self, key: &ObjKey) {
        let Some(ds) = self.objects.get(key).cloned() else {
            return;
        };
        let desired = rollout::desired_nodes(&ds, &self.nodes());
        let epoch = self.rollout_epoch.entry(key.clone()).or_insert(0);
        *epoch += 1;
        let epoch = *epoch;
        let (status, pending) = match self.rollout {
            RolloutMode::Instant => (rollout::status(&ds, desired, desired, desired), false),
            RolloutMode::Gradual { .. } => (rollout::status(&ds, desired, 0, 0), desired > 0),
            RolloutMode::Stuck => (rollout::status(&ds, desired, desired, 0), false),
        };
        self.set_status(key, status);
        if pending {
            self.pending_rollouts.push((key.clone(), epoch));
        }
    }

    /// One Gradual step; returns false when the rollout is finished or superseded.
    pub fn rollout_step(&mut self, key: &ObjKey, epoch: u64) -> bool {
        if self.rollout_epoch.get(key) != Some(&epoch) {
            return false;
        }
        let Some(ds) = self.objects.get(key).cloned() else {
            return false;
        };
        let desired = rollout::desired_nodes(&ds, &self.nodes());
        let cur = ds
            .pointer("/status/updatedNumberScheduled")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        let next = (cur + 1).min(desired);
        self.set_status(key, rollout::status(&ds, desired, next, next));
        next < desired
    }

    fn settle_deployment(&mut self, key: &ObjKey) {
        let Some(d) = self.objects.get(key).cloned() else {
            return;
        };
        let replicas = d
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let gen_ = d
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let now = util::now_rfc3339();
        let status = json!({
            "observedGeneration": gen_,
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": replicas,
            "availableReplicas": replicas,
            "conditions": [
                {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
                 "message": "Deployment has minimum availability.", "lastUpdateTime": now, "lastTransitionTime": now},
                {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
                 "message": "ReplicaSet has successfully progressed.", "lastUpdateTime": now, "lastTransitionTime": now}
            ]
        });
        if d.get("status") != Some(&status) {
            self.set_status(key, status);
        }
    }

    fn set_status(&mut self, key: &ObjKey, status: Value) {
        let Some(old) = self.objects.get(key).cloned() else {
            return;
        };
        if old.get("status") == Some(&status) {
            return;
        }
        let mut obj = old.clone();
        obj["status"] = status;
        self.commit(key, EventType::Modified, obj, Some(old));
    }
}
