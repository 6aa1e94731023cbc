//! Patching: PATCH of an object or of its `status`, `finalize`, `ephemeralcontainers` or
//! `scale` with a JSON, merge or strategic-merge patch (applied by `crate::patch`), and
//! server-side apply for `application/apply-patch+yaml` ([`super::apply`]).

use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::Value;

use super::Call;
use crate::error::{ApiError, ApiResult};
use crate::http::{json_response, read_body, truthy, Body};
use crate::params::{dry_run, field_validation, typed_check};
use crate::patch::{self, PatchType};
use crate::render::render_one;
use crate::scale::{scale_of, scale_replicas, scaled};
use crate::subresource::Subresource;
use skiff_meta::object::without_rv;

/// PATCH on an object or one of its subresources.
pub(crate) async fn patch(
    call: &Call<'_>,
    name: &str,
    sub: Option<&str>,
    req: Request<Incoming>,
) -> ApiResult<Response<Body>> {
    let dry = dry_run(&call.q)?;
    let fv = field_validation(&call.q)?;
    let ct = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let ptype = PatchType::from_content_type(&ct).ok_or_else(|| {
        ApiError::unsupported_media(format!(
            "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {ct:?})"
        ))
    })?;
    let (body, _) = read_body(req).await?;
    if ptype == PatchType::Apply {
        let force = truthy(&call.q, "force");
        return super::apply::server_side_apply(call, name, sub, &body, force, dry, fv).await;
    }
    if sub == Some("scale") {
        return scale(call, name, &body, ptype, dry).await;
    }
    let res = call.res;
    let mut warnings = Vec::new();
    let updated = call
        .state
        .registry
        .update_as(
            res,
            call.ns,
            name,
            Subresource::of_update(sub),
            dry,
            Some(&call.manager),
            |old| {
                let mut doc = patch_base(old, ptype);
                patch::apply(&mut doc, &body, ptype).map_err(patch_error)?;
                if ptype == PatchType::Json && rv_of(&doc) == rv_of(old) {
                    doc = without_rv(&doc);
                }
                warnings = typed_check(res, &mut doc, fv)?;
                Ok(doc)
            },
        )
        .await?;
    Ok(json_response(
        200,
        &render_one(res, &updated, call.accept, &call.q),
        &warnings,
    ))
}

/// The patch applied to the object's Scale, whose replicas are then written to
/// `spec.replicas`.
async fn scale(
    call: &Call<'_>,
    name: &str,
    body: &[u8],
    ptype: PatchType,
    dry: bool,
) -> ApiResult<Response<Body>> {
    let res = call.res;
    call.write_scale(name, dry, |old| {
        let mut scale = scale_of(res, old);
        if let Some(m) = scale.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("resourceVersion");
        }
        patch::apply(&mut scale, body, ptype).map_err(patch_error)?;
        let replicas = scale_replicas(&scale)?;
        Ok(scaled(
            old,
            replicas,
            scale.pointer("/metadata/resourceVersion"),
        ))
    })
    .await
}

fn patch_error(e: patch::PatchError) -> ApiError {
    match e {
        patch::PatchError::Malformed(m) => ApiError::bad_request(m),
        patch::PatchError::Failed(m) => ApiError::new(422, "Invalid", m),
        patch::PatchError::TooLarge(m) => ApiError::new(
            413,
            "RequestEntityTooLarge",
            format!("Request entity too large: {m}"),
        ),
    }
}

/// The document a patch applies to: the live object, with its resourceVersion for JSON
/// patches (they may test or replace it, as `kubectl apply --server-side` does when it
/// upgrades client-side apply's managed fields), else without it (unconditional).
fn patch_base(old: &Value, ptype: PatchType) -> Value {
    if ptype == PatchType::Json {
        old.clone()
    } else {
        without_rv(old)
    }
}

fn rv_of(obj: &Value) -> Option<&Value> {
    obj.pointer("/metadata/resourceVersion")
}
