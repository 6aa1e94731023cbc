//! Ingresses (networking.k8s.io/v1): a status load balancer always there, paths and
//! backends.

use serde_json::{json, Value};

use super::hooks::{Columns, Strategy};
use crate::cells::prelude::*;
use crate::defaults::{default, obj_mut};
use crate::error::Cause;
use crate::typed::Typed;
use crate::validation::{invalid_raw, not_supported, required_because};

pub(crate) struct Ingress;

impl Strategy for Ingress {
    fn typed(&self) -> Option<&'static dyn Typed> {
        Some(crate::typed::of::<k8s_openapi::api::networking::v1::Ingress>())
    }

    /// A struct without `omitempty`'s effect in Go: always there, if empty.
    fn status_defaults(&self, obj: &mut Value) {
        default(obj_mut(obj, "status"), "loadBalancer", json!({}));
    }

    fn validate(&self, obj: &Value, causes: &mut Vec<Cause>) {
        validate_ingress(obj, causes);
    }
}

fn validate_ingress(obj: &Value, causes: &mut Vec<Cause>) {
    for (i, rule) in obj
        .pointer("/spec/rules")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        for (j, path) in rule
            .pointer("/http/paths")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let at = format!("spec.rules[{i}].http.paths[{j}]");
            let ty = path.get("pathType").and_then(Value::as_str).unwrap_or("");
            match ty {
                "" => causes.push(required_because(
                    format!("{at}.pathType"),
                    "pathType must be specified",
                )),
                "Exact" | "Prefix" | "ImplementationSpecific" => {}
                other => causes.push(not_supported(
                    format!("{at}.pathType"),
                    other,
                    &["Exact", "ImplementationSpecific", "Prefix"],
                )),
            }
            let p = path.get("path").and_then(Value::as_str).unwrap_or("");
            if matches!(ty, "Exact" | "Prefix") && !p.starts_with('/') {
                causes.push(Cause::invalid(
                    format!("{at}.path"),
                    p,
                    "must be an absolute path",
                ));
            }
            let backend = path.get("backend");
            let service = backend.and_then(|b| b.get("service"));
            let resource = backend.and_then(|b| b.get("resource"));
            if service.is_none() && resource.is_none() {
                causes.push(invalid_raw(
                    format!("{at}.backend"),
                    "\"\"",
                    "resource or service backend is required",
                ));
            }
            if let Some(svc) = service {
                let name = svc.get("name").and_then(Value::as_str).unwrap_or("");
                if name.is_empty() {
                    causes.push(Cause::required(format!("{at}.backend.service.name")));
                }
                let port = svc.get("port");
                let number = port.and_then(|p| p.get("number")).and_then(Value::as_i64);
                let pname = port.and_then(|p| p.get("name")).and_then(Value::as_str);
                if number.is_none() && pname.is_none() {
                    causes.push(required_because(
                        format!("{at}.backend.service.port"),
                        "port name or number is required",
                    ));
                }
            }
        }
    }
}

// What `kubectl get` prints (`super::Columns`).
impl Columns for Ingress {
    fn columns(&self) -> &'static [Col] {
        &[
            NAME,
            ("Class", "string", "", 0),
            ("Hosts", "string", "", 0),
            ("Address", "string", "", 0),
            ("Ports", "string", "", 0),
            AGE,
        ]
    }

    fn cells(&self, o: &Value) -> Vec<Value> {
        let name = name(o);
        let age = age(o);
        let rules = o.pointer("/spec/rules").and_then(Value::as_array);
        let hosts: Vec<&str> = rules
            .into_iter()
            .flatten()
            .map(|r| r.get("host").and_then(Value::as_str).unwrap_or("*"))
            .collect();
        let address: Vec<&str> = o
            .pointer("/status/loadBalancer/ingress")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|i| i.get("ip").or(i.get("hostname")).and_then(Value::as_str))
            .collect();
        let tls = o
            .pointer("/spec/tls")
            .and_then(Value::as_array)
            .is_some_and(|t| !t.is_empty());
        vec![
            name,
            json!(or_none(s(o, "/spec/ingressClassName").into())),
            json!(if hosts.is_empty() {
                "*".to_string()
            } else {
                hosts.join(",")
            }),
            json!(address.join(",")),
            json!(if tls { "80, 443" } else { "80" }),
            age,
        ]
    }
}
