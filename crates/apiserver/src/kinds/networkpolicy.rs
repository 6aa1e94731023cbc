//! NetworkPolicies (networking.k8s.io/v1): only the typed schema.

use super::hooks::{Columns, Strategy};
use crate::cells::prelude::*;
use crate::typed::Typed;

pub(crate) struct NetworkPolicy;

impl Strategy for NetworkPolicy {
    fn typed(&self) -> Option<&'static dyn Typed> {
        Some(crate::typed::of::<
            k8s_openapi::api::networking::v1::NetworkPolicy,
        >())
    }
}

// What `kubectl get` prints (`super::Columns`).
impl Columns for NetworkPolicy {
    fn columns(&self) -> &'static [Col] {
        &[NAME, ("Pod-Selector", "string", "", 0), AGE]
    }

    fn cells(&self, o: &Value) -> Vec<Value> {
        let name = name(o);
        let age = age(o);
        let sel = selector_string(o.pointer("/spec/podSelector"));
        vec![
            name,
            json!(if sel == "<none>" {
                "<none>".to_string()
            } else {
                sel
            }),
            age,
        ]
    }
}
