//! Services: defaults, validation, and their cluster IPs and node ports, claimed from
//! the allocator (`crate::alloc`) as kube-apiserver does: on create, on a `type` change
//! (what the new type no longer needs is dropped and released once the write is
//! stored), and released when the Service is deleted.

use async_trait::async_trait;
use serde_json::{json, Value};

use super::hooks::{Columns, Strategy};
use crate::admit::Objects;
use crate::cells::prelude::*;
use crate::defaults::{default, obj_mut};
use crate::error::{ApiResult, Cause};
use crate::resource::NameRule::Label1035;
use crate::resource::{res, Resource, ALL};
use crate::typed::Typed;
use crate::validation::{
    duplicate, go_list, invalid_raw, label_causes, not_supported, port_cause, SUBDOMAIN_MSG,
};
use skiff_meta::names::{is_dns1123_label, is_dns1123_subdomain};

/// A Service's `spec.type` (ClusterIP when absent).
pub(crate) fn svc_type(svc: &Value) -> &str {
    svc.pointer("/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
}

/// Whether `svc` gets node ports (kube's `needsNodePort`).
pub(crate) fn needs_node_ports(svc: &Value) -> bool {
    matches!(svc_type(svc), "NodePort" | "LoadBalancer")
}

/// Whether `svc` gets a health-check node port (kube's `NeedsHealthCheck`).
pub(crate) fn needs_health_check(svc: &Value) -> bool {
    svc_type(svc) == "LoadBalancer"
        && svc
            .pointer("/spec/externalTrafficPolicy")
            .and_then(Value::as_str)
            == Some("Local")
}

/// Services as discovery serves them (their row of `kinds::TABLE`).
#[rustfmt::skip]
pub(crate) const RESOURCE: Resource = res("", "v1", "Service", "services", "service", true, &["svc"], ALL, true, false, false, Label1035);

pub(crate) struct Service;

fn ty(o: &Value) -> &str {
    o.pointer("/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
}

/// Gets a cluster IP (even "None" counts): every type but ExternalName.
fn needs_cluster_ip(o: &Value) -> bool {
    ty(o) != "ExternalName"
}

/// Reachable from outside the cluster (kube's `ExternallyAccessible`).
fn externally_accessible(o: &Value) -> bool {
    matches!(ty(o), "NodePort" | "LoadBalancer")
        || (ty(o) == "ClusterIP"
            && o.pointer("/spec/externalIPs")
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty()))
}

fn remove_spec(o: &mut Value, field: &str) {
    if let Some(spec) = o.get_mut("spec").and_then(Value::as_object_mut) {
        spec.remove(field);
    }
}

fn node_ports(o: &Value) -> Vec<Option<&Value>> {
    o.pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|p| p.get("nodePort").filter(|v| !v.is_null()))
        .collect()
}

/// Allocated values a write left out are the old ones (kube's `patchAllocatedValues`),
/// where both the old and the new type need them.
fn patch_allocated_values(old: &Value, new: &mut Value) {
    if needs_cluster_ip(old) && needs_cluster_ip(new) {
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
    }
    if needs_node_ports(old) && needs_node_ports(new) {
        // Matched by port name; a node port another port of the new object uses stays
        // with it.
        let number = |o: &Value| o.get("nodePort").and_then(Value::as_i64);
        let old_ports: Vec<Value> = old
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let used: Vec<i64> = {
            let new_used: Vec<i64> = new
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(number)
                .collect();
            old_ports
                .iter()
                .filter_map(number)
                .filter(|n| new_used.contains(n))
                .collect()
        };
        if let Some(Value::Array(ports)) = new.pointer_mut("/spec/ports") {
            for p in ports
                .iter_mut()
                .filter(|p| number(p).is_none_or(|n| n == 0))
            {
                let name = p.get("name").and_then(Value::as_str).unwrap_or("");
                let was = old_ports
                    .iter()
                    .find(|o| o.get("name").and_then(Value::as_str).unwrap_or("") == name)
                    .and_then(number);
                if let Some(np) = was.filter(|n| !used.contains(n)) {
                    p["nodePort"] = json!(np);
                }
            }
        }
    }
    if needs_health_check(old) && needs_health_check(new) {
        let empty = new
            .pointer("/spec/healthCheckNodePort")
            .and_then(Value::as_i64)
            .is_none_or(|n| n == 0);
        if empty {
            if let Some(v) = old.pointer("/spec/healthCheckNodePort") {
                new["spec"]["healthCheckNodePort"] = v.clone();
            }
        }
    }
}

/// What the new type no longer needs and the write did not ask for is dropped (kube's
/// `dropTypeDependentFields`); the allocator releases it once the write is stored.
fn drop_type_dependent_fields(old: &Value, new: &mut Value) {
    let same = |f: &str, new: &Value| old.pointer(f) == new.pointer(f);
    if needs_cluster_ip(old) && !needs_cluster_ip(new) {
        if same("/spec/clusterIP", new) && same("/spec/clusterIPs", new) {
            remove_spec(new, "clusterIP");
            remove_spec(new, "clusterIPs");
        }
        for f in ["ipFamilies", "ipFamilyPolicy"] {
            if same(&format!("/spec/{f}"), new) {
                remove_spec(new, f);
            }
        }
    }
    if needs_node_ports(old) && !needs_node_ports(new) && node_ports(old) == node_ports(new) {
        if let Some(Value::Array(ports)) = new.pointer_mut("/spec/ports") {
            for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                p.remove("nodePort");
            }
        }
    }
    if needs_health_check(old) && !needs_health_check(new) && same("/spec/healthCheckNodePort", new)
    {
        remove_spec(new, "healthCheckNodePort");
    }
    if ty(old) == "LoadBalancer"
        && ty(new) != "LoadBalancer"
        && same("/spec/allocateLoadBalancerNodePorts", new)
    {
        remove_spec(new, "allocateLoadBalancerNodePorts");
    }
    if ty(old) == "LoadBalancer"
        && ty(new) != "LoadBalancer"
        && same("/spec/loadBalancerClass", new)
    {
        remove_spec(new, "loadBalancerClass");
    }
    if externally_accessible(old)
        && !externally_accessible(new)
        && same("/spec/externalTrafficPolicy", new)
    {
        remove_spec(new, "externalTrafficPolicy");
    }
}

#[async_trait]
impl Strategy for Service {
    fn typed(&self) -> Option<&'static dyn Typed> {
        Some(crate::typed::of::<k8s_openapi::api::core::v1::Service>())
    }

    fn field_selectors(&self) -> &'static [&'static str] {
        &["spec.clusterIP", "spec.type"]
    }

    fn defaults(&self, obj: &mut Value) {
        let t = ty(obj).to_string();
        let spec = obj_mut(obj, "spec");
        default(spec, "type", json!("ClusterIP"));
        default(spec, "sessionAffinity", json!("None"));
        if t != "ExternalName" {
            default(spec, "internalTrafficPolicy", json!("Cluster"));
        }
        if t == "NodePort" || t == "LoadBalancer" {
            default(spec, "externalTrafficPolicy", json!("Cluster"));
        }
        if t == "LoadBalancer" {
            default(spec, "allocateLoadBalancerNodePorts", json!(true));
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
        // kube's NormalizeClusterIPs: clusterIP and the first of clusterIPs agree.
        let ip = obj
            .pointer("/spec/clusterIP")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(String::from);
        let first = obj
            .pointer("/spec/clusterIPs/0")
            .and_then(Value::as_str)
            .map(String::from);
        match (ip, first) {
            (Some(ip), None) => obj["spec"]["clusterIPs"] = json!([ip]),
            (None, Some(first)) => obj["spec"]["clusterIP"] = json!(first),
            _ => {}
        }
    }

    fn prepare_update(&self, old: &Value, new: &mut Value) {
        patch_allocated_values(old, new);
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
        drop_type_dependent_fields(old, new);
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

    fn allocates(&self) -> bool {
        true
    }

    /// The cluster IP, node ports and health-check node port the Service needs.
    async fn allocate(
        &self,
        objs: &dyn Objects,
        old: Option<&Value>,
        new: &mut Value,
        dry_run: bool,
    ) -> ApiResult<()> {
        if needs_cluster_ip(new) {
            let spec = obj_mut(new, "spec");
            default(spec, "ipFamilies", json!(["IPv4"]));
            default(spec, "ipFamilyPolicy", json!("SingleStack"));
        }
        objs.allocator().allocate(old, new, dry_run).await
    }

    async fn finish_allocation(
        &self,
        objs: &dyn Objects,
        old: Option<&Value>,
        new: &Value,
        stored: bool,
    ) {
        objs.allocator().finish(old, new, stored).await;
    }

    /// What the Service held goes back to the allocator.
    async fn after_delete(&self, objs: &dyn Objects, obj: &Value) -> ApiResult<()> {
        objs.allocator().release_service(obj).await;
        Ok(())
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
    // Fields of some types only (kube's validateServiceExternalTrafficPolicy and
    // validateServiceAllocateLoadBalancerNodePorts).
    if let Some(hc) = obj
        .pointer("/spec/healthCheckNodePort")
        .and_then(Value::as_i64)
        .filter(|&n| n != 0)
    {
        if !(1..=65535).contains(&hc) {
            causes.push(port_cause("spec.healthCheckNodePort".into(), hc));
        } else if !needs_health_check(obj) {
            causes.push(invalid_raw(
                "spec.healthCheckNodePort",
                &hc.to_string(),
                "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'",
            ));
        }
    }
    if let Some(etp) = obj
        .pointer("/spec/externalTrafficPolicy")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        if !externally_accessible(obj) {
            causes.push(Cause::invalid(
                "spec.externalTrafficPolicy",
                etp,
                "may only be set for externally-accessible services",
            ));
        } else if !matches!(etp, "Cluster" | "Local") {
            causes.push(not_supported(
                "spec.externalTrafficPolicy",
                etp,
                &["Cluster", "Local"],
            ));
        }
    }
    if ty != "LoadBalancer"
        && obj
            .pointer("/spec/allocateLoadBalancerNodePorts")
            .is_some_and(|v| !v.is_null())
    {
        causes.push(Cause::forbidden(
            "spec.allocateLoadBalancerNodePorts",
            "may only be used when `type` is 'LoadBalancer'",
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
            if np != 0 && !(1..=65535).contains(&np) {
                causes.push(port_cause(at("nodePort"), np));
            } else if np != 0 && ty != "NodePort" && ty != "LoadBalancer" {
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
