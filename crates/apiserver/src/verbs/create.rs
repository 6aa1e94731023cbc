//! Creating: POST of a new object to its collection, and the create-only subresources
//! (`pods/binding`, `pods/eviction`, `serviceaccounts/token`), whose rules live in
//! `binding`, `eviction` and `authn`.

use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::{json, Value};

use super::Call;
use crate::error::{ApiError, ApiResult};
use crate::http::{json_bytes_response, json_response, parse_json_body, read_body, Body};
use crate::params::{
    check_body_type, delete_options_body, delete_options_from_query, dry_run, field_validation,
    typed_check,
};
use crate::render::render_one;

/// POST on a collection: a new object.
pub(crate) async fn create(call: &Call<'_>, req: Request<Incoming>) -> ApiResult<Response<Body>> {
    let Call {
        state,
        user,
        res,
        ns,
        q,
        accept,
        manager,
    } = call;
    let (res, ns, accept) = (*res, *ns, *accept);
    let reg = &state.registry;
    let dry = dry_run(q)?;
    let fv = field_validation(q)?;
    let (body, ct) = read_body(req).await?;
    let mut obj = parse_json_body(&body, ct.as_deref())?;
    check_body_type(res, &obj)?;
    if let (Some(body_ns), Some(ns)) = (
        obj.pointer("/metadata/namespace").and_then(Value::as_str),
        ns,
    ) {
        if !body_ns.is_empty() && body_ns != ns {
            return Err(ApiError::bad_request("the namespace of the provided object does not match the namespace sent on the request"));
        }
    }
    let warnings = typed_check(res, &mut obj, fv)?;
    crate::nodeauthz::admit_create(user, res, &obj)?;
    if res.kind == "CertificateSigningRequest" {
        crate::csr::prepare_create(user, &mut obj)?;
    }
    let p = reg
        .create_prepared(res, ns, obj, dry, Some(manager))
        .await?;
    if res.kind == "Namespace" && !dry {
        let name = p.sel.field("metadata.name");
        crate::admission::namespace_defaults(reg, name).await?;
    }
    if !accept.table && !accept.partial && res.kind != "CertificateSigningRequest" {
        // The JSON the watch cache serves too, serialized once.
        return Ok(json_bytes_response(201, p.obj_json.clone(), &warnings));
    }
    let mut created = p.value();
    if res.kind == "CertificateSigningRequest" && !dry {
        created = crate::csr::reconcile(reg, res, &state.signer, created).await?;
    }
    Ok(json_response(
        201,
        &render_one(res, &created, accept, q),
        &warnings,
    ))
}

/// What binding and eviction answer: a Status of success.
fn created_status() -> Response<Body> {
    json_response(
        201,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
        &[],
    )
}

/// POST on `pods/{name}/binding`: the pod bound to the Binding's node.
pub(crate) async fn binding(
    call: &Call<'_>,
    name: &str,
    req: Request<Incoming>,
) -> ApiResult<Response<Body>> {
    let dry = dry_run(&call.q)?;
    let (body, ct) = read_body(req).await?;
    let binding = parse_json_body(&body, ct.as_deref())?;
    crate::binding::bind(&call.state.registry, call.res, call.ns, name, dry, &binding).await?;
    Ok(created_status())
}

/// POST on `pods/{name}/eviction`: the pod deleted if its disruption budgets allow it.
pub(crate) async fn eviction(
    call: &Call<'_>,
    name: &str,
    req: Request<Incoming>,
) -> ApiResult<Response<Body>> {
    let mut opts = delete_options_from_query(&call.q)?;
    let (body, ct) = read_body(req).await?;
    let eviction = parse_json_body(&body, ct.as_deref())?;
    if let Some(d) = eviction.get("deleteOptions").filter(|d| d.is_object()) {
        delete_options_body(d, &mut opts);
    }
    crate::eviction::evict(
        &call.state.registry,
        call.ns.unwrap_or_default(),
        name,
        &eviction,
        &opts,
    )
    .await?;
    Ok(created_status())
}

/// POST on `serviceaccounts/{name}/token`: a TokenRequest, answered with a token for
/// the account.
pub(crate) async fn token(
    call: &Call<'_>,
    account: &str,
    req: Request<Incoming>,
) -> ApiResult<Response<Body>> {
    let Call {
        state, user, ns, ..
    } = call;
    let reg = &state.registry;
    let (body, ct) = read_body(req).await?;
    let body = parse_json_body(&body, ct.as_deref())?;
    let ns = ns.unwrap_or_default();
    crate::nodeauthz::admit_token_request(reg, user, ns, account, &body).await?;
    let out = crate::authn::token_request(&state.auth, reg, ns, account, body).await?;
    Ok(json_response(201, &out, &[]))
}
