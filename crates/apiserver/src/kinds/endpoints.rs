//! Endpoints: only the typed schema.

use super::hooks::{Columns, Strategy};
use crate::cells::prelude::*;
use crate::typed::Typed;

pub(crate) struct Endpoints;

impl Strategy for Endpoints {
    fn typed(&self) -> Option<&'static dyn Typed> {
        Some(crate::typed::of::<k8s_openapi::api::core::v1::Endpoints>())
    }

    fn validate(&self, obj: &Value, causes: &mut Vec<crate::error::Cause>) {
        let own = apiservers_own(obj);
        let subsets = obj.get("subsets").and_then(Value::as_array);
        for (i, subset) in subsets.into_iter().flatten().enumerate() {
            for list in ["addresses", "notReadyAddresses"] {
                let addrs = subset.get(list).and_then(Value::as_array);
                for (j, a) in addrs.into_iter().flatten().enumerate() {
                    crate::validation::endpoint_ip(
                        a.get("ip").and_then(Value::as_str).unwrap_or(""),
                        &format!("subsets[{i}].{list}[{j}].ip"),
                        own,
                        causes,
                    );
                }
            }
        }
    }
}

/// Whether `obj` is `default/kubernetes`, the API server's own endpoints.
pub(super) fn apiservers_own(obj: &Value) -> bool {
    obj.pointer("/metadata/namespace").and_then(Value::as_str) == Some("default")
        && obj.pointer("/metadata/name").and_then(Value::as_str) == Some("kubernetes")
}

// What `kubectl get` prints (`super::Columns`).
impl Columns for Endpoints {
    fn columns(&self) -> &'static [Col] {
        &[NAME, ("Endpoints", "string", "", 0), AGE]
    }

    fn cells(&self, o: &Value) -> Vec<Value> {
        let name = name(o);
        let age = age(o);
        let mut eps = Vec::new();
        for subset in o
            .get("subsets")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            for a in subset
                .get("addresses")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let ip = s(a, "/ip");
                match subset.get("ports").and_then(Value::as_array) {
                    Some(ports) if !ports.is_empty() => {
                        eps.extend(ports.iter().map(|p| format!("{ip}:{}", i(p, "/port"))))
                    }
                    _ => eps.push(ip.to_string()),
                }
            }
        }
        vec![name, json!(or_none(eps.join(","))), age]
    }
}
