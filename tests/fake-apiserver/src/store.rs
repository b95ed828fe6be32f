//! The object store: one cluster-wide resourceVersion counter, a bounded event history for
//! watches, and the write paths (create, replace, apply, patch, delete) with the metadata
//! bookkeeping the real server does.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::resources::{RESOURCES, ResourceDef};
use crate::rollout::{self, RolloutMode};
use crate::status::ApiError;
use crate::util;
use crate::{LoggedRequest, RequestKey, patch};

/// Events kept for watch replay; older ones are compacted away (watching from before → 410).
pub const HISTORY_MAX: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjKey {
    pub res: usize,
    pub ns: String,
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

#[derive(Debug)]
pub struct Event {
    pub rv: u64,
    pub res: usize,
    pub ns: String,
    pub etype: EventType,
    pub object: Value,
    /// The previous state for MODIFIED, so selector watches can turn it into ADDED/DELETED.
    pub old: Option<Value>,
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

    /// Stamp the resourceVersion, store or remove, record history and notify watchers.
    fn commit(
        &mut self,
        key: &ObjKey,
        etype: EventType,
        mut obj: Value,
        old: Option<Value>,
    ) -> Value {
        self.rv += 1;
        metadata_mut(&mut obj).insert("resourceVersion".into(), json!(self.rv.to_string()));
        match etype {
            EventType::Deleted => {
                self.objects.remove(key);
                self.appliers.remove(key);
            }
            _ => {
                self.objects.insert(key.clone(), obj.clone());
            }
        }
        let ev = Arc::new(Event {
            rv: self.rv,
            res: key.res,
            ns: key.ns.clone(),
            etype,
            object: obj.clone(),
            old,
        });
        self.history.push_back(ev.clone());
        while self.history.len() > self.history_limit {
            if let Some(dropped) = self.history.pop_front() {
                self.compacted_rv = dropped.rv;
            }
        }
        // No receivers is fine: nobody is watching.
        let _ = self.events_tx.send(ev);
        obj
    }

    /// Create or replace `obj` at its key, with the metadata bookkeeping of a real write.
    /// `must_create` turns an existing object into 409 AlreadyExists.
    pub fn write(
        &mut self,
        res: usize,
        ns: Option<&str>,
        mut obj: Value,
        kind: WriteKind,
        must_create: bool,
    ) -> Result<Value, ApiError> {
        let def: &ResourceDef = &RESOURCES[res];
        let name = meta_str(&obj, "name").to_string();
        if name.is_empty() {
            return Err(ApiError::new(
                422,
                "Invalid",
                format!(
                    "{} \"\" is invalid: metadata.name: Required value: name or generateName is required",
                    def.kind
                ),
            ));
        }
        let ns = if def.namespaced {
            let body_ns = meta_str(&obj, "namespace");
            let ns = ns.map(str::to_string).unwrap_or_else(|| {
                if body_ns.is_empty() {
                    "default".into()
                } else {
                    body_ns.to_string()
                }
            });
            if !body_ns.is_empty() && body_ns != ns {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            Some(ns)
        } else {
            None
        };
        if kind != WriteKind::Raw {
            validate(def, &name, &obj)?;
        }
        let key = Self::key_for(res, ns.as_deref(), &name);
        let old = self.objects.get(&key).cloned();
        if must_create && old.is_some() {
            return Err(ApiError::already_exists(def.group, def.plural, &name));
        }
        if kind != WriteKind::Raw
            && let Some(ns) = &ns
            && old.is_none()
            && !self
                .objects
                .contains_key(&Self::key_for(res_index("Namespace"), None, ns))
        {
            return Err(ApiError::not_found("", "namespaces", ns));
        }
        if let Some(old) = &old {
            let want = meta_str(&obj, "resourceVersion");
            if !want.is_empty() && want != meta_str(old, "resourceVersion") {
                return Err(ApiError::conflict(
                    def.group,
                    def.plural,
                    &name,
                    "the object has been modified; please apply your changes to the latest version and try again",
                ));
            }
        }
        if let Value::Object(o) = &mut obj {
            o.insert("apiVersion".into(), json!(def.api_version()));
            o.insert("kind".into(), json!(def.kind));
        }
        match (kind, &old) {
            (WriteKind::Status, Some(old)) => {
                let status = obj.get("status").cloned();
                obj = old.clone();
                match status {
                    Some(s) => obj["status"] = s,
                    None => {
                        if let Value::Object(o) = &mut obj {
                            o.remove("status");
                        }
                    }
                }
            }
            (WriteKind::Status, None) => {
                return Err(ApiError::not_found(def.group, def.plural, &name));
            }
            (WriteKind::Main, Some(old)) if def.status => match old.get("status") {
                Some(s) => obj["status"] = s.clone(),
                None => {
                    if let Value::Object(o) = &mut obj {
                        o.remove("status");
                    }
                }
            },
            (WriteKind::Main, None) if def.group == "apps" => {
                if let Value::Object(o) = &mut obj {
                    o.remove("status");
                }
            }
            _ => {}
        }
        {
            let meta = metadata_mut(&mut obj);
            if let Some(ns) = &ns {
                meta.insert("namespace".into(), json!(ns));
            } else {
                meta.remove("namespace");
            }
            let keep = |field: &str, fresh: Value| -> Value {
                old.as_ref()
                    .and_then(|o| o.get("metadata"))
                    .and_then(|m| m.get(field))
                    .cloned()
                    .unwrap_or(fresh)
            };
            let uid = keep("uid", json!(util::new_uid()));
            let created = keep("creationTimestamp", json!(util::now_rfc3339()));
            if kind != WriteKind::Raw || !meta.contains_key("uid") {
                meta.insert("uid".into(), uid);
            }
            if kind != WriteKind::Raw || !meta.contains_key("creationTimestamp") {
                meta.insert("creationTimestamp".into(), created);
            }
        }
        if obj.get("spec").is_some() {
            let old_gen = old
                .as_ref()
                .and_then(|o| o.pointer("/metadata/generation"))
                .and_then(Value::as_i64);
            let gen_ = match (&old, old_gen) {
                (Some(o), Some(g)) => {
                    if o.get("spec") != obj.get("spec") {
                        g + 1
                    } else {
                        g
                    }
                }
                _ => 1,
            };
            metadata_mut(&mut obj).insert("generation".into(), json!(gen_));
        }
        if def.kind == "Namespace" && obj.pointer("/status/phase").is_none() {
            obj["status"] = json!({"phase": "Active"});
        }
        if def.kind == "Pod" && old.is_none() && obj.pointer("/status/phase").is_none() {
            obj["status"] = json!({"phase": "Pending"});
        }
        let etype = if old.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        let spec_changed = old.as_ref().and_then(|o| o.get("spec")) != obj.get("spec");
        let stored = self.commit(&key, etype, obj, old);
        if kind != WriteKind::Status {
            self.after_write(&key, spec_changed || etype == EventType::Added);
        }
        Ok(self.objects.get(&key).cloned().unwrap_or(stored))
    }

    /// Controllers reacting to a write: the DaemonSet/Deployment status simulators.
    fn after_write(&mut self, key: &ObjKey, spec_changed: bool) {
        match RESOURCES[key.res].kind {
            "DaemonSet" if spec_changed => self.start_rollout(key),
            "Deployment" => self.settle_deployment(key),
            "Node" => self.nodes_changed(),
            _ => {}
        }
    }

    fn nodes_changed(&mut self) {
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

    /// Delete one object; a Namespace takes its namespaced objects with it.
    pub fn delete(&mut self, key: &ObjKey) -> Result<Value, ApiError> {
        let def = &RESOURCES[key.res];
        let Some(obj) = self.objects.get(key).cloned() else {
            return Err(ApiError::not_found(def.group, def.plural, &key.name));
        };
        if def.kind == "Namespace" {
            let inside: Vec<ObjKey> = self
                .objects
                .keys()
                .filter(|k| RESOURCES[k.res].namespaced && k.ns == key.name)
                .cloned()
                .collect();
            for k in inside {
                if let Some(o) = self.objects.get(&k).cloned() {
                    self.commit(&k, EventType::Deleted, o, None);
                }
            }
        }
        let out = self.commit(key, EventType::Deleted, obj, None);
        self.rollout_epoch.remove(key);
        if def.kind == "Node" {
            self.nodes_changed();
        }
        Ok(out)
    }

    /// Server-side apply with a one-owner-set-per-object conflict model.
    pub fn apply(
        &mut self,
        res: usize,
        ns: Option<&str>,
        name: &str,
        mut body: Value,
        by: ApplyBy<'_>,
        kind: WriteKind,
    ) -> Result<Value, ApiError> {
        let ApplyBy { manager, force } = by;
        let def = &RESOURCES[res];
        let key = Self::key_for(res, ns, name);
        if meta_str(&body, "name") != name {
            return Err(ApiError::bad_request(format!(
                "metadata.name {:?} in the apply body does not match the URL name {name:?}",
                meta_str(&body, "name")
            )));
        }
        let api_version = body
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let body_kind = body.get("kind").and_then(Value::as_str).unwrap_or_default();
        if api_version.is_empty() || body_kind.is_empty() {
            return Err(ApiError::bad_request(
                "invalid object type: apply configurations need apiVersion and kind",
            ));
        }
        let meta = metadata_mut(&mut body);
        for f in [
            "resourceVersion",
            "managedFields",
            "uid",
            "creationTimestamp",
            "generation",
        ] {
            meta.remove(f);
        }
        let result = match self.objects.get(&key).cloned() {
            None => {
                if kind == WriteKind::Status {
                    return Err(ApiError::not_found(def.group, def.plural, name));
                }
                set_managed(&mut body, manager, "Apply", def);
                let created = self.write(res, ns, body, kind, true)?;
                self.appliers.insert(key.clone(), vec![manager.to_string()]);
                created
            }
            Some(current) => {
                let others: Vec<String> = self
                    .appliers
                    .get(&key)
                    .map(|v| v.iter().filter(|m| *m != manager).cloned().collect())
                    .unwrap_or_default();
                let mut probe = body.clone();
                if let Value::Object(o) = &mut probe {
                    o.remove("apiVersion");
                    o.remove("kind");
                }
                if !force && !others.is_empty() && patch::would_change(&current, &probe) {
                    return Err(ApiError::new(
                        409,
                        "Conflict",
                        format!(
                            "Apply failed with 1 conflict: conflict with \"{}\": the applied configuration changes fields it manages",
                            others[0]
                        ),
                    ));
                }
                let mut merged = current.clone();
                patch::merge_patch(&mut merged, &body);
                set_managed(&mut merged, manager, "Apply", def);
                let out = self.write(res, ns, merged, kind, false)?;
                let owners = self.appliers.entry(key.clone()).or_default();
                if force {
                    owners.clear();
                }
                if !owners.iter().any(|m| m == manager) {
                    owners.push(manager.to_string());
                }
                out
            }
        };
        Ok(result)
    }
}

/// The length limits the real server enforces on API writes: names are DNS subdomains (at
/// most 253 characters); an Event's `reportingInstance` and `reportingController` at most 128.
fn validate(def: &ResourceDef, name: &str, obj: &Value) -> Result<(), ApiError> {
    let qualified = if def.group.is_empty() {
        def.kind.to_string()
    } else {
        format!("{}.{}", def.kind, def.group)
    };
    let invalid = |field: &str, why: String| {
        ApiError::new(
            422,
            "Invalid",
            format!("{qualified} \"{name}\" is invalid: {field}: {why}"),
        )
    };
    if name.len() > 253 {
        return Err(invalid(
            "metadata.name",
            "Invalid value: must be no more than 253 characters".into(),
        ));
    }
    if def.kind == "Event" {
        for field in ["reportingInstance", "reportingController"] {
            let len = obj.get(field).and_then(Value::as_str).map_or(0, str::len);
            if len > 128 {
                return Err(invalid(
                    field,
                    format!("Too long: may not be more than 128 bytes (got {len})"),
                ));
            }
        }
    }
    Ok(())
}

/// Who applies: the `fieldManager` and whether `force` was set.
#[derive(Debug, Clone, Copy)]
pub struct ApplyBy<'a> {
    pub manager: &'a str,
    pub force: bool,
}

/// Record `manager` in metadata.managedFields (fieldsV1 left empty: ownership is per object).
pub fn set_managed(obj: &mut Value, manager: &str, operation: &str, def: &ResourceDef) {
    let meta = metadata_mut(obj);
    let entry = json!({
        "manager": manager,
        "operation": operation,
        "apiVersion": def.api_version(),
        "time": util::now_rfc3339(),
        "fieldsType": "FieldsV1",
        "fieldsV1": {}
    });
    let list = meta.entry("managedFields").or_insert_with(|| json!([]));
    if !list.is_array() {
        *list = json!([]);
    }
    if let Value::Array(a) = list {
        a.retain(|e| {
            e.get("manager").and_then(Value::as_str) != Some(manager)
                || e.get("operation").and_then(Value::as_str) != Some(operation)
        });
        a.push(entry);
    }
}
