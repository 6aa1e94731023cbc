//! ServiceCIDRs (networking.k8s.io/v1): the ranges Service cluster IPs come from. The
//! server keeps the one named `kubernetes` equal to `--service-cidr`; the allocator
//! (`crate::alloc`) takes IPs from it first, then from the others.

use super::hooks::{Columns, Strategy};
use crate::cells::prelude::*;
use crate::error::Cause;
use crate::typed::Typed;
use crate::validation::immutable;

pub(crate) struct ServiceCidr;

impl Strategy for ServiceCidr {
    fn typed(&self) -> Option<&'static dyn Typed> {
        Some(crate::typed::of::<
            k8s_openapi::api::networking::v1::ServiceCIDR,
        >())
    }

    fn validate(&self, obj: &Value, causes: &mut Vec<Cause>) {
        let cidrs: Vec<&Value> = obj
            .pointer("/spec/cidrs")
            .and_then(Value::as_array)
            .map(|a| a.iter().collect())
            .unwrap_or_default();
        if cidrs.is_empty() {
            causes.push(Cause::required("spec.cidrs"));
        }
        if cidrs.len() > 2 {
            causes.push(Cause {
                reason: "FieldValueTooMany",
                field: "spec.cidrs".into(),
                message: format!("Too many: {}: must have at most 2 items", cidrs.len()),
            });
        }
        for (i, c) in cidrs.iter().enumerate() {
            let text = c.as_str().unwrap_or("");
            let valid = text.split_once('/').is_some_and(|(ip, len)| {
                ip.parse::<std::net::IpAddr>().is_ok_and(|ip| {
                    len.parse::<u8>()
                        .is_ok_and(|l| l <= if ip.is_ipv4() { 32 } else { 128 })
                })
            });
            if !valid {
                causes.push(Cause::invalid(
                    format!("spec.cidrs[{i}]"),
                    text,
                    "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
                ));
            }
        }
    }

    fn validate_update(&self, old: &Value, new: &Value, causes: &mut Vec<Cause>) {
        immutable(old, new, "spec.cidrs", causes);
    }
}

// What `kubectl get` prints (`super::Columns`): NAME CIDRS AGE, as kubectl's printer.
impl Columns for ServiceCidr {
    fn columns(&self) -> &'static [Col] {
        &[NAME, ("CIDRs", "string", "", 0), AGE]
    }

    fn cells(&self, o: &Value) -> Vec<Value> {
        let cidrs: Vec<&str> = o
            .pointer("/spec/cidrs")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        vec![name(o), json!(cidrs.join(",")), age(o)]
    }
}
