//! Routing: a request path to discovery documents or a resource [`Target`], the verb it
//! means, the test's RBAC refusals, and dispatch to the verb handlers.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Response};
use serde_json::Value;

use super::patch::patch_obj;
use super::response::{error_response, forbidden_response, json_response, not_found_path};
use super::verbs::{create, delete, delete_collection, get, list, update};
use super::watch::watch;
use super::{Params, segments};
use crate::Shared;
use crate::resources::{self, RESOURCES};
use crate::selector::Selector;
use crate::status::ApiError;

pub(super) struct Target {
    pub(super) res: usize,
    pub(super) ns: Option<String>,
    pub(super) name: Option<String>,
    pub(super) sub: Option<String>,
}

fn parse_target(group: &str, version: &str, rest: &[&str], prometheus: bool) -> Option<Target> {
    let find = |p: &str| resources::by_path(group, version, p, prometheus);
    let t = |res, ns: Option<&str>, name: Option<&str>, sub: Option<&str>| Target {
        res,
        ns: ns.map(str::to_string),
        name: name.map(str::to_string),
        sub: sub.map(str::to_string),
    };
    let core_ns = group.is_empty() && rest.first() == Some(&"namespaces");
    let target = match rest {
        [p] => t(find(p)?, None, None, None),
        [p, n] if !RESOURCES[find(p)?].namespaced => t(find(p)?, None, Some(n), None),
        [p, n, s] if core_ns && (*s == "status" || *s == "finalize") => {
            t(find(p)?, None, Some(n), Some(s))
        }
        ["namespaces", ns, p] => t(find(p)?, Some(ns), None, None),
        [p, n, s] if !RESOURCES[find(p)?].namespaced => t(find(p)?, None, Some(n), Some(s)),
        ["namespaces", ns, p, n] => t(find(p)?, Some(ns), Some(n), None),
        ["namespaces", ns, p, n, s] => t(find(p)?, Some(ns), Some(n), Some(s)),
        _ => return None,
    };
    let def = &RESOURCES[target.res];
    if target.ns.is_some() && !def.namespaced {
        return None;
    }
    if let Some(s) = &target.sub
        && (s != "status" || !def.status)
        && !(def.kind == "Namespace" && s == "finalize")
    {
        return None;
    }
    Some(target)
}

pub(super) fn route(
    shared: &Arc<Shared>,
    method: &Method,
    path: &str,
    params: &Params,
    content_type: Option<&str>,
    body: Option<Value>,
    verb_out: &mut &'static str,
) -> Response<Body> {
    let segs = segments(path);
    let prometheus = shared.lock().prometheus;
    let (group, version, rest): (&str, &str, &[&str]) = match segs.as_slice() {
        ["version"] => return json_response(200, &resources::version_doc()),
        ["api"] => return json_response(200, &resources::core_versions_doc()),
        ["apis"] => return json_response(200, &resources::group_list_doc(prometheus)),
        ["api", v] | ["apis", "", v] => {
            return match resources::resource_list_doc("", v, prometheus) {
                Some(d) => json_response(200, &d),
                None => not_found_path(),
            };
        }
        ["apis", g, v] => {
            return match resources::resource_list_doc(g, v, prometheus) {
                Some(d) => json_response(200, &d),
                None => not_found_path(),
            };
        }
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return not_found_path(),
    };
    let Some(target) = parse_target(group, version, rest, prometheus) else {
        return not_found_path();
    };
    let verb = match (method, &target.name) {
        (&Method::GET, Some(_)) => "get",
        (&Method::GET, None) if params.flag("watch") => "watch",
        (&Method::GET, None) => "list",
        (&Method::POST, None) => "create",
        (&Method::PUT, Some(_)) => "update",
        (&Method::PATCH, Some(_)) => "patch",
        (&Method::DELETE, Some(_)) => "delete",
        (&Method::DELETE, None) => "deletecollection",
        _ => {
            return error_response(&ApiError::new(
                405,
                "MethodNotAllowed",
                format!("{method} is not supported here"),
            ));
        }
    };
    *verb_out = verb;
    let def = &RESOURCES[target.res];
    let rbac_resource = match &target.sub {
        Some(s) => format!("{}/{s}", def.plural),
        None => def.plural.to_string(),
    };
    if let Some(r) = forbidden_response(
        shared,
        verb,
        def,
        &rbac_resource,
        target.ns.as_deref(),
        target.name.as_deref().unwrap_or(""),
    ) {
        return r;
    }
    let selector = match Selector::parse(params.get("labelSelector"), params.get("fieldSelector")) {
        Ok(s) => s,
        Err(e) => return error_response(&ApiError::bad_request(e)),
    };
    let result = match verb {
        "watch" => return watch(shared, &target, params, selector),
        "list" => Ok((200, list(&shared.lock(), &target, &selector))),
        "get" => get(&shared.lock(), &target).map(|v| (200, v)),
        "create" => create(&mut shared.lock(), &target, body).map(|v| (201, v)),
        "update" => update(&mut shared.lock(), &target, body).map(|v| (200, v)),
        "patch" => {
            patch_obj(&mut shared.lock(), &target, params, content_type, body).map(|v| (200, v))
        }
        "delete" => delete(&mut shared.lock(), &target).map(|v| (200, v)),
        _ => Ok((
            200,
            delete_collection(&mut shared.lock(), &target, &selector),
        )),
    };
    match result {
        Ok((code, v)) => json_response(code, &v),
        Err(e) => error_response(&e),
    }
}
