//! IngressClasses (networking.k8s.io/v1): only the typed schema.

use super::hooks::{Columns, Strategy};
use crate::cells::prelude::*;
use crate::typed::Typed;

pub(crate) struct IngressClass;

impl Strategy for IngressClass {
    fn typed(&self) -> Option<&'static dyn Typed> {
        Some(crate::typed::of::<
            k8s_openapi::api::networking::v1::IngressClass,
        >())
    }
}

// What `kubectl get` prints (`super::Columns`).
impl Columns for IngressClass {
    fn columns(&self) -> &'static [Col] {
        &[
            NAME,
            ("Controller", "string", "", 0),
            ("Parameters", "string", "", 0),
            AGE,
        ]
    }

    fn cells(&self, o: &Value) -> Vec<Value> {
        let name = name(o);
        let age = age(o);
        vec![
            name,
            json!(s(o, "/spec/controller")),
            json!(match o.pointer("/spec/parameters") {
                Some(p) => format!("{}/{}", s(p, "/kind"), s(p, "/name")),
                None => "<none>".into(),
            }),
            age,
        ]
    }
}
