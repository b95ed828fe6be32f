//! Responses: JSON bodies, API errors as Status objects, 404 for unknown paths and the
//! 403 a test's `forbid` produces.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Response, StatusCode, header};
use serde_json::Value;

use crate::Shared;
use crate::resources;
use crate::status::ApiError;

pub(super) fn json_response(code: u16, v: &Value) -> Response<Body> {
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

pub(super) fn not_found_path() -> Response<Body> {
    error_response(&ApiError::new(
        404,
        "NotFound",
        "the server could not find the requested resource",
    ))
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
