//! `/networks`, `/volumes` and `/plugins`: lists, inspects, create, remove and
//! prune.

use super::create::{flag, string};
use super::{no_content, ok, Answer, ApiError, Req};
use hyper::StatusCode;
use serde_json::{json, Value};
use skiff_engine::network as net;
use std::collections::BTreeMap;

/// `Labels`: a map of strings.
fn labels(v: Option<&Value>) -> Result<BTreeMap<String, String>, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                _ => Err(ApiError::bad(format!(
                    "Labels: the value of {k} must be a string"
                ))),
            })
            .collect(),
        Some(_) => Err(ApiError::bad("Labels must be a map of strings")),
    }
}

/// Fields skiff does not apply: refused when set, not dropped.
fn refuse_set(b: &Value, fields: &[&str], what: &str) -> Result<(), ApiError> {
    for f in fields {
        let set = match b.get(*f) {
            None | Some(Value::Null) | Some(Value::Bool(false)) => false,
            Some(Value::Object(m)) => !m.is_empty(),
            Some(Value::Array(a)) => !a.is_empty(),
            Some(Value::String(s)) => !s.is_empty(),
            Some(_) => true,
        };
        if set {
            return Err(ApiError(
                StatusCode::NOT_IMPLEMENTED,
                format!("{what}: {f} is not supported by skiff"),
            ));
        }
    }
    Ok(())
}

/// `POST /networks/create`: a bridge network, its subnet and gateway from `IPAM`.
pub(super) fn network_create(req: &Req) -> Answer {
    let b = req.json_body("network create")?;
    let name = string(b.get("Name"), "Name")?
        .ok_or_else(|| ApiError::bad("network create: Name is required"))?;
    let driver = string(b.get("Driver"), "Driver")?.unwrap_or_else(|| "bridge".into());
    if driver != "bridge" {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("plugin \"{driver}\" not found: skiff's networks are bridges"),
        ));
    }
    refuse_set(
        &b,
        &[
            "EnableIPv6",
            "Options",
            "ConfigFrom",
            "ConfigOnly",
            "Ingress",
            "Scope",
        ],
        "network create",
    )?;
    let (mut subnet, mut gateway) = (None, None);
    if let Some(ipam) = b.get("IPAM").filter(|v| !v.is_null()) {
        refuse_set(ipam, &["Options"], "network create: IPAM")?;
        if let Some(d) = string(ipam.get("Driver"), "IPAM.Driver")? {
            if d != "default" {
                return Err(ApiError(
                    StatusCode::NOT_IMPLEMENTED,
                    format!("network create: IPAM driver {d} is not supported by skiff"),
                ));
            }
        }
        match ipam.get("Config") {
            None | Some(Value::Null) => {}
            Some(Value::Array(cfgs)) if cfgs.len() <= 1 => {
                if let Some(c) = cfgs.first() {
                    refuse_set(
                        c,
                        &["IPRange", "AuxiliaryAddresses"],
                        "network create: IPAM.Config",
                    )?;
                    subnet = string(c.get("Subnet"), "IPAM.Config.Subnet")?;
                    gateway = string(c.get("Gateway"), "IPAM.Config.Gateway")?;
                }
            }
            Some(Value::Array(_)) => {
                return Err(ApiError(
                    StatusCode::NOT_IMPLEMENTED,
                    "network create: one IPAM config per network in skiff".into(),
                ))
            }
            Some(_) => return Err(ApiError::bad("IPAM.Config must be a list")),
        }
    }
    let e = req.engine()?;
    let n = net::create_network(
        &e.root,
        &e.bridge,
        &name,
        subnet.as_deref(),
        gateway.as_deref(),
        labels(b.get("Labels"))?,
        flag(b.get("Internal"), "Internal")?,
    )?;
    Ok(super::json_response(
        StatusCode::CREATED,
        &json!({ "Id": n.id, "Warning": "" }),
    ))
}

/// `DELETE /networks/{id}`: 204; 409 while a running container is on it.
pub(super) fn network_remove(req: &Req, id: &str) -> Answer {
    let e = req.engine()?;
    if net::get_network(&e.root, &e.bridge, id).is_err() {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("network {id} not found"),
        ));
    }
    e.remove_network(id)?;
    no_content(StatusCode::NO_CONTENT)
}

/// `POST /networks/{id}/connect` (`{"Container", "EndpointConfig": {"Aliases"}}`) and
/// `/disconnect` (`{"Container", "Force"}`): 200.
pub(super) fn network_connect(req: &Req, id: &str, connect: bool) -> Answer {
    let b = req.json_body("network connect")?;
    let container = string(b.get("Container"), "Container")?
        .ok_or_else(|| ApiError::bad("Container is required"))?;
    let mut aliases = Vec::new();
    if let Some(ep) = b.get("EndpointConfig").filter(|v| !v.is_null()) {
        refuse_set(
            ep,
            &["IPAMConfig", "Links", "DriverOpts", "MacAddress"],
            "network connect: EndpointConfig",
        )?;
        aliases = super::create::strings(ep.get("Aliases"), "EndpointConfig.Aliases")?;
    }
    let e = req.engine()?;
    let n = net::get_network(&e.root, &e.bridge, id)
        .map_err(|_| ApiError(StatusCode::NOT_FOUND, format!("network {id} not found")))?;
    e.connect_network(&container, &n.name, &aliases, connect)?;
    no_content(StatusCode::OK)
}

/// `POST /networks/prune`: the user-defined networks no container refers to;
/// `{"NetworksDeleted"}`.
pub(super) fn network_prune(req: &Req) -> Answer {
    req.no_filters("network prune")?;
    let e = req.engine()?;
    let containers = e.list()?;
    let mut deleted = Vec::new();
    for n in net::list_networks(&e.root, &e.bridge)? {
        let used = containers.iter().any(|c| {
            c.record.host.network_mode == n.name || c.record.host.extra_networks.contains(&n.name)
        });
        if n.user_defined && !used {
            net::remove_network(&e.root, &n)?;
            deleted.push(n.name);
        }
    }
    ok(json!({ "NetworksDeleted": deleted }))
}

/// `POST /volumes/create`: 201 with the volume (an existing one is returned as is).
pub(super) fn volume_create(req: &Req) -> Answer {
    let b = req.json_body("volume create")?;
    if let Some(d) = string(b.get("Driver"), "Driver")? {
        if d != "local" {
            return Err(ApiError(
                StatusCode::NOT_FOUND,
                format!("plugin \"{d}\" not found: skiff's volumes are local"),
            ));
        }
    }
    refuse_set(&b, &["DriverOpts", "ClusterVolumeSpec"], "volume create")?;
    let name = string(b.get("Name"), "Name")?.unwrap_or_else(skiff_engine::names::new_id);
    let v = skiff_engine::volumes::create(&req.root, &name, labels(b.get("Labels"))?, false)?;
    Ok(super::json_response(
        StatusCode::CREATED,
        &serde_json::to_value(v).map_err(anyhow::Error::from)?,
    ))
}

/// `DELETE /volumes/{name}?force`: 204; 404 unknown, 409 in use.
pub(super) fn volume_remove(req: &Req, name: &str) -> Answer {
    let force = req.flag("force")?;
    if skiff_engine::volumes::inspect(&req.root, name).is_err() {
        if force {
            return no_content(StatusCode::NO_CONTENT);
        }
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("get {name}: no such volume"),
        ));
    }
    req.engine()?.remove_volume(name, force)?;
    no_content(StatusCode::NO_CONTENT)
}

/// `POST /volumes/prune?filters={"all":["true"]}`: the unused anonymous volumes (all
/// unused ones with `all`).
pub(super) fn volume_prune(req: &Req) -> Answer {
    let mut all = false;
    for (name, value) in req.filters()? {
        match (name.as_str(), value.as_str()) {
            ("all", "true" | "1") => all = true,
            ("all", "false" | "0") => all = false,
            _ => {
                return Err(ApiError(
                    StatusCode::NOT_IMPLEMENTED,
                    format!("volume prune: the filter {name}={value} is not built yet in skiff's Docker API"),
                ))
            }
        }
    }
    let (removed, freed) = req.engine()?.prune_volumes(all)?;
    ok(json!({ "VolumesDeleted": removed, "SpaceReclaimed": freed }))
}

/// `GET /networks`: the bridge networks, then host and none.
pub(super) fn networks(req: &Req) -> Answer {
    let filters = crate::listing::NetworkFilters::new(&req.filters()?)?;
    let e = req.engine()?;
    let containers = e.list()?;
    let list = net::list_networks(&e.root, &e.bridge)?;
    ok(Value::Array(
        list.iter()
            .map(|n| (n, crate::inspect::network(n, &containers)))
            .filter(|(n, v)| filters.matches(&crate::inspect::network_info(n, v)))
            .map(|(_, v)| v)
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
    let filters = crate::listing::VolumeFilters::new(&req.filters()?)?;
    let in_use = if filters.reads_usage() {
        req.engine()?.volumes_in_use()?
    } else {
        Default::default()
    };
    let mut list = skiff_engine::volumes::list(&req.root)?;
    list.retain(|v| filters.matches(v, &in_use));
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
