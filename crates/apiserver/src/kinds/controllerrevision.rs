//! ControllerRevisions (apps/v1): only the typed schema.

use super::hooks::{Columns, Strategy};
use crate::cells::prelude::*;
use crate::typed::Typed;

pub(crate) struct ControllerRevision;

impl Strategy for ControllerRevision {
    fn typed(&self) -> Option<&'static dyn Typed> {
        Some(crate::typed::of::<
            k8s_openapi::api::apps::v1::ControllerRevision,
        >())
    }
}

// What `kubectl get` prints (`super::Columns`).
impl Columns for ControllerRevision {
    fn columns(&self) -> &'static [Col] {
        &[
            NAME,
            ("Controller", "string", "", 0),
            ("Revision", "integer", "", 0),
            AGE,
        ]
    }

    fn cells(&self, o: &Value) -> Vec<Value> {
        let name = name(o);
        let age = age(o);
        let controller = o
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .and_then(|a| {
                a.iter()
                    .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
            })
            .map(|r| {
                let group = s(r, "/apiVersion").split('/').next().unwrap_or("");
                let kind = s(r, "/kind").to_lowercase();
                if s(r, "/apiVersion").contains('/') {
                    format!("{kind}.{group}/{}", s(r, "/name"))
                } else {
                    format!("{kind}/{}", s(r, "/name"))
                }
            })
            .unwrap_or_else(|| "<none>".into());
        vec![name, json!(controller), json!(i(o, "/revision")), age]
    }
}
