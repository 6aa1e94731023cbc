//! Namespaces: the `kubernetes` finalizer, the name label, the phase (Active, then
//! Terminating), a deletion that waits for the namespace controller.

use serde_json::{json, Value};

use super::hooks::{Columns, Strategy};
use crate::cells::prelude::*;
use crate::defaults::{default, obj_mut, set_label};
use crate::typed::Typed;

pub(crate) struct Namespace;

impl Strategy for Namespace {
    fn typed(&self) -> Option<&'static dyn Typed> {
        Some(crate::typed::of::<k8s_openapi::api::core::v1::Namespace>())
    }

    fn field_selectors(&self) -> &'static [&'static str] {
        &["status.phase"]
    }

    /// A namespace goes once its `spec.finalizers` (the namespace controller's) are gone.
    fn deletion_can_finish(&self, obj: &Value) -> bool {
        obj.pointer("/spec/finalizers")
            .and_then(Value::as_array)
            .is_none_or(|a| a.is_empty())
    }

    /// Deleting a namespace waits for its `spec.finalizers`.
    fn deletion_waits(&self, obj: &Value) -> bool {
        obj.pointer("/spec/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty())
    }

    fn deletion_started(&self, obj: &mut Value) {
        obj["status"]["phase"] = json!("Terminating");
    }

    fn defaults(&self, obj: &mut Value) {
        let spec = obj_mut(obj, "spec");
        default(spec, "finalizers", json!(["kubernetes"]));
    }

    fn prepare_create(&self, obj: &mut Value) {
        let name = obj
            .pointer("/metadata/name")
            .cloned()
            .unwrap_or(Value::Null);
        set_label(obj, "kubernetes.io/metadata.name", name);
        obj["status"] = json!({"phase": "Active"});
    }

    /// The phase is the server's: an update keeps the old status (if there was one).
    fn keep_status(&self, old: &Value, new: &mut Value) {
        if let Some(s) = old.get("status") {
            new["status"] = s.clone();
        }
    }

    /// `spec.finalizers` change only through `/finalize`; the name label stays.
    fn prepare_update(&self, old: &Value, new: &mut Value) {
        if let Some(s) = old.get("spec") {
            new["spec"] = s.clone();
        }
        let name = old
            .pointer("/metadata/name")
            .cloned()
            .unwrap_or(Value::Null);
        set_label(new, "kubernetes.io/metadata.name", name);
    }
}

// What `kubectl get` prints (`super::Columns`).
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
