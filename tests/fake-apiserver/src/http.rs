//! Request routing and the REST verbs: discovery, get/list/watch, create/update/patch/delete.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{Method, Request, Response, StatusCode, header};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use crate::resources::{self, RESOURCES};
use crate::selector::Selector;
use crate::status::{self, ApiError};
use crate::store::{Event, EventType, State, WriteKind};
use crate::{Control, LoggedRequest, RequestKey, Shared, patch, util};

const MAX_BODY: usize = 64 << 20;

pub(crate) struct Params(Vec<(String, String)>);

impl Params {
    pub(crate) fn get(&self, k: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
    }
    pub(crate) fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some("true" | "1"))
    }
    /// Every value of a repeated parameter (exec's `command`), in order.
    pub(crate) fn all(&self, k: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

pub(crate) fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(b[i + 1]), hex(b[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (percent_decode(k), percent_decode(v)),
            None => (percent_decode(p), String::new()),
        })
        .collect()
}

fn json_response(code: u16, v: &Value) -> Response<Body> {
    let mut r = Response::new(Body::from(v.to_string()));
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}

pub(crate) fn error_response(e: &ApiError) -> Response<Body> {
    json_response(e.code, &e.to_status())
}

fn not_found_path() -> Response<Body> {
    error_response(&ApiError::new(
        404,
        "NotFound",
        "the server could not find the requested resource",
    ))
}

pub(crate) async fn handle(
    shared: Arc<Shared>,
    mut req: Request<hyper::body::Incoming>,
) -> Result<Response<Body>, Infallible> {
    // Taken before the body is read; only an exec uses it.
    let upgrade = req
        .headers()
        .contains_key(header::UPGRADE)
        .then(|| hyper::upgrade::on(&mut req));
    let headers = req.headers().clone();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let params = Params(parse_query(req.uri().query().unwrap_or("")));
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.split(';').next().unwrap_or(s).trim().to_string());
    let user_agent = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let bytes = match axum::body::to_bytes(Body::new(req.into_body()), MAX_BODY).await {
        Ok(b) => b,
        Err(e) => {
            return Ok(error_response(&ApiError::bad_request(format!(
                "reading body: {e}"
            ))));
        }
    };
    let body: Result<Option<Value>, String> = if bytes.is_empty() {
        Ok(None)
    } else {
        let text = String::from_utf8_lossy(&bytes);
        match serde_json::from_str::<Value>(&text) {
            Ok(v) => Ok(Some(v)),
            // kube sends apply bodies as JSON; YAML is what kubectl-style clients send.
            Err(e) if content_type.as_deref() == Some("application/apply-patch+yaml") => {
                serde_saphyr::from_str::<Value>(&text)
                    .map(Some)
                    .map_err(|ye| format!("body is neither JSON ({e}) nor YAML ({ye})"))
            }
            Err(e) => Err(format!("body is not JSON: {e}")),
        }
    };
    let mut verb = method_verb(&method);
    let resp = {
        let mut st = shared.lock();
        if st.log_requests {
            st.requests.push(LoggedRequest {
                method: method.to_string(),
                path: path.clone(),
                query: params.0.clone(),
                content_type: content_type.clone(),
                field_manager: params.get("fieldManager").map(str::to_string),
                body: body.as_ref().ok().cloned().flatten(),
                user_agent: user_agent.clone(),
            });
        }
        st.unavailable.then(|| {
            error_response(&ApiError::new(
                503,
                "ServiceUnavailable",
                "the server is currently unable to handle the request",
            ))
        })
    };
    let resp = match (resp, body) {
        (Some(r), _) => r,
        (None, Err(e)) => error_response(&ApiError::bad_request(e)),
        (None, Ok(body)) => match crate::exec::target(&segments(&path)) {
            Some(t) => crate::exec::respond(&shared, t, &params, &headers, upgrade),
            None => route(
                &shared,
                &method,
                &path,
                &params,
                content_type.as_deref(),
                body,
                &mut verb,
            ),
        },
    };
    let key = RequestKey {
        client: user_agent.unwrap_or_default(),
        verb: verb.to_string(),
        path,
    };
    *shared.lock().counts.entry(key).or_default() += 1;
    shared.flush_rollouts();
    Ok(resp)
}

/// The verb of a request before routing tells more (list, watch, deletecollection).
fn method_verb(method: &Method) -> &'static str {
    match *method {
        Method::GET => "get",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        _ => "other",
    }
}

fn segments(path: &str) -> Vec<&str> {
    path.trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect()
}

/// 403 Forbidden when the test forbade `verb` (or "*") on `rbac_resource`.
pub(crate) fn forbidden_response(
    shared: &Arc<Shared>,
    verb: &str,
    def: &resources::ResourceDef,
    rbac_resource: &str,
    ns: Option<&str>,
    name: &str,
) -> Option<Response<Body>> {
    let st = shared.lock();
    let denied = [verb, "*"].iter().any(|v| {
        st.forbidden
            .contains(&(v.to_string(), rbac_resource.to_string()))
    });
    denied.then(|| {
        error_response(&ApiError::forbidden(
            crate::FAKE_USER,
            verb,
            def.group,
            rbac_resource,
            ns,
            name,
        ))
    })
}

struct Target {
    res: usize,
    ns: Option<String>,
    name: Option<String>,
    sub: Option<String>,
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

fn route(
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

fn in_scope(ev_res: usize, ev_ns: &str, t: &Target) -> bool {
    ev_res == t.res && t.ns.as_deref().is_none_or(|ns| ns == ev_ns)
}

fn matching(st: &State, t: &Target, sel: &Selector) -> Vec<Value> {
    st.objects
        .iter()
        .filter(|(k, v)| in_scope(k.res, &k.ns, t) && sel.matches(v))
        .map(|(_, v)| v.clone())
        .collect()
}

fn list(st: &State, t: &Target, sel: &Selector) -> Value {
    let def = &RESOURCES[t.res];
    json!({
        "kind": format!("{}List", def.kind),
        "apiVersion": def.api_version(),
        "metadata": {"resourceVersion": st.rv.to_string()},
        "items": matching(st, t, sel),
    })
}

fn get(st: &State, t: &Target) -> Result<Value, ApiError> {
    let def = &RESOURCES[t.res];
    let name = t.name.as_deref().unwrap_or_default();
    st.objects
        .get(&State::key_for(t.res, t.ns.as_deref(), name))
        .cloned()
        .ok_or_else(|| ApiError::not_found(def.group, def.plural, name))
}

fn need_body(body: Option<Value>) -> Result<Value, ApiError> {
    body.ok_or_else(|| ApiError::bad_request("the request needs a body"))
}

fn create(st: &mut State, t: &Target, body: Option<Value>) -> Result<Value, ApiError> {
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

fn write_kind(t: &Target) -> WriteKind {
    if t.sub.as_deref() == Some("status") {
        WriteKind::Status
    } else {
        WriteKind::Main
    }
}

fn check_name(t: &Target, obj: &Value) -> Result<(), ApiError> {
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

fn update(st: &mut State, t: &Target, body: Option<Value>) -> Result<Value, ApiError> {
    let obj = need_body(body)?;
    check_name(t, &obj)?;
    get(st, t)?;
    st.write(t.res, t.ns.as_deref(), obj, write_kind(t), false)
}

fn patch_obj(
    st: &mut State,
    t: &Target,
    params: &Params,
    content_type: Option<&str>,
    body: Option<Value>,
) -> Result<Value, ApiError> {
    let body = need_body(body)?;
    let name = t.name.as_deref().unwrap_or_default();
    match content_type {
        Some("application/apply-patch+yaml") => {
            let manager = params
                .get("fieldManager")
                .filter(|m| !m.is_empty())
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "PATCH requests with apply-patch content type must specify fieldManager",
                    )
                })?;
            st.apply(
                t.res,
                t.ns.as_deref(),
                name,
                body,
                crate::store::ApplyBy {
                    manager,
                    force: params.flag("force"),
                },
                write_kind(t),
            )
        }
        Some("application/merge-patch+json" | "application/strategic-merge-patch+json") => {
            let mut obj = get(st, t)?;
            patch::merge_patch(&mut obj, &body);
            finish_patch(st, t, params, obj)
        }
        Some("application/json-patch+json") => {
            let cur = get(st, t)?;
            let obj =
                patch::json_patch(&cur, &body).map_err(|e| ApiError::new(422, "Invalid", e))?;
            finish_patch(st, t, params, obj)
        }
        other => Err(ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (got {other:?})"
            ),
        )),
    }
}

fn finish_patch(
    st: &mut State,
    t: &Target,
    params: &Params,
    mut obj: Value,
) -> Result<Value, ApiError> {
    check_name(t, &obj)?;
    if let Some(m) = params.get("fieldManager") {
        crate::store::set_managed(&mut obj, m, "Update", &RESOURCES[t.res]);
    }
    st.write(t.res, t.ns.as_deref(), obj, write_kind(t), false)
}

fn delete(st: &mut State, t: &Target) -> Result<Value, ApiError> {
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

fn delete_collection(st: &mut State, t: &Target, sel: &Selector) -> Value {
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

fn line(etype: &str, obj: &Value) -> Bytes {
    let mut s = json!({"type": etype, "object": obj}).to_string();
    s.push('\n');
    Bytes::from(s)
}

/// The event a selector-filtered watcher sees for `ev`, if any: an object moving into the
/// selection is ADDED and one moving out is DELETED, as the real watch cache reports.
fn translate(ev: &Event, t: &Target, sel: &Selector) -> Option<Bytes> {
    if !in_scope(ev.res, &ev.ns, t) {
        return None;
    }
    let now = sel.matches(&ev.object);
    let etype = match ev.etype {
        EventType::Added | EventType::Deleted if now => ev.etype.as_str(),
        EventType::Modified => {
            let before = ev.old.as_ref().is_none_or(|o| sel.matches(o));
            match (before, now) {
                (true, true) => "MODIFIED",
                (false, true) => "ADDED",
                (true, false) => "DELETED",
                (false, false) => return None,
            }
        }
        _ => return None,
    };
    Some(line(etype, &ev.object))
}

fn bookmark(t: &Target, rv: u64, initial_end: bool) -> Bytes {
    let def = &RESOURCES[t.res];
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    line(
        "BOOKMARK",
        &json!({"kind": def.kind, "apiVersion": def.api_version(), "metadata": meta}),
    )
}

struct WatchSetup {
    initial: Vec<Bytes>,
    cursor: u64,
    events: broadcast::Receiver<Arc<Event>>,
    expired: bool,
}

fn watch(shared: &Arc<Shared>, t: &Target, params: &Params, sel: Selector) -> Response<Body> {
    let setup = {
        let st = shared.lock();
        // Subscribing under the lock: every later write is on the channel, every earlier one
        // is in the history or the current objects, so nothing falls in between.
        let events = st.events_tx.subscribe();
        let rv = params.get("resourceVersion").unwrap_or("");
        let mut initial = Vec::new();
        let mut expired = false;
        if params.flag("sendInitialEvents") {
            for o in matching(&st, t, &sel) {
                initial.push(line("ADDED", &o));
            }
            initial.push(bookmark(t, st.rv, true));
        } else if rv.is_empty() || rv == "0" {
            for o in matching(&st, t, &sel) {
                initial.push(line("ADDED", &o));
            }
        } else {
            match rv.parse::<u64>() {
                Ok(from) if from >= st.compacted_rv => {
                    for ev in st.history.iter().filter(|e| e.rv > from) {
                        initial.extend(translate(ev, t, &sel));
                    }
                }
                Ok(from) => {
                    expired = true;
                    let e = ApiError::new(
                        410,
                        "Expired",
                        format!("too old resource version: {from} ({})", st.compacted_rv),
                    );
                    initial.push(line("ERROR", &e.to_status()));
                }
                Err(_) => {
                    return error_response(&ApiError::bad_request(format!(
                        "resourceVersion {rv:?} is not a valid resource version"
                    )));
                }
            }
        }
        WatchSetup {
            initial,
            cursor: st.rv,
            events,
            expired,
        }
    };
    let timeout = params
        .get("timeoutSeconds")
        .and_then(|s| s.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(1800));
    let bookmarks = params.flag("allowWatchBookmarks");
    let (tx, rx) = mpsc::channel::<Bytes>(1024);
    let target = Target {
        res: t.res,
        ns: t.ns.clone(),
        name: None,
        sub: None,
    };
    let sh = shared.clone();
    let control = shared.control_tx.subscribe();
    shared.handle.spawn(run_watch(
        sh, target, sel, setup, control, tx, timeout, bookmarks,
    ));
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<Bytes, Infallible>(b), rx))
    });
    let mut r = Response::new(Body::from_stream(stream));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}

struct WatchGuard(Arc<Shared>);

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.0
            .open_watches
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_watch(
    shared: Arc<Shared>,
    t: Target,
    sel: Selector,
    setup: WatchSetup,
    mut control: broadcast::Receiver<Control>,
    tx: mpsc::Sender<Bytes>,
    timeout: Duration,
    bookmarks: bool,
) {
    shared
        .open_watches
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let _guard = WatchGuard(shared.clone());
    for b in setup.initial {
        if tx.send(b).await.is_err() {
            return;
        }
    }
    if setup.expired {
        return;
    }
    let WatchSetup {
        mut events,
        mut cursor,
        ..
    } = setup;
    let deadline = tokio::time::Instant::now() + timeout;
    let period = shared.bookmark_interval();
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    loop {
        let mut send_bookmark = false;
        tokio::select! {
            ev = events.recv() => match ev {
                Ok(ev) => {
                    if ev.rv <= cursor { continue; }
                    cursor = ev.rv;
                    if let Some(b) = translate(&ev, &t, &sel) && tx.send(b).await.is_err() {
                        return;
                    }
                }
                // Fell behind the channel: end the stream so the client re-watches from its
                // last resourceVersion and gets the rest from the history.
                Err(_) => return,
            },
            _ = ticker.tick(), if bookmarks => send_bookmark = true,
            c = control.recv() => match c {
                Ok(Control::Bookmark) => send_bookmark = bookmarks,
                Ok(Control::Break) | Err(broadcast::error::RecvError::Closed) => return,
                Err(broadcast::error::RecvError::Lagged(_)) => {}
            },
            _ = tokio::time::sleep_until(deadline) => return,
            _ = tx.closed() => return,
        }
        if send_bookmark {
            // Deliver what is already queued first, so the bookmark never runs ahead of events.
            loop {
                let ev = match events.try_recv() {
                    Ok(ev) => ev,
                    Err(broadcast::error::TryRecvError::Empty) => break,
                    Err(_) => return,
                };
                if ev.rv <= cursor {
                    continue;
                }
                cursor = ev.rv;
                if let Some(b) = translate(&ev, &t, &sel)
                    && tx.send(b).await.is_err()
                {
                    return;
                }
            }
            if tx.send(bookmark(&t, cursor, false)).await.is_err() {
                return;
            }
        }
    }
}
