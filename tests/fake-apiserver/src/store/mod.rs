//! The object store: one cluster-wide resourceVersion counter, a bounded event history for
//! watches, and the write paths (create, replace, apply, patch, delete) with the metadata
//! bookkeeping the real server does.
//!
//! This file holds the keys, the [`State`] and its construction; the rest lives in:
//! - `history`: resourceVersions, the event history and the notification of watchers
//! - `write`: create/replace and delete, with validation and metadata bookkeeping
//! - `apply`: server-side apply and `managedFields`
//! - `controllers`: the DaemonSet rollout and Deployment status simulators

mod apply;
mod controllers;
mod history;
mod write;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::resources::RESOURCES;
use crate::rollout::RolloutMode;
use crate::{LoggedRequest, RequestKey};

pub use apply::{ApplyBy, set_managed};
pub use history::{Event, EventType, HISTORY_MAX};

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjKey {
    pub res: usize,
    pub ns: String,
    pub name: String,
}

/// How a write through the main resource treats the status field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteKind {
    /// Test helper writes: store exactly what was given.
    Raw,
    /// API writes to the main resource: status is owned by the `/status` subresource.
    Main,
    /// API writes to `/status`: only status changes.
    Status,
}

pub struct State {
    pub objects: BTreeMap<ObjKey, Value>,
    pub rv: u64,
    pub history: VecDeque<Arc<Event>>,
    /// Watches from a resourceVersion below this get 410 Expired.
    pub compacted_rv: u64,
    pub history_limit: usize,
    /// Managers that server-side applied each object (the minimal ownership model).
    pub appliers: HashMap<ObjKey, Vec<String>>,
    pub forbidden: HashSet<(String, String)>,
    pub unavailable: bool,
    pub rollout: RolloutMode,
    pub rollout_epoch: HashMap<ObjKey, u64>,
    /// Gradual rollouts to start once the lock is released: (DaemonSet, epoch).
    pub pending_rollouts: Vec<(ObjKey, u64)>,
    pub prometheus: bool,
    pub requests: Vec<LoggedRequest>,
    pub log_requests: bool,
    pub counts: BTreeMap<RequestKey, u64>,
    pub events_tx: broadcast::Sender<Arc<Event>>,
}

pub fn res_index(kind: &str) -> usize {
    RESOURCES
        .iter()
        .position(|r| r.kind == kind && r.group != "events.k8s.io")
        .unwrap_or(0)
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj.get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn metadata_mut(obj: &mut Value) -> &mut serde_json::Map<String, Value> {
    if !obj.is_object() {
        *obj = json!({});
    }
    let Value::Object(o) = obj else {
        unreachable!("just made an object")
    };
    let m = o.entry("metadata").or_insert_with(|| json!({}));
    if !m.is_object() {
        *m = json!({});
    }
    match m {
        Value::Object(m) => m,
        _ => unreachable!("just made an object"),
    }
}

impl State {
    pub fn new(events_tx: broadcast::Sender<Arc<Event>>) -> Self {
        let mut s = State {
            objects: BTreeMap::new(),
            rv: 0,
            history: VecDeque::new(),
            compacted_rv: 0,
            history_limit: HISTORY_MAX,
            appliers: HashMap::new(),
            forbidden: HashSet::new(),
            unavailable: false,
            rollout: RolloutMode::Instant,
            rollout_epoch: HashMap::new(),
            pending_rollouts: Vec::new(),
            prometheus: false,
            requests: Vec::new(),
            log_requests: true,
            counts: BTreeMap::new(),
            events_tx,
        };
        // A fresh cluster has these; the installer may rely on kube-system existing.
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            let _ = s.write(res_index("Namespace"), None, obj, WriteKind::Raw, false);
        }
        s
    }

    pub fn key_for(res: usize, ns: Option<&str>, name: &str) -> ObjKey {
        let namespaced = RESOURCES[res].namespaced;
        ObjKey {
            res,
            ns: if namespaced {
                ns.unwrap_or("default").to_string()
            } else {
                String::new()
            },
            name: name.to_string(),
        }
    }
}
