//! Server-side apply: a PATCH with `application/apply-patch+yaml`, merged into the
//! object (or its status) by the managed-fields rules of `crate::managed`, creating the
//! object when it does not exist.

use hyper::Response;
use serde_json::Value;

use super::Call;
use crate::error::{ApiError, ApiResult};
use crate::http::{json_response, parse_yaml_object, Body};
use crate::params::{check_body_type, typed_check, FieldValidation};
use crate::render::render_one;
use crate::subresource::Subresource;
use skiff_meta::object::without_rv;

/// `PATCH` with `application/apply-patch+yaml`: server-side apply of the body by the
/// request's manager, creating the object if it does not exist.
pub(crate) async fn server_side_apply(
    call: &Call<'_>,
    name: &str,
    sub: Option<&str>,
    body: &[u8],
    force: bool,
    dry: bool,
    fv: FieldValidation,
) -> ApiResult<Response<Body>> {
    let Call {
        state,
        res,
        ns,
        q,
        accept,
        manager,
        ..
    } = call;
    let (res, ns, accept) = (*res, *ns, *accept);
    let reg = &state.registry;
    // Apply names its manager explicitly (no user-agent fallback).
    crate::managed::validate_manager(
        q.get("fieldManager").map(String::as_str).unwrap_or(""),
        true,
    )?;
    if !matches!(sub, None | Some("status")) {
        return Err(ApiError::unsupported_media(format!(
            "server-side apply is not supported on {}/{}",
            res.plural,
            sub.unwrap_or_default()
        )));
    }
    let config = parse_yaml_object(body)?;
    for (field, what) in [("apiVersion", "apiVersion"), ("kind", "kind")] {
        if config
            .get(field)
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
        {
            return Err(ApiError::bad_request(format!(
                "{what} must be set in the apply configuration"
            )));
        }
    }
    check_body_type(res, &config)?;
    let body_name = config
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    if body_name != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    let mut warnings = Vec::new();
    let existing = match reg.get(res, ns, name).await {
        Ok(o) => Some(o),
        Err(e) if e.code == 404 && sub.is_none() => None,
        Err(e) => return Err(e),
    };
    if existing.is_none() {
        let applied = crate::managed::apply(res, None, &config, &manager.name, None, force)?;
        let mut obj = applied;
        warnings = typed_check(res, &mut obj, fv)?;
        match reg.create(res, ns, obj, dry).await {
            Ok(created) => {
                return Ok(json_response(
                    201,
                    &render_one(res, &created, accept, q),
                    &warnings,
                ))
            }
            // Created meanwhile: apply to it.
            Err(e) if e.code == 409 && e.reason == "AlreadyExists" => {}
            Err(e) => return Err(e),
        }
    }
    let subres = Subresource::of_update(sub);
    let updated = reg
        .update(res, ns, name, subres, dry, |old| {
            let applied =
                crate::managed::apply(res, Some(old), &config, &manager.name, sub, force)?;
            let mut doc = without_rv(&applied);
            warnings = typed_check(res, &mut doc, fv)?;
            Ok(doc)
        })
        .await?;
    Ok(json_response(
        200,
        &render_one(res, &updated, accept, q),
        &warnings,
    ))
}
