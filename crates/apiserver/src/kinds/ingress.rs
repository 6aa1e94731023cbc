//! Ingresses (networking.k8s.io/v1).

pub(crate) struct Ingress;

// What `kubectl get` prints (`super::Columns`).
use crate::table::prelude::*;

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
