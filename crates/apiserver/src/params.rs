//! The query parameters (and DeleteOptions bodies) of resource requests: list options,
//! delete options, dry runs and field validation, and the checks of a body's type and
//! fields.

use hyper::body::Incoming;
use hyper::Request;
use serde_json::Value;
use skiff_meta::selector::{FieldSelector, LabelSelector};

use crate::error::ApiError;
use crate::http::{read_body, truthy, Query};
use crate::options::{DeleteOptions, ListOptions};
use crate::registry;
use crate::resource::Resource;

use crate::error::ApiResult;

/// `fieldValidation`: how unknown fields are treated.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum FieldValidation {
    Ignore,
    Warn,
    Strict,
}

pub(crate) fn field_validation(q: &Query) -> ApiResult<FieldValidation> {
    match q.get("fieldValidation").map(String::as_str) {
        None | Some("") | Some("Warn") => Ok(FieldValidation::Warn),
        Some("Ignore") => Ok(FieldValidation::Ignore),
        Some("Strict") => Ok(FieldValidation::Strict),
        Some(other) => Err(ApiError::bad_request(format!(
            "fieldValidation parameter unsupported: {other}. Must be one of: Ignore, Warn, Strict"
        ))),
    }
}

pub(crate) fn dry_run(q: &Query) -> ApiResult<bool> {
    match q.get("dryRun").map(String::as_str) {
        None | Some("") => Ok(false),
        Some("All") => Ok(true),
        Some(other) => Err(ApiError::bad_request(format!(
            "unsupported dryRun value {other:?}: only All"
        ))),
    }
}

pub(crate) fn list_options(res: &Resource, q: &Query) -> ApiResult<ListOptions> {
    let labels = LabelSelector::parse(q.get("labelSelector").map(String::as_str).unwrap_or(""))
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let fields = FieldSelector::parse(q.get("fieldSelector").map(String::as_str).unwrap_or(""))
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    for (f, _, _) in &fields.terms {
        if !(f == "metadata.name"
            || f == "metadata.namespace"
            || crate::kinds::of(res)
                .field_selectors()
                .contains(&f.as_str()))
        {
            return Err(ApiError::bad_request(format!(
                "field label not supported: {f}"
            )));
        }
    }
    let limit = match q.get("limit") {
        Some(l) if !l.is_empty() => l
            .parse::<i64>()
            .map_err(|_| ApiError::bad_request(format!("invalid limit {l:?}")))?
            .max(0) as usize,
        _ => 0,
    };
    let continue_token = q.get("continue").filter(|c| !c.is_empty()).cloned();
    let rv = q.get("resourceVersion").filter(|r| !r.is_empty());
    let (exact_revision, min_revision) = match (
        q.get("resourceVersionMatch")
            .map(String::as_str)
            .filter(|m| !m.is_empty()),
        rv,
    ) {
        // A watch-list (sendInitialEvents) with no resourceVersion: a consistent start.
        (Some("NotOlderThan"), None) if truthy(q, "sendInitialEvents") => (None, None),
        (Some(_), None) => {
            return Err(ApiError::bad_request(
                "resourceVersionMatch is forbidden unless resourceVersion is provided",
            ))
        }
        (Some("Exact"), Some(rv)) => (Some(registry::parse_rv(rv)?).filter(|r| *r > 0), None),
        (Some("NotOlderThan") | None, Some(rv)) => (None, Some(registry::parse_rv(rv)?)),
        (None, None) => (None, None),
        (Some(other), Some(_)) => {
            return Err(ApiError::bad_request(format!(
                "resourceVersionMatch: Unsupported value: \"{other}\": supported values: \"Exact\", \"NotOlderThan\""
            )))
        }
    };
    if continue_token.is_some() && exact_revision.is_some() {
        return Err(ApiError::bad_request(
            "specifying resource version is not allowed when using continue",
        ));
    }
    Ok(ListOptions {
        labels,
        fields,
        limit,
        continue_token,
        exact_revision,
        min_revision,
    })
}

pub(crate) fn delete_options_from_query(q: &Query) -> ApiResult<DeleteOptions> {
    Ok(DeleteOptions {
        propagation_policy: q.get("propagationPolicy").cloned(),
        grace_period_seconds: match q.get("gracePeriodSeconds") {
            Some(g) => {
                Some(g.parse().map_err(|_| {
                    ApiError::bad_request(format!("invalid gracePeriodSeconds {g:?}"))
                })?)
            }
            None => None,
        },
        precondition_uid: None,
        precondition_resource_version: None,
        dry_run: dry_run(q)?,
    })
}

pub(crate) async fn delete_options(req: Request<Incoming>, q: &Query) -> ApiResult<DeleteOptions> {
    let mut opts = delete_options_from_query(q)?;
    let (body, _) = read_body(req).await?;
    if body.iter().any(|b| !b.is_ascii_whitespace()) {
        let v: Value = serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("invalid DeleteOptions: {e}")))?;
        delete_options_body(&v, &mut opts);
    }
    Ok(opts)
}

/// Applies a DeleteOptions body to `opts` (on top of the query's).
pub(crate) fn delete_options_body(v: &Value, opts: &mut DeleteOptions) {
    {
        if let Some(p) = v.get("propagationPolicy").and_then(Value::as_str) {
            opts.propagation_policy = Some(p.to_string());
        } else if let Some(orphan) = v.get("orphanDependents").and_then(Value::as_bool) {
            opts.propagation_policy = Some(if orphan { "Orphan" } else { "Background" }.into());
        }
        if let Some(g) = v.get("gracePeriodSeconds").and_then(Value::as_i64) {
            opts.grace_period_seconds = Some(g);
        }
        if let Some(u) = v.pointer("/preconditions/uid").and_then(Value::as_str) {
            opts.precondition_uid = Some(u.to_string());
        }
        if let Some(r) = v
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
        {
            opts.precondition_resource_version = Some(r.to_string());
        }
        if v.get("dryRun")
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|x| x == "All"))
        {
            opts.dry_run = true;
        }
    }
}

/// Type-checks and prunes a written object; returns warnings.
pub(crate) fn typed_check(
    res: &Resource,
    obj: &mut Value,
    fv: FieldValidation,
) -> ApiResult<Vec<String>> {
    let unknown = crate::typed::check(crate::kinds::of(res).typed(), obj).map_err(|e| {
        ApiError::bad_request(format!(
            "{} in version \"{}\" cannot be handled as a {}: {e}",
            res.kind, res.version, res.kind
        ))
    })?;
    if unknown.is_empty() {
        return Ok(Vec::new());
    }
    match fv {
        FieldValidation::Ignore => Ok(Vec::new()),
        FieldValidation::Warn => Ok(unknown
            .iter()
            .map(|f| format!("unknown field \"{f}\""))
            .collect()),
        FieldValidation::Strict => {
            let list: Vec<String> = unknown
                .iter()
                .map(|f| format!("unknown field \"{f}\""))
                .collect();
            Err(ApiError::bad_request(format!(
                "{} in version \"{}\" cannot be handled as a {}: strict decoding error: {}",
                res.kind,
                res.version,
                res.kind,
                list.join(", ")
            )))
        }
    }
}

pub(crate) fn check_body_type(res: &Resource, body: &Value) -> ApiResult<()> {
    if let Some(kind) = body.get("kind").and_then(Value::as_str) {
        if !kind.is_empty() && kind != res.kind {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({}) does not match the expected API version ({}) or the kind ({kind}) is not {}",
                body.get("apiVersion").and_then(Value::as_str).unwrap_or(""),
                res.api_version(),
                res.kind
            )));
        }
    }
    if let Some(av) = body.get("apiVersion").and_then(Value::as_str) {
        if !av.is_empty() && av != res.api_version() {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({av}) does not match the expected API version ({})",
                res.api_version()
            )));
        }
    }
    Ok(())
}
