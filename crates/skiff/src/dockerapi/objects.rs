//! `/networks`, `/volumes` and `/plugins`: lists and inspects.

use super::{ok, Answer, ApiError, Req};
use hyper::StatusCode;
use serde_json::Value;
use skiff_engine::network as net;

/// `GET /networks`: the bridge networks, then host and none.
pub(super) fn networks(req: &Req) -> Answer {
    req.no_filters("network")?;
    let e = req.engine()?;
    let containers = e.list()?;
    let list = net::list_networks(&e.root, &e.bridge)?;
    ok(Value::Array(
        list.iter()
            .map(|n| crate::inspect::network(n, &containers))
            .collect(),
    ))
}

/// `GET /networks/{id}`: 404 for an unknown network.
pub(super) fn network(req: &Req, id: &str) -> Answer {
    let e = req.engine()?;
    let n = net::get_network(&e.root, &e.bridge, id)
        .map_err(|_| ApiError(StatusCode::NOT_FOUND, format!("network {id} not found")))?;
    ok(crate::inspect::network(&n, &e.list()?))
}

/// `GET /volumes`: `{"Volumes": […], "Warnings": []}`.
pub(super) fn volumes(req: &Req) -> Answer {
    req.no_filters("volume")?;
    let list = skiff_engine::volumes::list(&req.root)?;
    ok(serde_json::json!({
        "Volumes": serde_json::to_value(list).map_err(anyhow::Error::from)?,
        "Warnings": [],
    }))
}

/// `GET /volumes/{name}`: 404 for an unknown volume.
pub(super) fn volume(req: &Req, name: &str) -> Answer {
    let v = skiff_engine::volumes::inspect(&req.root, name)
        .map_err(|e| ApiError(StatusCode::NOT_FOUND, e.to_string()))?;
    ok(serde_json::to_value(v).map_err(anyhow::Error::from)?)
}

/// `GET /plugins/{name}/json`: skiff has no plugins.
pub(super) fn plugin(name: &str) -> Answer {
    Err(ApiError(
        StatusCode::NOT_FOUND,
        format!("plugin \"{name}\" not found"),
    ))
}
