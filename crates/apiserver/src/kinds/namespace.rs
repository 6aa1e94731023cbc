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
