//! Services: defaults, validation, the cluster IP and node ports allocated on create
//! (from the Services that exist) and kept across updates.

use async_trait::async_trait;
use serde_json::{json, Value};
use skiff_meta::object::name_of;

use super::hooks::{Columns, Strategy};
use crate::admit::Objects;
use crate::cells::prelude::*;
use crate::defaults::{default, obj_mut};
use crate::error::{ApiError, ApiResult, Cause};
use crate::options::ListOptions;
use crate::resource::NameRule::Label1035;
use crate::resource::{res, Resource, ALL};
use crate::typed::Typed;
use crate::validation::{
    duplicate, go_list, invalid_raw, label_causes, not_supported, port_cause, SUBDOMAIN_MSG,
};
use skiff_meta::names::{is_dns1123_label, is_dns1123_subdomain};

/// Services as discovery serves them (their row of `kinds::TABLE`).
#[rustfmt::skip]
pub(crate) const RESOURCE: Resource = res("", "v1", "Service", "services", "service", true, &["svc"], ALL, true, false, false, Label1035);

pub(crate) struct Service;

#[async_trait]
impl Strategy for Service {
    fn typed(&self) -> Option<&'static dyn Typed> {
        Some(crate::typed::of::<k8s_openapi::api::core::v1::Service>())
    }

    fn field_selectors(&self) -> &'static [&'static str] {
        &["spec.clusterIP", "spec.type"]
    }

    fn defaults(&self, obj: &mut Value) {
        let spec = obj_mut(obj, "spec");
        default(spec, "type", json!("ClusterIP"));
        default(spec, "sessionAffinity", json!("None"));
        if spec.get("type").and_then(Value::as_str) != Some("ExternalName") {
            default(spec, "internalTrafficPolicy", json!("Cluster"));
        }
        if let Some(Value::Array(ports)) = spec.get_mut("ports") {
            for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                default(p, "protocol", json!("TCP"));
                if let Some(port) = p.get("port").cloned() {
                    default(p, "targetPort", port);
                }
            }
        }
    }

    fn prepare_create(&self, obj: &mut Value) {
        obj["status"] = json!({"loadBalancer": {}});
    }

    fn prepare_update(&self, old: &Value, new: &mut Value) {
        // Allocated values survive an update that leaves them empty.
        for field in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
            let empty = new
                .pointer(&format!("/spec/{field}"))
                .is_none_or(|v| v.is_null() || v == "" || v == &json!([]));
            if empty {
                if let Some(v) = old.pointer(&format!("/spec/{field}")) {
                    obj_mut(new, "spec").insert(field.into(), v.clone());
                }
            }
        }
        // A client that changed only clusterIP changed the first of clusterIPs
        // (kube-apiserver's normalizeClusterIPs); validation then refuses it.
        let ip = new.pointer("/spec/clusterIP").cloned();
        if ip.is_some()
            && ip.as_ref() != old.pointer("/spec/clusterIP")
            && new.pointer("/spec/clusterIPs") == old.pointer("/spec/clusterIPs")
        {
            if let (Some(ip), Some(first)) = (ip, new.pointer_mut("/spec/clusterIPs/0")) {
                *first = ip;
            }
        }
        // Node ports too, matched by port number and protocol.
        let old_ports = old
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if let Some(Value::Array(ports)) = new.pointer_mut("/spec/ports") {
            for p in ports
                .iter_mut()
                .filter(|p| p.get("nodePort").is_none_or(Value::is_null))
            {
                let same = old_ports.iter().find(|o| {
                    o.get("port") == p.get("port")
                        && o.get("protocol").and_then(Value::as_str).unwrap_or("TCP")
                            == p.get("protocol").and_then(Value::as_str).unwrap_or("TCP")
                });
                if let Some(np) = same.and_then(|o| o.get("nodePort")) {
                    p["nodePort"] = np.clone();
                }
            }
        }
    }

    fn validate(&self, obj: &Value, causes: &mut Vec<Cause>) {
        validate_service(obj, causes);
    }

    fn validate_update(&self, old: &Value, new: &Value, causes: &mut Vec<Cause>) {
        // kube-apiserver's validateUpgradeDowngradeClusterIPs: the primary cluster IP
        // stays (unless the Service becomes or stops being ExternalName).
        let ty = |o: &Value| {
            o.pointer("/spec/type")
                .and_then(Value::as_str)
                .unwrap_or("ClusterIP")
                .to_string()
        };
        let ips = |o: &Value| -> Vec<String> {
            o.pointer("/spec/clusterIPs")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        };
        let (was, now) = (ips(old), ips(new));
        if ty(old) != "ExternalName" && ty(new) != "ExternalName" {
            if let (Some(a), Some(b)) = (was.first(), now.first()) {
                if a != b {
                    causes.push(invalid_raw(
                        "spec.clusterIPs[0]",
                        &go_list("string", &now),
                        "may not change once set",
                    ));
                }
            }
            let ip = new.pointer("/spec/clusterIP").and_then(Value::as_str);
            if now.first().is_some_and(|first| Some(first.as_str()) != ip) {
                causes.push(invalid_raw(
                    "spec.clusterIPs",
                    &go_list("string", &now),
                    "first value must match `clusterIP`",
                ));
            }
        }
    }

    /// A cluster IP (and node ports) for a new Service.
    async fn before_create(&self, objs: &dyn Objects, obj: &mut Value) -> ApiResult<()> {
        allocate(objs, obj).await
    }

    async fn before_update(
        &self,
        objs: &dyn Objects,
        _old: &Value,
        new: &mut Value,
    ) -> ApiResult<()> {
        update_ports(objs, new).await
    }
}

/// Allocates a cluster IP (and node ports) for a new Service.
async fn allocate(objs: &dyn Objects, obj: &mut Value) -> ApiResult<()> {
    let ty = obj
        .pointer("/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
        .to_string();
    if ty == "ExternalName" {
        return Ok(());
    }
    let svcres = &RESOURCE;
    let all = objs.list(svcres, None, &ListOptions::default()).await?;
    let used_ips: std::collections::HashSet<String> = all
        .items
        .iter()
        .filter_map(|s| {
            s.pointer("/spec/clusterIP")
                .and_then(Value::as_str)
                .map(String::from)
        })
        .collect();
    let requested = obj
        .pointer("/spec/clusterIP")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let ip = if requested == "None" {
        requested
    } else if !requested.is_empty() {
        let valid = requested
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.octets()[0] == 10 && ip.octets()[1] == 43);
        if !valid {
            return Err(ApiError::invalid(
                "",
                "Service",
                name_of(obj),
                vec![Cause::invalid(
                    "spec.clusterIPs[0]",
                    &requested,
                    "provided IP is not in the valid range. The range of valid IPs is 10.43.0.0/16",
                )],
            ));
        }
        if used_ips.contains(&requested) {
            return Err(ApiError::invalid(
                "",
                "Service",
                name_of(obj),
                vec![Cause::invalid(
                    "spec.clusterIPs",
                    &requested,
                    "failed to allocate IP: provided IP is already allocated",
                )],
            ));
        }
        requested
    } else {
        let mut found = None;
        for _ in 0..1000 {
            let mut b = [0u8; 2];
            let _ = getrandom::fill(&mut b);
            if (b[0] == 0 && b[1] <= 10) || (b[0] == 255 && b[1] == 255) {
                continue;
            }
            let cand = format!("10.43.{}.{}", b[0], b[1]);
            if !used_ips.contains(&cand) {
                found = Some(cand);
                break;
            }
        }
        found.ok_or_else(|| ApiError::internal("failed to allocate a service IP: range is full"))?
    };
    let spec = &mut obj["spec"];
    spec["clusterIP"] = json!(ip);
    spec["clusterIPs"] = json!([ip]);
    if ip != "None" || spec.get("ipFamilies").is_none() {
        spec["ipFamilies"] = json!(["IPv4"]);
        spec["ipFamilyPolicy"] = json!("SingleStack");
    }
    assign_node_ports(obj, &all.items, None);
    Ok(())
}

/// On update: node ports for a Service that now needs them, none for one that does not.
async fn update_ports(objs: &dyn Objects, obj: &mut Value) -> ApiResult<()> {
    let svcres = &RESOURCE;
    let all = objs.list(svcres, None, &ListOptions::default()).await?;
    let this = (
        obj.pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        name_of(obj).to_string(),
    );
    assign_node_ports(obj, &all.items, Some((&this.0, &this.1)));
    Ok(())
}

/// Gives every port of a NodePort/LoadBalancer Service a free node port (30000-32767) and
/// clears node ports of other types, as the real server does. `this` (namespace, name) is
/// the Service itself, whose ports are not counted as used.
fn assign_node_ports(obj: &mut Value, all: &[Value], this: Option<(&str, &str)>) {
    let ty = obj
        .pointer("/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
        .to_string();
    let Some(spec) = obj.get_mut("spec").filter(|s| s.is_object()) else {
        return;
    };
    {
        if ty != "NodePort" && ty != "LoadBalancer" {
            if let Some(Value::Array(ports)) = spec.get_mut("ports") {
                for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                    p.remove("nodePort");
                }
            }
            if let Some(m) = spec.as_object_mut() {
                m.remove("externalTrafficPolicy");
                m.remove("allocateLoadBalancerNodePorts");
            }
            return;
        }
        {
            let used_ports: std::collections::HashSet<i64> = all
                .iter()
                .filter(|s| {
                    let key = (
                        s.pointer("/metadata/namespace")
                            .and_then(Value::as_str)
                            .unwrap_or(""),
                        s.pointer("/metadata/name")
                            .and_then(Value::as_str)
                            .unwrap_or(""),
                    );
                    Some(key) != this
                })
                .flat_map(|s| {
                    s.pointer("/spec/ports")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default()
                })
                .filter_map(|p| p.get("nodePort").and_then(Value::as_i64))
                .collect();
            let mut next = 30000 + {
                let mut b = [0u8; 2];
                let _ = getrandom::fill(&mut b);
                i64::from(u16::from_le_bytes(b)) % 2768
            };
            if let Some(Value::Array(ports)) = spec.get_mut("ports") {
                for p in ports.iter_mut() {
                    if p.get("nodePort").and_then(Value::as_i64).is_none() {
                        while used_ports.contains(&next) {
                            next = 30000 + (next - 30000 + 1) % 2768;
                        }
                        p["nodePort"] = json!(next);
                        next = 30000 + (next - 30000 + 1) % 2768;
                    }
                }
            }
            if ty == "LoadBalancer" && spec.get("allocateLoadBalancerNodePorts").is_none() {
                spec["allocateLoadBalancerNodePorts"] = json!(true);
            }
            if spec.get("externalTrafficPolicy").is_none() {
                spec["externalTrafficPolicy"] = json!("Cluster");
            }
        }
    }
}

fn validate_service(obj: &Value, causes: &mut Vec<Cause>) {
    let ty = obj
        .pointer("/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP");
    if !matches!(
        ty,
        "ClusterIP" | "ExternalName" | "LoadBalancer" | "NodePort"
    ) {
        causes.push(not_supported(
            "spec.type",
            ty,
            &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
        ));
    }
    let ports = obj.pointer("/spec/ports").and_then(Value::as_array);
    let headless = obj.pointer("/spec/clusterIP").and_then(Value::as_str) == Some("None");
    if ty == "ExternalName" {
        let name = obj
            .pointer("/spec/externalName")
            .and_then(Value::as_str)
            .unwrap_or("");
        if name.is_empty() {
            causes.push(Cause::required("spec.externalName"));
        } else if !is_dns1123_subdomain(name.trim_end_matches('.')) {
            causes.push(Cause::invalid("spec.externalName", name, SUBDOMAIN_MSG));
        }
    } else if ports.is_none_or(|p| p.is_empty()) && !headless {
        causes.push(Cause::required("spec.ports"));
    }
    let many = ports.is_some_and(|p| p.len() > 1);
    let mut names = std::collections::HashSet::new();
    for (i, p) in ports.into_iter().flatten().enumerate() {
        let at = |f: &str| format!("spec.ports[{i}].{f}");
        let name = p.get("name").and_then(Value::as_str).unwrap_or("");
        if name.is_empty() {
            if many {
                causes.push(Cause::required(at("name")));
            }
        } else if !is_dns1123_label(name) {
            causes.extend(label_causes(&at("name"), name));
        } else if !names.insert(name) {
            causes.push(duplicate(at("name"), name));
        }
        match p.get("port").and_then(Value::as_i64) {
            Some(1..=65535) => {}
            Some(n) => causes.push(port_cause(at("port"), n)),
            None => causes.push(Cause::required(at("port"))),
        }
        let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
        if !matches!(proto, "TCP" | "UDP" | "SCTP") {
            causes.push(not_supported(
                at("protocol"),
                proto,
                &["SCTP", "TCP", "UDP"],
            ));
        }
        match p.get("targetPort") {
            Some(Value::Number(n)) => match n.as_i64() {
                Some(1..=65535) => {}
                Some(n) => causes.push(port_cause(at("targetPort"), n)),
                None => {}
            },
            Some(Value::String(s)) if !is_port_name(s) => causes.push(Cause::invalid(
                at("targetPort"),
                s,
                "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
            )),
            _ => {}
        }
        if let Some(np) = p.get("nodePort").and_then(Value::as_i64) {
            if np != 0 && ty != "NodePort" && ty != "LoadBalancer" {
                causes.push(Cause::forbidden(
                    at("nodePort"),
                    "may not be used when `type` is 'ClusterIP'",
                ));
            }
        }
    }
}

/// An IANA service name: at most 15 of `[a-z0-9-]` with a letter, no `--`.
fn is_port_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && s.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        && s.bytes().any(|c| c.is_ascii_lowercase())
        && !s.starts_with('-')
        && !s.ends_with('-')
        && !s.contains("--")
}

// What `kubectl get` prints (`super::Columns`).
impl Columns for Service {
    fn columns(&self) -> &'static [Col] {
        &[
            NAME,
            ("Type", "string", "", 0),
            ("Cluster-IP", "string", "", 0),
            ("External-IP", "string", "", 0),
            ("Port(s)", "string", "", 0),
            AGE,
            SELECTOR,
        ]
    }

    fn cells(&self, o: &Value) -> Vec<Value> {
        let name = name(o);
        let age = age(o);
        let ty = s(o, "/spec/type");
        let ports = o
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .map(|ps| {
                ps.iter()
                    .map(|p| {
                        let port = i(p, "/port");
                        let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
                        match p.get("nodePort").and_then(Value::as_i64) {
                            Some(np) => format!("{port}:{np}/{proto}"),
                            None => format!("{port}/{proto}"),
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default();
        let mut external: Vec<String> = o
            .pointer("/spec/externalIPs")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(String::from))
            .collect();
        for ing in o
            .pointer("/status/loadBalancer/ingress")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let v = ing
                .get("ip")
                .or(ing.get("hostname"))
                .and_then(Value::as_str)
                .unwrap_or("");
            if !v.is_empty() {
                external.push(v.into());
            }
        }
        let external = match (ty, external.is_empty()) {
            ("ExternalName", _) => s(o, "/spec/externalName").to_string(),
            ("LoadBalancer", true) => "<pending>".into(),
            (_, true) => "<none>".into(),
            _ => external.join(","),
        };
        vec![
            name,
            json!(ty),
            json!(or_none(s(o, "/spec/clusterIP").into())),
            json!(external),
            json!(or_none(ports)),
            age,
            json!(selector_string(o.pointer("/spec/selector"))),
        ]
    }
}
