//! Endpoints: only the typed schema.

use super::hooks::{Columns, Strategy};
use crate::cells::prelude::*;
use crate::typed::Typed;

pub(crate) struct Endpoints;

impl Strategy for Endpoints {
    fn typed(&self) -> Option<&'static dyn Typed> {
        Some(crate::typed::of::<k8s_openapi::api::core::v1::Endpoints>())
    }
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
