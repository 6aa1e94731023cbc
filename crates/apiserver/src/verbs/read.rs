//! Reading: `get` of one object (or its scale), `list` of a collection as JSON, Table or
//! PartialObjectMetadataList, and `watch`, handed to the watch streams.

use hyper::Response;
use serde_json::{json, Value};

use super::Call;
use crate::error::ApiResult;
use crate::http::{bytes_response, json_response, truthy, Body};
use crate::params::list_options;
use crate::render::{partial, render_one};
use crate::scale::scale_of;
use crate::table::{self, IncludeObject};

/// GET on a collection: a watch with `watch=true`, else a list.
pub(crate) async fn list(call: &Call<'_>) -> ApiResult<Response<Body>> {
    let Call {
        state,
        res,
        ns,
        q,
        accept,
        ..
    } = call;
    let (res, ns, accept) = (*res, *ns, *accept);
    if truthy(q, "watch") {
        return crate::watch::watch(state, res, ns, q, accept).await;
    }
    let opts = list_options(res, q)?;
    let page = state.registry.list_items(res, ns, &opts).await?;
    let mut meta = json!({"resourceVersion": page.revision.to_string()});
    if let Some(c) = &page.continue_token {
        meta["continue"] = json!(c);
    }
    let out = if accept.table {
        let objects: Vec<Value> = page.items.iter().map(|p| p.value()).collect();
        table::table(
            res,
            &objects,
            IncludeObject::parse(q.get("includeObject").map(String::as_str)),
            meta,
            true,
        )
    } else if accept.partial {
        json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": meta,
            "items": page.items.iter().map(|p| partial(&p.meta_obj())).collect::<Vec<_>>()})
    } else {
        // The items' JSON is spliced in as the cache holds it.
        let head = json!({"kind": format!("{}List", res.kind), "apiVersion": res.api_version(), "metadata": meta});
        let mut body = serde_json::to_vec(&head).unwrap_or_default();
        body.pop();
        body.extend_from_slice(b",\"items\":[");
        for (i, p) in page.items.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(&p.obj_json);
        }
        body.extend_from_slice(b"]}");
        return Ok(bytes_response(200, body));
    };
    Ok(json_response(200, &out, &[]))
}

/// GET on one object, or on its `status`, `ephemeralcontainers` or `approval`
/// subresource (the whole object), or its `scale` (an autoscaling/v1 Scale).
pub(crate) async fn get(
    call: &Call<'_>,
    name: &str,
    sub: Option<&str>,
) -> ApiResult<Response<Body>> {
    let obj = call.state.registry.get(call.res, call.ns, name).await?;
    if sub == Some("scale") {
        return Ok(json_response(200, &scale_of(call.res, &obj), &[]));
    }
    Ok(json_response(
        200,
        &render_one(call.res, &obj, call.accept, &call.q),
        &[],
    ))
}
