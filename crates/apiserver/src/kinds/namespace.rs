//! Namespaces.

use serde_json::Value;

use super::Strategy;

pub(crate) struct Namespace;

impl Strategy for Namespace {
    fn field_selectors(&self) -> &'static [&'static str] {
        &["status.phase"]
    }

    /// A namespace goes once its `spec.finalizers` (the namespace controller's) are gone.
    fn deletion_can_finish(&self, obj: &Value) -> bool {
        obj.pointer("/spec/finalizers")
            .and_then(Value::as_array)
            .is_none_or(|a| a.is_empty())
    }
}

// What `kubectl get` prints (`super::Columns`).
use crate::table::prelude::*;

impl Columns for Namespace {
    fn columns(&self) -> &'static [Col] {
        &[NAME, ("Status", "string", "", 0), AGE]
    }

    fn cells(&self, o: &Value) -> Vec<Value> {
        let name = name(o);
        let age = age(o);
        vec![name, json!(s(o, "/status/phase")), age]
    }
}
