//! Deleting: DELETE of one object (with its options from the body or the query) and of
//! a collection (the objects a list with the query's selectors names, one by one).

use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::{json, Value};

use super::Call;
use crate::error::{ApiError, ApiResult};
use crate::http::{json_response, Body};
use crate::params::{delete_options, delete_options_from_query, list_options};
use crate::registry::ListOptions;
use crate::render::delete_result;

/// DELETE on one object.
pub(crate) async fn delete(
    call: &Call<'_>,
    name: &str,
    req: Request<Incoming>,
) -> ApiResult<Response<Body>> {
    let opts = delete_options(req, &call.q).await?;
    let deleted = call
        .state
        .registry
        .delete(call.res, call.ns, name, &opts)
        .await?;
    Ok(json_response(200, &delete_result(call.res, &deleted), &[]))
}

/// DELETE on a collection (`deletecollection`): every object the list options pick,
/// those already gone skipped; answered with the list of what was deleted.
pub(crate) async fn delete_collection(call: &Call<'_>) -> ApiResult<Response<Body>> {
    let (res, reg) = (call.res, &call.state.registry);
    let opts = delete_options_from_query(&call.q)?;
    let list_opts = list_options(res, &call.q)?;
    let page = reg
        .list(
            res,
            call.ns,
            &ListOptions {
                limit: 0,
                continue_token: None,
                ..list_opts
            },
        )
        .await?;
    let mut items = Vec::new();
    for obj in page.items {
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let ons = obj
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .map(String::from);
        match reg.delete(res, ons.as_deref(), &name, &opts).await {
            Ok(d) => items.push(d.object),
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    let rev = reg
        .store()
        .current_revision()
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(json_response(
        200,
        &json!({"kind": format!("{}List", res.kind), "apiVersion": res.api_version(), "metadata": {"resourceVersion": rev.to_string()}, "items": items}),
        &[],
    ))
}
