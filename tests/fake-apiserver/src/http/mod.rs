//! Request routing and the REST verbs: discovery, get/list/watch, create/update/patch/delete.
//!
//! This file holds the entry point ([`handle`]: body parsing, the request log and counts,
//! faults) and query parsing; the rest lives in the submodules:
//! - `routing`: path parsing, discovery documents, RBAC refusals and verb dispatch
//! - `verbs`: get, list, create, update, delete and deletecollection on the store
//! - `patch`: PATCH (server-side apply, merge, strategic merge, JSON patch)
//! - `watch`: watch streams (initial events, replay, 410, bookmarks)
//! - `response`: JSON and Status responses

mod patch;
mod response;
mod routing;
mod verbs;
mod watch;

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, Response, header};
use serde_json::Value;

use crate::status::ApiError;
use crate::{LoggedRequest, RequestKey, Shared};
use routing::route;

pub(crate) use response::{error_response, forbidden_response};

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
