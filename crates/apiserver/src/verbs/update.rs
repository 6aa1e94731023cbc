//! Replacing: PUT of a whole object, or of what one of its subresources writes
//! (`status`, `finalize` and `ephemeralcontainers` through the registry's
//! [`Subresource`] rules; a workload's `scale`; a CertificateSigningRequest's `approval`).

use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::Value;

use super::Call;
use crate::error::ApiResult;
use crate::http::{json_response, parse_json_body, read_body, Body};
use crate::params::{check_body_type, dry_run, field_validation, typed_check, FieldValidation};
use crate::render::render_one;
use crate::scale::{scale_replicas, scaled};
use crate::subresource::Subresource;

/// A PUT's dry-run and field validation (checked before the body is read) and its body.
struct Put {
    dry: bool,
    fv: FieldValidation,
    body: Value,
}

impl Put {
    async fn read(call: &Call<'_>, req: Request<Incoming>) -> ApiResult<Put> {
        let dry = dry_run(&call.q)?;
        let fv = field_validation(&call.q)?;
        let (body, ct) = read_body(req).await?;
        let body = parse_json_body(&body, ct.as_deref())?;
        Ok(Put { dry, fv, body })
    }

    /// The body checked as the resource's kind; the warnings field validation found.
    fn check(&mut self, call: &Call<'_>) -> ApiResult<Vec<String>> {
        check_body_type(call.res, &self.body)?;
        typed_check(call.res, &mut self.body, self.fv)
    }
}

/// PUT on an object or on its `status`, `finalize` or `ephemeralcontainers`.
pub(crate) async fn update(
    call: &Call<'_>,
    name: &str,
    sub: Option<&str>,
    req: Request<Incoming>,
) -> ApiResult<Response<Body>> {
    let mut put = Put::read(call, req).await?;
    let warnings = put.check(call)?;
    let res = call.res;
    let updated = call
        .state
        .registry
        .update_as(
            res,
            call.ns,
            name,
            Subresource::of_update(sub),
            put.dry,
            Some(&call.manager),
            |_| Ok(put.body.clone()),
        )
        .await?;
    Ok(json_response(
        200,
        &render_one(res, &updated, call.accept, &call.q),
        &warnings,
    ))
}

/// PUT on `{name}/scale`: the Scale's replicas written to `spec.replicas`.
pub(crate) async fn scale(
    call: &Call<'_>,
    name: &str,
    req: Request<Incoming>,
) -> ApiResult<Response<Body>> {
    let put = Put::read(call, req).await?;
    let replicas = scale_replicas(&put.body)?;
    let rv = put.body.pointer("/metadata/resourceVersion").cloned();
    call.write_scale(name, put.dry, |old| Ok(scaled(old, replicas, rv.as_ref())))
        .await
}

/// PUT on `certificatesigningrequests/{name}/approval`: the conditions of the body
/// written, and an approved request signed.
pub(crate) async fn approval(
    call: &Call<'_>,
    name: &str,
    req: Request<Incoming>,
) -> ApiResult<Response<Body>> {
    let mut put = Put::read(call, req).await?;
    let warnings = put.check(call)?;
    let (res, reg) = (call.res, &call.state.registry);
    let updated = reg
        .update(res, call.ns, name, Subresource::Status, put.dry, |old| {
            crate::csr::apply_approval(old, &put.body)
        })
        .await?;
    let updated = if put.dry {
        updated
    } else {
        crate::csr::reconcile(reg, res, &call.state.signer, updated).await?
    };
    Ok(json_response(
        200,
        &render_one(res, &updated, call.accept, &call.q),
        &warnings,
    ))
}
