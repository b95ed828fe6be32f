//! The REST verbs on stored objects, other than watch and patch: get, list, create (with
//! `generateName`), update, delete and deletecollection.

use serde_json::{Value, json};

use super::routing::Target;
use crate::resources::RESOURCES;
use crate::selector::Selector;
use crate::status::{self, ApiError};
use crate::store::{State, WriteKind};
use crate::util;

pub(super) fn in_scope(ev_res: usize, ev_ns: &str, t: &Target) -> bool {
    ev_res == t.res && t.ns.as_deref().is_none_or(|ns| ns == ev_ns)
}

pub(super) fn matching(st: &State, t: &Target, sel: &Selector) -> Vec<Value> {
    st.objects
        .iter()
        .filter(|(k, v)| in_scope(k.res, &k.ns, t) && sel.matches(v))
        .map(|(_, v)| v.clone())
        .collect()
}

pub(super) fn list(st: &State, t: &Target, sel: &Selector) -> Value {
    let def = &RESOURCES[t.res];
    json!({
        "kind": format!("{}List", def.kind),
        "apiVersion": def.api_version(),
        "metadata": {"resourceVersion": st.rv.to_string()},
        "items": matching(st, t, sel),
    })
}

pub(super) fn get(st: &State, t: &Target) -> Result<Value, ApiError> {
    let def = &RESOURCES[t.res];
    let name = t.name.as_deref().unwrap_or_default();
    st.objects
        .get(&State::key_for(t.res, t.ns.as_deref(), name))
        .cloned()
        .ok_or_else(|| ApiError::not_found(def.group, def.plural, name))
}

pub(super) fn need_body(body: Option<Value>) -> Result<Value, ApiError> {
    body.ok_or_else(|| ApiError::bad_request("the request needs a body"))
}

pub(super) fn create(st: &mut State, t: &Target, body: Option<Value>) -> Result<Value, ApiError> {
    let mut obj = need_body(body)?;
    let has_name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .is_some_and(|n| !n.is_empty());
    if !has_name
        && let Some(prefix) = obj
            .pointer("/metadata/generateName")
            .and_then(Value::as_str)
    {
        let name = format!("{prefix}{}", util::name_suffix());
        obj["metadata"]["name"] = json!(name);
    }
    st.write(t.res, t.ns.as_deref(), obj, WriteKind::Main, true)
}

pub(super) fn write_kind(t: &Target) -> WriteKind {
    if t.sub.as_deref() == Some("status") {
        WriteKind::Status
    } else {
        WriteKind::Main
    }
}

pub(super) fn check_name(t: &Target, obj: &Value) -> Result<(), ApiError> {
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if Some(name) != t.name.as_deref() {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({name}) does not match the name on the URL ({})",
            t.name.as_deref().unwrap_or_default()
        )));
    }
    Ok(())
}

pub(super) fn update(st: &mut State, t: &Target, body: Option<Value>) -> Result<Value, ApiError> {
    let obj = need_body(body)?;
    check_name(t, &obj)?;
    get(st, t)?;
    st.write(t.res, t.ns.as_deref(), obj, write_kind(t), false)
}

pub(super) fn delete(st: &mut State, t: &Target) -> Result<Value, ApiError> {
    let key = State::key_for(
        t.res,
        t.ns.as_deref(),
        t.name.as_deref().unwrap_or_default(),
    );
    let obj = st.delete(&key)?;
    // The real server answers some kinds with a Status; objects are what most return.
    if RESOURCES[t.res].kind == "Event" {
        let uid = obj
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or_default();
        return Ok(status::success(
            RESOURCES[t.res].group,
            RESOURCES[t.res].plural,
            &key.name,
            uid,
        ));
    }
    Ok(obj)
}

pub(super) fn delete_collection(st: &mut State, t: &Target, sel: &Selector) -> Value {
    let keys: Vec<_> = st
        .objects
        .iter()
        .filter(|(k, v)| in_scope(k.res, &k.ns, t) && sel.matches(v))
        .map(|(k, _)| k.clone())
        .collect();
    let mut items = Vec::new();
    for k in keys {
        if let Ok(o) = st.delete(&k) {
            items.push(o);
        }
    }
    let def = &RESOURCES[t.res];
    json!({"kind": format!("{}List", def.kind), "apiVersion": def.api_version(),
           "metadata": {"resourceVersion": st.rv.to_string()}, "items": items})
}
