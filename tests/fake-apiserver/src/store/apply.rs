//! Server-side apply with a one-owner-set-per-object conflict model, and the
//! `metadata.managedFields` entries writes record.

use serde_json::{Value, json};

use super::{State, WriteKind, meta_str, metadata_mut};
use crate::patch;
use crate::resources::{RESOURCES, ResourceDef};
use crate::status::ApiError;
use crate::util;

impl State {
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
