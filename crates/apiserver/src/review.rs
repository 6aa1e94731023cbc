//! The access reviews (SubjectAccessReview, SelfSubjectAccessReview,
//! LocalSubjectAccessReview, SelfSubjectRulesReview): answered, never stored.

use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::http::{json_response, parse_json_body, read_body, Body};
use crate::params::check_body_type;
use crate::resource::Resource;
use crate::state::State;
use crate::user::User;

use crate::error::ApiResult;

/// The create-only review resources: `authorization.k8s.io/v1` access reviews (answered
/// by the authorizer), `authentication.k8s.io/v1` SelfSubjectReview (`kubectl auth
/// whoami`) and TokenReview.
pub(crate) async fn review(
    state: &State,
    user: &User,
    res: &Resource,
    req: Request<Incoming>,
    method: &Method,
    named: bool,
) -> ApiResult<Response<Body>> {
    if *method != Method::POST || named {
        return Err(ApiError::method_not_allowed(format!(
            "{} only supports create",
            res.plural
        )));
    }
    let (body, ct) = read_body(req).await?;
    let mut review = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        parse_json_body(&body, ct.as_deref())?
    };
    check_body_type(res, &review)?;
    review["apiVersion"] = json!(res.api_version());
    review["kind"] = json!(res.kind);
    if review.get("metadata").is_none_or(|m| !m.is_object()) {
        review["metadata"] = json!({});
    }
    review["metadata"]["creationTimestamp"] = Value::Null;
    let spec = review.get("spec").cloned().unwrap_or(json!({}));
    let reg = &state.registry;
    review["status"] = match res.kind {
        "SelfSubjectReview" => json!({"userInfo": user_info(user)}),
        "TokenReview" => crate::authn::token_review(&state.auth, reg, &spec).await?,
        "SelfSubjectRulesReview" => {
            let ns = spec.get("namespace").and_then(Value::as_str).unwrap_or("");
            crate::rbac::rules_for(reg, user, ns).await?
        }
        _ => {
            let subject = if res.kind == "SubjectAccessReview" {
                let strs =
                    |k: &str| -> Vec<String> { skiff_meta::object::string_list(spec.get(k)) };
                User {
                    name: spec
                        .get("user")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .into(),
                    groups: strs("groups"),
                    uid: spec.get("uid").and_then(Value::as_str).unwrap_or("").into(),
                    extra: serde_json::from_value(spec.get("extra").cloned().unwrap_or(json!({})))
                        .unwrap_or_default(),
                }
            } else {
                user.clone()
            };
            let attrs = review_attributes(&spec)?;
            let d = crate::authz::authorize(reg, &subject, &attrs).await?;
            let mut status = json!({"allowed": d.allowed});
            if d.denied {
                status["denied"] = json!(true);
            }
            if !d.reason.is_empty() {
                status["reason"] = json!(d.reason);
            }
            status
        }
    };
    Ok(json_response(201, &review, &[]))
}

/// The attributes an access review asks about.
pub(crate) fn review_attributes(spec: &Value) -> ApiResult<crate::rbac::Attributes> {
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    if let Some(r) = spec.get("resourceAttributes").filter(|r| r.is_object()) {
        return Ok(crate::rbac::Attributes {
            verb: s(r, "verb"),
            resource_request: true,
            group: s(r, "group"),
            resource: s(r, "resource"),
            subresource: s(r, "subresource"),
            namespace: s(r, "namespace"),
            name: s(r, "name"),
            path: String::new(),
        });
    }
    if let Some(r) = spec.get("nonResourceAttributes").filter(|r| r.is_object()) {
        return Ok(crate::rbac::Attributes {
            verb: s(r, "verb"),
            path: s(r, "path"),
            ..Default::default()
        });
    }
    Err(ApiError::invalid(
        "authorization.k8s.io",
        "SubjectAccessReview",
        "",
        vec![crate::error::Cause::invalid(
            "spec.resourceAttributes",
            "",
            "exactly one of nonResourceAttributes or resourceAttributes must be specified",
        )],
    ))
}

pub(crate) fn user_info(user: &User) -> Value {
    let mut info = json!({"username": user.name, "groups": user.groups});
    if !user.uid.is_empty() {
        info["uid"] = json!(user.uid);
    }
    if !user.extra.is_empty() {
        info["extra"] = json!(user.extra);
    }
    info
}
