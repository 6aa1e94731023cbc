//! Services.

use super::Strategy;

pub(crate) struct Service;

impl Strategy for Service {
    fn field_selectors(&self) -> &'static [&'static str] {
        &["spec.clusterIP", "spec.type"]
    }
}

// What `kubectl get` prints (`super::Columns`).
use crate::table::prelude::*;

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
