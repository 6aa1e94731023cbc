//! EndpointSlices (discovery.k8s.io/v1): only the typed schema.

use super::hooks::{Columns, Strategy};
use crate::cells::prelude::*;
use crate::typed::Typed;

pub(crate) struct EndpointSlice;

impl Strategy for EndpointSlice {
    fn typed(&self) -> Option<&'static dyn Typed> {
        Some(crate::typed::of::<
            k8s_openapi::api::discovery::v1::EndpointSlice,
        >())
    }

    fn validate(&self, obj: &Value, causes: &mut Vec<crate::error::Cause>) {
        if !matches!(s(obj, "/addressType"), "IPv4" | "IPv6") {
            return;
        }
        // The API servers' own slices: `kubernetes`, and `kubernetes-<port>` for servers
        // on another port (see the endpoint reconciler).
        let name = s(obj, "/metadata/name");
        let own = super::endpoints::apiservers_own(obj)
            || (s(obj, "/metadata/namespace") == "default"
                && s(obj, "/metadata/labels/kubernetes.io~1service-name") == "kubernetes"
                && name
                    .strip_prefix("kubernetes-")
                    .is_some_and(|p| p.parse::<u16>().is_ok()));
        let eps = obj.get("endpoints").and_then(Value::as_array);
        for (i, e) in eps.into_iter().flatten().enumerate() {
            let addrs = e.get("addresses").and_then(Value::as_array);
            for (j, a) in addrs.into_iter().flatten().enumerate() {
                crate::validation::endpoint_ip(
                    a.as_str().unwrap_or(""),
                    &format!("endpoints[{i}].addresses[{j}]"),
                    own,
                    causes,
                );
            }
        }
    }
}

// What `kubectl get` prints (`super::Columns`).
impl Columns for EndpointSlice {
    fn columns(&self) -> &'static [Col] {
        &[
            NAME,
            ("AddressType", "string", "", 0),
            ("Ports", "string", "", 0),
            ("Endpoints", "string", "", 0),
            AGE,
        ]
    }

    fn cells(&self, o: &Value) -> Vec<Value> {
        let name = name(o);
        let age = age(o);
        let ports: Vec<String> = o
            .get("ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|p| i(p, "/port").to_string())
            .collect();
        let addrs: Vec<String> = o
            .get("endpoints")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .flat_map(|e| {
                e.get("addresses")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default()
            })
            .filter_map(|a| a.as_str().map(String::from))
            .collect();
        vec![
            name,
            json!(s(o, "/addressType")),
            json!(if ports.is_empty() {
                "<unset>".to_string()
            } else {
                ports.join(",")
            }),
            json!(if addrs.is_empty() {
                "<unset>".to_string()
            } else {
                addrs.join(",")
            }),
            age,
        ]
    }
}
