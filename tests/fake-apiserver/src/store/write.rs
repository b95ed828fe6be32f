//! The write paths: create or replace with the metadata bookkeeping of a real write
//! (namespace, uid, creationTimestamp, generation, status ownership), the length limits the
//! real server validates, and delete (a Namespace takes its contents along).

use serde_json::{Value, json};

use super::{EventType, ObjKey, State, WriteKind, meta_str, metadata_mut, res_index};
use crate::resources::{RESOURCES, ResourceDef};
use crate::status::ApiError;
use crate::util;

impl State {
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
