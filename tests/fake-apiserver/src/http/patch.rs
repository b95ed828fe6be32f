//! PATCH: server-side apply (`application/apply-patch+yaml`), merge and strategic merge
//! patches, and JSON patches, each written back through the store.

use serde_json::Value;

use super::Params;
use super::routing::Target;
use super::verbs::{check_name, get, need_body, write_kind};
use crate::patch;
use crate::resources::RESOURCES;
use crate::status::ApiError;
use crate::store::State;

pub(super) fn patch_obj(
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
