//! IPAddresses (networking.k8s.io/v1): one per allocated Service cluster IP, named by
//! the IP, made and deleted by the allocator (`crate::alloc`); users may make their own
//! to keep an IP from being handed out.

use std::net::IpAddr;

use super::hooks::{Columns, Strategy};
use crate::cells::prelude::*;
use crate::error::Cause;
use crate::typed::Typed;
use crate::validation::immutable;
use skiff_meta::object::name_of;

pub(crate) struct IpAddress;

impl Strategy for IpAddress {
    fn typed(&self) -> Option<&'static dyn Typed> {
        Some(crate::typed::of::<
            k8s_openapi::api::networking::v1::IPAddress,
        >())
    }

    fn validate(&self, obj: &Value, causes: &mut Vec<Cause>) {
        let name = name_of(obj);
        match name.parse::<IpAddr>() {
            Ok(ip) if ip.to_string() == name => {}
            Ok(ip) => causes.push(Cause::invalid(
                "metadata.name",
                name,
                &format!("must be in canonical form (\"{ip}\")"),
            )),
            Err(_) => causes.push(Cause::invalid(
                "metadata.name",
                name,
                "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
            )),
        }
        match obj.pointer("/spec/parentRef") {
            Some(p) if p.is_object() => {
                for f in ["resource", "name"] {
                    if p.get(f).and_then(Value::as_str).is_none_or(str::is_empty) {
                        causes.push(Cause::required(format!("spec.parentRef.{f}")));
                    }
                }
            }
            _ => causes.push(Cause::required("spec.parentRef")),
        }
    }

    fn validate_update(&self, old: &Value, new: &Value, causes: &mut Vec<Cause>) {
        immutable(old, new, "spec.parentRef", causes);
    }
}

// What `kubectl get` prints (`super::Columns`): NAME PARENTREF, as kubectl's printer.
impl Columns for IpAddress {
    fn columns(&self) -> &'static [Col] {
        &[NAME, ("ParentRef", "string", "", 0)]
    }

    fn cells(&self, o: &Value) -> Vec<Value> {
        let parent = match o.pointer("/spec/parentRef") {
            Some(p) if p.is_object() => {
                let group = s(p, "/group");
                let resource = s(p, "/resource").to_lowercase();
                let mut out = if group.is_empty() {
                    resource
                } else {
                    format!("{resource}.{}", group.to_lowercase())
                };
                let ns = s(p, "/namespace");
                if !ns.is_empty() {
                    out.push('/');
                    out.push_str(ns);
                }
                out.push('/');
                out.push_str(s(p, "/name"));
                out
            }
            _ => "<none>".into(),
        };
        vec![name(o), json!(parent)]
    }
}
